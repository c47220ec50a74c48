"""Lightning wrapper of the trainable fusion heads (temperature, weighted logits, concat+FC).

``python -m occam_l2r fit --config configs/fusion/<head>.yaml`` trains a head from
:mod:`occam_l2r.fusion.heads` on a :class:`occam_l2r.data.logits_datamodule.LogitsDataModule`
with the head's own loss (cross entropy of the fused logits; each input's NLL for temperature
scaling, trained on ``val`` as in the paper). Besides the shared per-split metrics of
:class:`occam_l2r.tasks.base.BaseTask` it logs ``<split>/nll`` and the fitted temperatures;
``predict`` writes the fused logits of every split (``<run dir>/fused_logits/<split>.npz``).

The best checkpoint is the epoch with the best ``val/headline`` (the dataset's headline metric,
which the DataModule reads from the logits files), and the training loop is the one of the
``fuse`` verb's ablation (:mod:`occam_l2r.fusion.head_training`): the same head, settings and
seed give the same numbers on both paths.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, Metric, MetricCollection

from occam_l2r.data.logits_datamodule import LogitsDataModule
from occam_l2r.errors import option_flag
from occam_l2r.fusion.heads import HeadName, TemperatureFusion, build_head
from occam_l2r.tasks.base import BaseTask


class FusionHeadTask(BaseTask):
    """A trainable fusion head on the logits of one or two models.

    Args:
        head: ``temperature``, ``weighted_logits`` or ``concat_fc``.
        num_classes: number of classes (linked from the DataModule).
        num_inputs: 2 for fusion; 1 only for ``temperature`` (plain calibration).
        hidden_dim: hidden width of ``concat_fc`` (0: one linear layer).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        fused_logits_dir: where ``predict`` writes; default ``<run dir>/fused_logits``.
    """

    predictions_subdir = "fused_logits"

    def __init__(
        self,
        head: HeadName = "weighted_logits",
        num_classes: int = 2,
        num_inputs: int = 2,
        hidden_dim: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        fused_logits_dir: str | None = None,
    ) -> None:
        super().__init__(num_classes, predictions_dir=fused_logits_dir)
        self.save_hyperparameters(ignore=["fused_logits_dir"])
        self.head = build_head(head, num_classes, num_inputs, hidden_dim)

    @property
    def datamodule(self) -> LogitsDataModule:
        """The trainer's DataModule: a :class:`LogitsDataModule` (the heads fuse logits)."""
        return LogitsDataModule.of(self.trainer.datamodule, type(self).__name__)

    def setup(self, stage: str) -> None:
        dm = self.datamodule
        if dm.num_inputs != self.hparams.num_inputs:
            raise ValueError(
                f"the model expects {self.hparams.num_inputs} inputs, the data gives "
                f"{dm.num_inputs}; set {option_flag('model', 'num_inputs')} or {option_flag('data', 'input2')}"
            )
        super().setup(stage)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(z1, z2) if z2 is not None else self.head(z1)

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self(batch["z1"], batch.get("z2"))

    def extra_metrics(self) -> dict[str, Metric]:
        return {"nll": MeanMetric()}

    def update_extra(
        self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor
    ) -> None:
        metrics["nll"].update(F.cross_entropy(logits, target, reduction="none"))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.head.loss(batch["z1"], batch.get("z2"), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if isinstance(self.head, TemperatureFusion):
            for i, scale in enumerate(self.head.scales, 1):
                self.log(f"temperature/T{i}", scale.temperature, add_dataloader_idx=False)

    def prediction_metadata(self) -> dict[str, Any]:
        dm = self.datamodule
        meta = super().prediction_metadata()
        return {**meta, "view": "+".join(v for v in (dm.view, dm.view2) if v)}

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
