"""One backbone for several views (L2R² §4.2: "a unified model with a shared backbone"), one
head per view.

:class:`SharedBackboneTask` trains one timm network on the views of each image (FULL and FG_C,
from a :class:`~occam_l2r.data.multiview_datamodule.MultiViewDataModule`) and gives each view's
logits from that one model:

- **What is shared: the weights only.** Each view's batch goes through the backbone in a call
  of its own, so the FG view's logits are a function of the FG view's pixels alone (no
  attention, batch statistics or concatenation mixes the views; BatchNorm models too compute
  their training statistics per view). The backbone (``num_classes=0``: pooled features) is
  built by :func:`~occam_l2r.models.backbones.create_classifier` with the
  :class:`~occam_l2r.tasks.classifier.ClassifierTask` arguments, normalised as it normalises
  (:func:`~occam_l2r.models.backbones.normalize_uint8` on the device).
- **Heads**: ``head: per_view`` (default) gives each view its own linear classifier on the
  shared features (``heads.<view>``); ``head: view_embedding`` has one linear classifier and a
  learned per-view scale and shift of the features (FiLM-style, initialised to the identity,
  without weight decay).
- **Loss**: the mean over views of the per-view cross entropies; AdamW + warm-up/cosine as
  ClassifierTask (:mod:`occam_l2r.tasks.optim`).
- **Metrics**: the base task's collection per (split, view), logged as
  ``<split>/<view>/<metric>`` (``test_shift/FG_C/acc``), and the ``primary`` view's (default
  the first) also as ``<split>/<metric>``; the checkpoint monitor ``val/headline`` is the mean
  over the views of their headline metric (one checkpoint serves every view).
- **predict** writes one folder of logits files per view, ``<run>/logits/<view>/<split>.npz``
  (the stored format, ``view`` = the view's name, fallback flags included), so ``fuse`` reads
  each view as a run of its own: ``runs: {FULL: [<run>/logits/FULL], FG_C: [<run>/logits/FG_C]}``.

Train it with ``python -m occam_l2r fit --config configs/synthetic/shared_full_fg.yaml``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from occam_l2r.data.multiview_datamodule import MultiViewDataModule
from occam_l2r.errors import UserError, option_flag
from occam_l2r.models.backbones import (
    TORCHVISION,
    create_classifier,
    data_config,
    normalize_uint8,
    uint8_normalization,
)
from occam_l2r.tasks.base import BaseTask, _real_rows, metric_key
from occam_l2r.tasks.optim import adamw, warmup_cosine
from occam_l2r.views import check_views

#: the heads on the shared features: one linear classifier per view, or one classifier and a
#: learned per-view scale and shift of the features
HeadKind = Literal["per_view", "view_embedding"]


class SharedBackboneTask(BaseTask):
    """One backbone, several views, a head per view (see the module docstring).

    Args:
        views: the views, as the DataModule's ``views`` (checked in ``setup``).
        model_name: timm model name (``convnextv2_atto``).
        num_classes: number of classes (linked from the DataModule).
        pretrained: start from pretrained weights.
        checkpoint_path: local pretrained weights file instead of the hub cache.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_fraction: fraction of the training steps with a linear warm-up.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        label_smoothing: cross-entropy label smoothing.
        drop_path_rate: stochastic depth of the backbone.
        head: ``per_view`` linear heads, or ``view_embedding`` (one head, per-view FiLM).
        primary: the view also logged as ``<split>/<metric>`` (the summary row); default the
            first view.
        logits_dir: where ``predict`` writes (one folder per view); default ``<run dir>/logits``.
    """

    def __init__(
        self,
        views: list[str] | None = None,
        model_name: str = "convnextv2_atto",
        num_classes: int = 4,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.01,
        label_smoothing: float = 0.0,
        drop_path_rate: float = 0.0,
        head: HeadKind = "per_view",
        primary: str | None = None,
        logits_dir: str | None = None,
    ) -> None:
        super().__init__(num_classes, predictions_dir=logits_dir)
        views = [str(v) for v in check_views(list(views or ["FULL", "FG_C"]), "model.views")]
        if len(views) < 2 or len(set(views)) != len(views):
            raise UserError(
                f"{option_flag('model', 'views')} {views}: give two or more different views"
            )
        if primary is not None and primary not in views:
            raise UserError(f"{option_flag('model', 'primary')} {primary!r}: not one of {views}")
        if head not in ("per_view", "view_embedding"):
            raise UserError(
                f"{option_flag('model', 'head')} {head!r}: not one of per_view, view_embedding"
            )
        if model_name.startswith(TORCHVISION):
            raise UserError(
                f"{option_flag('model', 'model_name')} {model_name}: the shared backbone needs a "
                "timm model (its pooled features with num_classes=0)"
            )
        self.save_hyperparameters(ignore=["logits_dir"])  # as ClassifierTask: outputs not hparams
        self.views = views
        self.backbone = create_classifier(
            model_name, 0, pretrained, checkpoint_path, drop_path_rate
        )
        width = int(self.backbone.num_features)
        if head == "per_view":
            self.heads = nn.ModuleDict({v: nn.Linear(width, num_classes) for v in views})
        else:
            self.head = nn.Linear(width, num_classes)
            self.view_scale = nn.Parameter(torch.ones(len(views), width))
            self.view_shift = nn.Parameter(torch.zeros(len(views), width))
        mean, std = uint8_normalization(self.backbone)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.train_acc = nn.ModuleDict(
            {v: MulticlassAccuracy(num_classes=num_classes, average="micro") for v in views}
        )

    @property
    def primary(self) -> str:
        return self.hparams.primary or self.views[0]

    def prediction_outputs(self) -> list[str]:
        """One folder of logits files per view."""
        return list(self.views)

    # ------------------------------------------------------------------ setup
    @property
    def datamodule(self) -> MultiViewDataModule:
        """The trainer's DataModule: a :class:`MultiViewDataModule` with this task's views."""
        return MultiViewDataModule.of(self.trainer.datamodule, type(self).__name__)

    def setup(self, stage: str) -> None:
        dm = self.datamodule
        if [str(v) for v in dm.views] != self.views:
            raise UserError(
                f"{option_flag('model', 'views')} {self.views} and {option_flag('data', 'views')} "
                f"{[str(v) for v in dm.views]} differ: give both the same views in the same order"
            )
        super().setup(stage)
        # one metric collection per (split, view) beside each split's own (the primary view's)
        for split in {s for names in self.split_names.values() for s in names}:
            if metric_key(split) not in self.eval_metrics:
                continue
            for view in self.views:
                key = metric_key(f"{split}/{view}")
                if key not in self.eval_metrics:
                    self.eval_metrics[key] = self.make_metrics().to(self.device)
                elif stage == "predict":
                    self.eval_metrics[key].reset()
        cfg = data_config(self.backbone)  # the model's own interpolation, as ClassifierTask
        dm.use_model_preprocessing(cfg.get("interpolation"), cfg.get("crop_pct"))

    # ------------------------------------------------------------------ forward
    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        batch.pop("image", None)  # the first view again: each view is in batch["views"]
        batch["views"] = {
            v: normalize_uint8(x, self.mean, self.std) for v, x in batch["views"].items()
        }
        return batch

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The shared backbone's pooled features of one view's (normalised) batch."""
        return self.backbone(image)

    def head_logits(self, view: str, features: torch.Tensor) -> torch.Tensor:
        """The logits of ``view``'s head on its features."""
        if self.hparams.head == "per_view":
            return self.heads[view](features)
        i = self.views.index(view)
        return self.head(features * self.view_scale[i] + self.view_shift[i])

    def forward(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{view: logits}``: each view's batch through the backbone on its own, then its head."""
        return {v: self.head_logits(v, self.features(views[v])) for v in self.views}

    def outputs_of(self, batch: dict[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{view: (logits, fallback flags)}`` of a batch."""
        logits = self(batch["views"])
        return {v: (logits[v], batch["fallbacks"][v].float()) for v in self.views}

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self(batch["views"])[self.primary]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["views"])
        y, n = batch["label"], len(batch["label"])
        losses = []
        for view, z in logits.items():
            loss = F.cross_entropy(z, y, label_smoothing=self.hparams.label_smoothing)
            losses.append(loss)
            self.train_acc[view].update(z.detach(), y)
            self.log(f"train/{view}/loss", loss, batch_size=n)
            self.log(f"train/{view}/acc", self.train_acc[view], on_step=False, on_epoch=True,
                     batch_size=n)  # fmt: skip
        loss = torch.stack(losses).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _update(self, split: str, batch: dict[str, Any], outs: dict) -> None:
        for view, (logits, fallback) in outs.items():
            self.update_metrics(f"{split}/{view}", batch, logits, fallback)
        logits, fallback = outs[self.primary]
        self.update_metrics(split, batch, logits, fallback)

    def evaluate(self, stage: str, batch: dict[str, Any], dataloader_idx: int) -> torch.Tensor:
        outs = self.outputs_of(batch)
        self._update(self.split_names[stage][dataloader_idx], batch, outs)
        return outs[self.primary][0]

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        outs = self.outputs_of(batch)
        self._update(self.split_names["val"][dataloader_idx], batch, outs)
        real = _real_rows(batch, len(batch["label"]), batch["label"].device)
        y = batch["label"][real]
        loss = torch.stack([F.cross_entropy(z[real], y) for z, _ in outs.values()]).mean()
        self.log("val/loss", loss, sync_dist=True, batch_size=len(real), add_dataloader_idx=False)

    def split_values(self, split: str) -> dict[str, torch.Tensor]:
        """A split's values (the primary view's ``<split>/<metric>``) and every view's
        ``<split>/<view>/<metric>``, computed and reset."""
        values = super().split_values(split)
        if "/" not in split:
            for view in self.views:
                if metric_key(f"{split}/{view}") in self.eval_metrics:
                    values.update(super().split_values(f"{split}/{view}"))
        return values

    def headline_value(self, values: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        """The mean over the views of their headline metric on ``split`` (one checkpoint for
        every view)."""
        return torch.stack(
            [
                super(SharedBackboneTask, self).headline_value(values, f"{split}/{v}")
                for v in self.views
            ]  # fmt: skip
        ).mean()

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        outs = self.outputs_of(batch)
        if self.score_predictions:
            split = self.split_names["predict"][dataloader_idx]
            if split in self.split_names["test"] and metric_key(split) in self.eval_metrics:
                self._update(split, batch, outs)
                self._scored.add(split)
        logits, fallback = outs[self.primary]
        pred = self.prediction({**batch, "fallback": fallback}, logits)
        real = _real_rows(batch, len(logits), logits.device).cpu()
        pred["outputs"] = {v: z.detach().float().cpu()[real] for v, (z, _) in outs.items()}
        pred["fallbacks"] = {v: f.detach().cpu()[real] for v, (_, f) in outs.items()}
        return pred

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        opt = adamw(
            self.named_parameters(),
            hp.lr,
            hp.weight_decay,
            # gains, biases and the view embedding (an identity at start) are not decayed
            no_decay=lambda name, p: (
                p.ndim <= 1 or name.endswith(".bias") or name.startswith("view_")
            ),
        )
        total = self.trainer.estimated_stepping_batches
        sched = warmup_cosine(opt, total, hp.warmup_fraction, hp.min_lr_ratio)
        return {"optimizer": opt, "lr_scheduler": sched}
