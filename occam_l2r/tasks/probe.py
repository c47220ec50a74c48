"""A probe: a linear or small MLP head trained on a frozen backbone's stored features.

``python -m occam_l2r fit --config configs/synthetic/probe/<view>.yaml`` trains the head on a
:class:`~occam_l2r.data.feature_datamodule.FeatureDataModule` (the features are computed once
into the feature store, then read), in seconds instead of a classifier's minutes. Its metrics
are the shared per-split metrics of :class:`~occam_l2r.tasks.base.BaseTask`, and ``predict``
(``fit --predict_after_fit true``) writes the head's logits of every split in the stored format,
into ``<run dir>/logits/``: ``fuse``, the report and the tables read a probe run like any run of
its view. The logits files record the task (``ProbeTask``) and the backbone, which the report
shows beside the view.

The head's input width is the backbone's feature width, which the DataModule knows once the
backbone is built: the head is made in ``setup`` (and from ``feature_dim`` in the hyperparameters
when a checkpoint is loaded outside a Trainer).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from occam_l2r.data.feature_datamodule import FeatureDataModule
from occam_l2r.tasks.base import BaseTask


def probe_head(feature_dim: int, num_classes: int, hidden_dim: int, dropout: float) -> nn.Module:
    """``Linear(D, C)`` (``hidden_dim`` 0), or ``Linear → GELU → Dropout → Linear``."""
    if hidden_dim <= 0:
        return nn.Linear(feature_dim, num_classes)
    return nn.Sequential(
        nn.Linear(feature_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
        nn.Linear(hidden_dim, num_classes),
    )  # fmt: skip


class ProbeTask(BaseTask):
    """A head on frozen features.

    Args:
        num_classes: number of classes (linked from the DataModule).
        hidden_dim: width of the MLP's hidden layer; 0 (default): a linear probe.
        dropout: dropout of the MLP.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        feature_dim: the features' width; set by ``setup`` from the DataModule (kept in the
            checkpoint's hyperparameters).
        logits_dir: where ``predict`` writes logits; default ``<run dir>/logits``.
    """

    def __init__(
        self,
        num_classes: int = 4,
        hidden_dim: int = 0,
        dropout: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        feature_dim: int | None = None,
        logits_dir: str | None = None,
    ) -> None:
        super().__init__(num_classes, predictions_dir=logits_dir)
        self.save_hyperparameters(ignore=["logits_dir"])
        self.head: nn.Module | None = None
        if feature_dim is not None:
            self.head = probe_head(feature_dim, num_classes, hidden_dim, dropout)

    @property
    def datamodule(self) -> FeatureDataModule:
        """The trainer's DataModule: a :class:`FeatureDataModule`."""
        return FeatureDataModule.of(self.trainer.datamodule, type(self).__name__)

    def setup(self, stage: str) -> None:
        dm = self.datamodule
        dim = dm.feature_dim
        if self.head is None:
            hp = self.hparams
            self.head = probe_head(dim, self.num_classes, hp.hidden_dim, hp.dropout)
            self.hparams.feature_dim = dim
        elif self.hparams.feature_dim != dim:
            raise ValueError(
                f"the probe's head takes {self.hparams.feature_dim} features, the backbone "
                f"{dm.backbone.describe()} gives {dim}: train a new probe for this backbone"
            )
        super().setup(stage)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        assert self.head is not None, "the head is built in setup()"
        return self.head(features)

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self(batch["features"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = F.cross_entropy(self(batch["features"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def prediction_metadata(self) -> dict[str, Any]:
        meta = super().prediction_metadata()
        meta["config"]["backbone"] = self.datamodule.describe()
        return meta

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
