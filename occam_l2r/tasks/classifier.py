"""The supervised classifier task (L2R² base classifiers on FULL, FG or BG views).

A timm model (``convnextv2_base.fcmae_ft_in1k`` in the paper) trained with AdamW and a linear
warm-up + cosine schedule. Inputs arrive as uint8 and are normalised on the device with the
model's own mean/std. Metrics per split name: ``acc``, ``macro_acc`` (over classes present),
``worst_group_acc``, ``group_acc/<group>`` and the view's ``fallback_rate``. ``predict`` writes
one logits file per split (see :mod:`occam_l2r.logits`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from occam_l2r.logits import LogitsFile
from occam_l2r.models.backbones import create_classifier, normalization
from occam_l2r.models.metrics import GroupAccuracy, PresentClassAccuracy, worst_group


class ClassifierTask(L.LightningModule):
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
    ) -> None:
        super().__init__()
        # logits_dir is where outputs go, not a hyperparameter: kept out of the checkpoint so that
        # `predict --ckpt_path ... --model.init_args.logits_dir X` is not reset by the checkpoint's
        # saved hyperparameters (LightningCLI re-applies them over the command line)
        self.save_hyperparameters(ignore=["logits_dir"])
        self.logits_dir = logits_dir
        self.model = create_classifier(
            model_name, num_classes, pretrained, checkpoint_path, drop_path_rate
        )
        mean, std = normalization(self.model)
        self.register_buffer("mean", mean * 255.0, persistent=False)
        self.register_buffer("std", std * 255.0, persistent=False)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.eval_metrics = nn.ModuleDict()
        self._split_names: dict[str, list[str]] = {}
        self._predictions: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        names = {
            "validate": ["val"],
            "fit": ["val"],
            "test": list(dm.test_split_names),
            "predict": list(dm.predict_split_names),
        }
        self._split_names = {
            "val": ["val"],
            "test": list(dm.test_split_names),
            "predict": list(dm.predict_split_names),
        }
        self._group_names = list(dm.group_names)
        for split in names.get(stage, []):
            if _key(split) not in self.eval_metrics:
                self.eval_metrics[_key(split)] = self._make_metrics(dm.num_groups).to(self.device)

    def _make_metrics(self, num_groups: int) -> MetricCollection:
        k = self.hparams.num_classes
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=k, average="micro"),
                "macro_acc": PresentClassAccuracy(k),
                "group_acc": GroupAccuracy(num_groups),
                "fallback_rate": MeanMetric(),
                "num_samples": SumMetric(),
            },
            compute_groups=False,
        )

    # ------------------------------------------------------------------ forward
    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        batch["image"] = (batch["image"].float() - self.mean) / self.std
        return batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self.train_acc(logits, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(logits))
        return loss

    def _eval_step(self, stage: str, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        split = self._split_names[stage][dataloader_idx]
        logits = self(batch["image"])
        m = self.eval_metrics[_key(split)]
        m["acc"].update(logits, batch["label"])
        m["macro_acc"].update(logits, batch["label"])
        m["group_acc"].update(logits, batch["label"], batch["group"])
        m["fallback_rate"].update(batch["fallback"])
        m["num_samples"].update(torch.tensor(float(len(logits)), device=logits.device))
        if stage == "val":
            loss = F.cross_entropy(logits, batch["label"])
            self.log(
                "val/loss", loss, sync_dist=True, batch_size=len(logits), add_dataloader_idx=False
            )

    def validation_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def _log_split(self, split: str) -> None:
        m = self.eval_metrics[_key(split)]
        values = {
            f"{split}/acc": m["acc"].compute(),
            f"{split}/macro_acc": m["macro_acc"].compute(),
            f"{split}/fallback_rate": m["fallback_rate"].compute(),
            f"{split}/num_samples": m["num_samples"].compute(),
        }
        group_acc = m["group_acc"].compute()
        values[f"{split}/worst_group_acc"] = worst_group(group_acc)
        for g, acc in enumerate(group_acc):
            if not torch.isnan(acc) and g < len(self._group_names):
                values[f"{split}/group_acc/{self._group_names[g]}"] = acc
        self.log_dict(values, add_dataloader_idx=False)
        m.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")

    def on_test_epoch_end(self) -> None:
        for split in self._split_names["test"]:
            self._log_split(split)

    # ------------------------------------------------------------------ predict -> logits files
    def predict_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        logits = self(batch["image"]).float()
        self._predictions.setdefault(dataloader_idx, []).append(
            (batch["index"].cpu(), logits.cpu())
        )

    def on_predict_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        out_dir = self._logits_dir()
        for idx, split in enumerate(self._split_names["predict"]):
            parts = self._predictions.get(idx, [])
            index = torch.cat([p[0] for p in parts]) if parts else torch.zeros(0, dtype=torch.long)
            logits = (
                torch.cat([p[1] for p in parts])
                if parts
                else torch.zeros(0, self.hparams.num_classes)
            )
            if self.trainer.world_size > 1:
                gathered: list[Any] = [None] * self.trainer.world_size
                torch.distributed.all_gather_object(gathered, (index, logits))
                index = torch.cat([g[0] for g in gathered])
                logits = torch.cat([g[1] for g in gathered])
            if self.trainer.global_rank != 0:
                continue
            order = np.unique(index.numpy(), return_index=True)[
                1
            ]  # DistributedSampler pads with repeats
            index, logits = index[order], logits[order]
            dataset = self.trainer.predict_dataloaders[idx].dataset
            items = [dataset.items[i] for i in index.tolist()]
            records = [dataset.records[r] for r, _ in items]
            LogitsFile(
                ids=[r.image_id for r in records],
                labels=[r.label for r in records],
                groups=[r.group for r in records],
                candidates=[c for _, c in items],
                logits=logits.numpy(),
                split=split,
                view=dm.view,
                run=str(out_dir.parent),
                class_names=dm.class_names,
                config={
                    "model": dict(self.hparams),
                    "data": {k: v for k, v in dict(dm.hparams).items()},
                },
            ).save(out_dir / f"{split}.npz")
        self._predictions = {}

    def _logits_dir(self) -> Path:
        if self.logits_dir:
            return Path(self.logits_dir)
        ckpt = self.trainer.ckpt_path
        if ckpt:
            path = Path(ckpt).parent
            return (path.parent if path.name == "checkpoints" else path) / "logits"
        return Path(self.trainer.log_dir or self.trainer.default_root_dir) / "logits"

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.hparams.warmup_fraction * total)
        floor = self.hparams.min_lr_ratio

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _key(split: str) -> str:
    """ModuleDict key of a split's metrics (``train`` would clash with ``nn.Module.train``)."""
    return "split_" + split.replace(".", "_")


def save_metrics(metrics: dict[str, Any], path: Path) -> None:
    """Write a metrics dict as JSON atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2, sort_keys=True))
    tmp.replace(path)
