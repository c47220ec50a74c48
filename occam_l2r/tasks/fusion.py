"""Lightning wrapper of the trainable fusion heads (temperature, weighted logits, concat+FC).

``python -m occam_l2r fit --config configs/fusion/<head>.yaml`` trains a head from
:mod:`occam_l2r.fusion.heads` on a :class:`occam_l2r.data.logits_datamodule.LogitsDataModule`
with the head's own loss (cross entropy of the fused logits; each input's NLL for temperature
scaling, trained on ``val`` as in the paper). Logs ``<split>/acc``, ``<split>/macro_acc`` (over
classes present) and ``<split>/nll`` for val and every test split; ``predict`` writes the fused
logits of every split as logits files (``<run dir>/fused_logits/<split>.npz``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from occam_l2r.fusion.heads import ConcatFC, TemperatureFusion, WeightedLogits
from occam_l2r.logits import LogitsFile
from occam_l2r.models.metrics import PresentClassAccuracy

HeadName = Literal["temperature", "weighted_logits", "concat_fc"]


class FusionHeadTask(L.LightningModule):
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
        super().__init__()
        self.save_hyperparameters()
        if num_inputs == 1 and head != "temperature":
            raise ValueError(f"head {head!r} fuses two inputs; set data.input2 and num_inputs: 2")
        if head == "temperature":
            self.head: nn.Module = TemperatureFusion(num_inputs)
        elif head == "weighted_logits":
            self.head = WeightedLogits(num_classes)
        elif head == "concat_fc":
            self.head = ConcatFC(num_classes, hidden_dim)
        else:
            raise ValueError(
                f"unknown head {head!r}; choose temperature, weighted_logits, concat_fc"
            )
        self.metrics = nn.ModuleDict()
        self._splits: dict[str, list[str]] = {}
        self._outputs: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if getattr(dm, "num_inputs", self.hparams.num_inputs) != self.hparams.num_inputs:
            raise ValueError(
                f"the model expects {self.hparams.num_inputs} inputs, the data gives "
                f"{dm.num_inputs}; set model.init_args.num_inputs or data.init_args.input2"
            )
        self._splits = {
            "val": [dm.val_split],
            "test": list(dm.test_splits),
            "predict": list(dm.predict_splits),
        }
        for split in self._splits["val"] + self._splits["test"]:
            if split not in self.metrics:
                k = self.hparams.num_classes
                self.metrics[split] = MetricCollection(
                    {
                        "acc": MulticlassAccuracy(num_classes=k, average="micro"),
                        "macro_acc": PresentClassAccuracy(k),
                        "nll": MeanMetric(),
                    },
                    compute_groups=False,
                ).to(self.device)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(z1, z2) if z2 is not None else self.head(z1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.head.loss(batch["z1"], batch.get("z2"), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        split = self._splits[stage][dataloader_idx]
        keep = batch["label"] >= 0
        logits = self(batch["z1"], batch.get("z2"))[keep]
        target = batch["label"][keep]
        if len(target) == 0:
            return
        m = self.metrics[split]
        m["acc"].update(logits, target)
        m["macro_acc"].update(logits, target)
        m["nll"].update(F.cross_entropy(logits, target, reduction="none"))

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def _log_split(self, split: str) -> None:
        m = self.metrics[split]
        values = {}
        for name in ("acc", "macro_acc", "nll"):
            if m[name].update_count:
                values[f"{split}/{name}"] = m[name].compute()
        if split in self._splits.get("val", []) and values:
            values["val/acc"] = values[f"{split}/acc"]  # the checkpoint monitor
        self.log_dict(values, add_dataloader_idx=False)
        m.reset()
        if isinstance(self.head, TemperatureFusion):
            for i, scale in enumerate(self.head.scales, 1):
                self.log(f"temperature/T{i}", scale.temperature, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        for split in self._splits["val"]:
            self._log_split(split)

    def on_test_epoch_end(self) -> None:
        for split in self._splits["test"]:
            self._log_split(split)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self(batch["z1"], batch.get("z2")).float().cpu()
        self._outputs.setdefault(dataloader_idx, []).append((batch["index"].cpu(), logits))

    def on_predict_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        out_dir = self._out_dir()
        for idx, split in enumerate(self._splits["predict"]):
            parts = self._outputs.get(idx, [])
            if not parts:
                continue
            index = torch.cat([p[0] for p in parts]).numpy()
            logits = torch.cat([p[1] for p in parts]).numpy()
            order = np.unique(index, return_index=True)[1]
            ids, labels, groups = dm.split_info(split)
            sel = index[order]
            LogitsFile(
                ids=ids[sel],
                labels=labels[sel],
                groups=groups[sel],
                logits=logits[order],
                split=split,
                view="+".join(v for v in (dm.view, dm.view2) if v),
                run=str(out_dir.parent),
                class_names=dm.class_names,
                config={"model": dict(self.hparams), "data": dict(dm.hparams)},
            ).save(out_dir / f"{split}.npz")
        self._outputs = {}

    def _out_dir(self) -> Path:
        if self.hparams.fused_logits_dir:
            return Path(self.hparams.fused_logits_dir)
        ckpt = self.trainer.ckpt_path
        if ckpt:
            path = Path(ckpt).parent
            return (path.parent if path.name == "checkpoints" else path) / "fused_logits"
        return Path(self.trainer.log_dir or self.trainer.default_root_dir) / "fused_logits"

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
