"""The supervised classifier task (L2R² base classifiers on FULL, FG or BG views).

A timm model (``convnextv2_base.fcmae_ft_in1k`` in the paper) trained with AdamW and a linear
warm-up + cosine schedule. Inputs arrive as uint8 and are normalised on the device with the
model's own mean/std. Per-split metrics and the logits files of ``predict`` come from
:class:`occam_l2r.tasks.base.BaseTask`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from occam_l2r.models.backbones import (
    create_classifier,
    data_config,
    normalize_uint8,
    uint8_normalization,
)
from occam_l2r.tasks.base import BaseTask
from occam_l2r.tasks.optim import adamw, warmup_cosine


class ClassifierTask(BaseTask):
    """Image classifier on one view.

    Args:
        model_name: timm model name (``convnextv2_base.fcmae_ft_in1k``).
        num_classes: number of classes (linked from the DataModule).
        pretrained: start from pretrained weights.
        checkpoint_path: local pretrained weights file instead of the hub cache.
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_fraction: fraction of the training steps with a linear warm-up.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        label_smoothing: cross-entropy label smoothing.
        drop_path_rate: stochastic depth of the backbone.
        logits_dir: where ``predict`` writes logits; default ``<run dir>/logits``.
        channels_last: keep the backbone's weights and the input batches in channels-last memory
            format (faster convolutions with tensor cores on GPUs, bf16 above all; off by default).
        compile: compile the backbone with ``torch.compile`` (``nn.Module.compile``: in place, so
            checkpoints keep their keys); the first batches of each shape pay the compilation
            (off by default).
        compile_options: keyword arguments of ``torch.compile`` (``{mode: max-autotune}``,
            ``{backend: eager}``); used with ``compile``.
    """

    def __init__(
        self,
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
        logits_dir: str | None = None,
        channels_last: bool = False,
        compile: bool = False,
        compile_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes, predictions_dir=logits_dir)
        # logits_dir is where outputs go, not a hyperparameter: kept out of the checkpoint so that
        # `predict --ckpt_path ... --model.init_args.logits_dir X` is not reset by the checkpoint's
        # saved hyperparameters (LightningCLI re-applies them over the command line)
        self.save_hyperparameters(ignore=["logits_dir"])
        self.model = create_classifier(
            model_name, num_classes, pretrained, checkpoint_path, drop_path_rate
        )
        mean, std = uint8_normalization(self.model)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model.compile(**(compile_options or {}))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # the views are resized with the model's own interpolation (timm's pretrained_cfg)
        cfg = data_config(self.model)
        self.datamodule.use_model_preprocessing(cfg.get("interpolation"), cfg.get("crop_pct"))

    # ------------------------------------------------------------------ forward
    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        image = normalize_uint8(batch["image"], self.mean, self.std)
        batch["image"] = image.contiguous(memory_format=self.memory_format)
        return batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self.train_acc.update(logits.detach(), batch["label"])  # no per-step compute
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self(batch["image"])

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        logits = self.evaluate("val", batch, dataloader_idx)
        real = batch["padding"].logical_not() if "padding" in batch else slice(None)
        loss = F.cross_entropy(logits[real], batch["label"][real])
        self.log("val/loss", loss, sync_dist=True, batch_size=len(logits), add_dataloader_idx=False)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        opt = adamw(
            self.named_parameters(),
            hp.lr,
            hp.weight_decay,
            no_decay=lambda name, p: p.ndim <= 1 or name.endswith(".bias"),
        )
        total = self.trainer.estimated_stepping_batches
        sched = warmup_cosine(opt, total, hp.warmup_fraction, hp.min_lr_ratio)
        return {"optimizer": opt, "lr_scheduler": sched}
