"""The OCCAM task (OCCAM §3, §E): every mask applied, scored, one chosen, a zero-shot CLIP on it.

For each batch of an :class:`~occam_l2r.data.occam_datamodule.OccamDataModule` (images with all
masks of each source, applied every way), per (mask source, apply mode): all masks of the batch
are encoded together (in chunks of ``mask_batch_size``), classified by the zero-shot model
(:class:`~occam_l2r.models.zeroshot.ZeroShotClassifier`; the ``alpha`` mode through the
α-channel encoder :class:`~occam_l2r.models.alpha_clip.AlphaClipEncoder`), scored by every
foreground score (:mod:`occam_l2r.occam.scores`), and each image takes the logits of its
highest-scoring mask. An image without masks takes the whole image's logits of that mode (plain
RGB for the crop modes, a full α-channel for ``alpha``) and is counted (``fallback_rate``, the
``no_masks`` column). The whole-image baselines come from the same pass.

Outputs (:class:`~occam_l2r.occam.table.Variant`): ``FULL``, ``whole_image/alpha`` and
``<source>/<mode>/<score>``. Metrics per split and output are logged as
``<split>/<output>/<metric>``; the ``primary`` output (default: the first masked one) also as
``<split>/<metric>``. At the end of ``test`` the Table-8-like table is written
(:func:`occam_l2r.occam.table.write_table`) and printed. ``predict`` writes one folder of logits
files per output. No optimiser.

``ens_entropy`` uses an ensemble: the zero-shot model plus the ``ensemble`` models (each with its
own prototypes and preprocessing) on the crop modes' inputs; for ``alpha`` (only the α-channel
encoder reads it) the ensemble is the α encoder alone. Without ``ensemble`` it is 1 - H(p) of the
zero-shot model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torchmetrics import MeanMetric

from occam_l2r.errors import UserError
from occam_l2r.models.alpha_clip import HINT, AlphaClipEncoder
from occam_l2r.models.prompts import LabelSpace, resolve_templates
from occam_l2r.models.zeroshot import DEFAULT_TEMPLATE, ZeroShotClassifier, load_clip
from occam_l2r.occam.scores import FOREGROUND_SCORES, ForegroundScore, choose, classifier_score
from occam_l2r.occam.table import (
    WHOLE_IMAGE,
    Variant,
    results_from_values,
    to_markdown,
    variants,
    write_table,
)
from occam_l2r.tasks.base import _real_rows, metric_key
from occam_l2r.tasks.zeroshot_base import ZeroShotOutputsTask
from occam_l2r.weights import WeightsNotFoundError

DEFAULT_CACHE = "~/.cache/occam_l2r/prototypes"


class Output(NamedTuple):
    """One output of a batch: logits ``(B, C)``, no-mask flags ``(B,)`` and the IoU of the
    chosen mask with the ground-truth object ``(B,)`` (NaN: whole image, or no ground truth)."""

    logits: torch.Tensor
    fallback: torch.Tensor
    object_iou: torch.Tensor


@dataclass
class ClipSpec:
    """An open_clip model of the ``ens_entropy`` ensemble (see :func:`load_clip`)."""

    model_name: str
    pretrained: str | None = None
    model_config: str | None = None


class OccamTask(ZeroShotOutputsTask):
    """OCCAM: foreground selection among applied masks, zero-shot classification of the chosen.

    Args:
        model_name: open_clip model name, preset (``clip-l14``), ``hf-hub:`` id or registered
            config (``occam-tiny-convnext``, ``occam-tiny-vit``).
        pretrained: pretrained tag or local weights file (an open_clip state dict).
        model_config: an extra open_clip model config (``.json`` file or folder) to register.
        num_classes: the dataset's classes (linked from the DataModule).
        templates: a template with ``{c}``, a list, a named set or a file (as the zero-shot task).
        class_names_file: prompt names instead of the dataset's official ones.
        label_space: ``dataset`` or ``imagenet1k``.
        scores: the foreground scores (``max_prob``, ``oracle``, ``ens_entropy``, ``bbox_iou``).
        alpha_weights: an AlphaCLIP visual checkpoint for the ``alpha`` mode (needs a ViT);
            ``null`` leaves the alpha patch embedding at zero (the RGB model's embeddings).
        ensemble: extra models of the ``ens_entropy`` ensemble.
        primary: the output also logged as ``<split>/<metric>``; default the first masked one.
        mask_batch_size: masks encoded per forward pass.
        table_dir: where ``test`` writes ``occam_table.{md,csv,json}``; default the run folder.
        table_metric: the metric of the Markdown table (``acc``, ``macro_acc``,
            ``worst_group_acc``).
        prototype_cache: folder of the cached class prototypes (``null``: no disk cache).
        logits_dir: where ``predict`` writes; default ``<run dir>/logits``.
    """

    def __init__(
        self,
        model_name: str = "occam-tiny-convnext",
        pretrained: str | None = None,
        model_config: str | None = None,
        num_classes: int = 10,
        templates: str | list[str] = DEFAULT_TEMPLATE,
        class_names_file: str | None = None,
        label_space: LabelSpace = "dataset",
        scores: list[ForegroundScore] | None = None,
        alpha_weights: str | None = None,
        ensemble: list[ClipSpec] | None = None,
        primary: str | None = None,
        mask_batch_size: int = 256,
        table_dir: str | None = None,
        table_metric: str = "acc",
        prototype_cache: str | None = DEFAULT_CACHE,
        logits_dir: str | None = None,
    ) -> None:
        super().__init__(num_classes, predictions_dir=logits_dir)
        self.save_hyperparameters(ignore=["logits_dir"])
        self.score_names = list(scores) if scores is not None else ["max_prob", "oracle"]
        bad = [s for s in self.score_names if s not in FOREGROUND_SCORES]
        if bad or not self.score_names:
            raise ValueError(f"model.scores={self.score_names}: choose from {FOREGROUND_SCORES}")
        if table_metric not in ("acc", "macro_acc", "worst_group_acc"):
            raise ValueError(f"table_metric={table_metric!r}: acc, macro_acc or worst_group_acc")
        self.templates = resolve_templates(templates)
        self.clip = load_clip(model_name, pretrained, model_config)  # missing weights: fail now
        if alpha_weights and not Path(alpha_weights).expanduser().is_file():
            raise WeightsNotFoundError(f"AlphaCLIP checkpoint {alpha_weights} not found. {HINT}")
        self.members = [
            load_clip(m.model_name, m.pretrained, m.model_config) for m in ensemble or []
        ]
        self.zeroshot: ZeroShotClassifier | None = None
        self.ensemble = nn.ModuleList()
        self.alpha: AlphaClipEncoder | None = None
        #: per ``<split>/<output>``: mean IoU of the chosen mask with the ground-truth object
        self.object_iou = nn.ModuleDict()
        self.sources: list[str] = []
        self.modes: list[str] = []
        self.variants: list[Variant] = []
        self.table_paths: dict[str, Path] = {}

    # ------------------------------------------------------------------ setup
    @property
    def outputs(self) -> list[str]:
        return [v.key for v in self.variants]

    def prediction_outputs(self) -> list[str]:
        return self.outputs

    @property
    def primary(self) -> str:
        masked = [v.key for v in self.variants if v.source]
        return self.hparams.primary or (masked[0] if masked else self.outputs[0])

    no_fit_message = (
        "OCCAM has nothing to train: run `python -m occam_l2r occam --config ...` (or "
        "test / predict)"
    )

    def setup(self, stage: str) -> None:
        self.refuse_fit(stage)
        dm = self.trainer.datamodule
        self.sources = list(dm.source_names)
        self.modes = list(dm.apply_modes)
        self.variants = variants(self.sources, self.modes, self.score_names)
        classes = self.setup_label_space(dm)
        super().setup(stage)
        for key in self.add_output_metrics(stage):
            self.object_iou[key] = MeanMetric(nan_strategy="ignore").to(self.device)
        if self.zeroshot is None:
            cache = self.hparams.prototype_cache
            self.zeroshot = ZeroShotClassifier(self.clip, classes.names, self.templates, cache)
            self.ensemble.extend(
                ZeroShotClassifier(c, classes.names, self.templates, cache) for c in self.members
            )
        if "alpha" in self.modes and self.alpha is None:
            c = self.clip
            self.alpha = AlphaClipEncoder(
                c.model.visual, c.image_size, c.mean, c.std, self.hparams.alpha_weights
            )

    def _prepare(self) -> None:
        for classifier in [self.zeroshot, *self.ensemble]:
            if classifier is not None and classifier._prototypes.numel() == 0:
                classifier.build_prototypes()

    # ------------------------------------------------------------------ outputs
    def _encode(self, mode: str, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(N, C)`` of the zero-shot model on ``images`` of ``mode`` (in chunks), and the
        ensemble's ``(N, M, C)`` when ``ens_entropy`` needs it."""
        assert self.zeroshot is not None
        size = max(1, int(self.hparams.mask_batch_size))
        wants_ensemble = (
            "ens_entropy" in self.score_names and len(self.ensemble) and mode != "alpha"
        )
        logits, members = [], []
        for chunk in images.split(size):
            if mode == "alpha":
                assert self.alpha is not None
                z = self.zeroshot.logits(self.alpha(chunk))
            else:
                z = self.zeroshot(chunk)
            logits.append(z)
            if wants_ensemble:
                members.append(torch.stack([z, *(c(chunk) for c in self.ensemble)], dim=1))
        if not logits:
            return images.new_zeros((0, self.num_classes), dtype=torch.float32), None
        return torch.cat(logits), torch.cat(members) if members else None

    def outputs_of(self, batch: dict[str, Any]) -> dict[str, Output]:
        """Every output of a batch (:class:`Output`), keyed by :attr:`Variant.key`."""
        n = len(batch["label"])
        device = batch["label"].device
        zero = torch.zeros(n, device=device)
        nan = torch.full((n,), torch.nan, device=device)
        whole = {"FULL": self._encode("FULL", batch["image"])[0]}
        out = {Variant().key: Output(whole["FULL"], zero, nan)}
        if "alpha" in self.modes:
            whole["alpha"] = self._encode("alpha", batch["image_alpha"])[0]
            out[Variant(score=WHOLE_IMAGE, mode="alpha").key] = Output(whole["alpha"], zero, nan)
        for source in self.sources:
            owner = batch["owner"][source]
            no_masks = (batch["num_masks"][source] == 0).float()
            label = batch["label"][owner]
            object_iou = batch["object_iou"][source].to(device)
            for mode in self.modes:
                logits, members = self._encode(mode, batch["masks"][source][mode])
                base = whole["alpha" if mode == "alpha" else "FULL"]
                for score in self.score_names:
                    s = self._score(score, logits, label, members, batch, source)
                    idx = choose(s, owner, n)
                    found = idx >= 0
                    at = idx.clamp(min=0)
                    taken = logits[at] if len(logits) else base
                    chosen = torch.where(found[:, None], taken, base)
                    iou = torch.where(found, object_iou[at], nan) if len(logits) else nan
                    out[Variant(source, score, mode).key] = Output(chosen, no_masks, iou)
        return out

    def _score(
        self,
        name: str,
        logits: torch.Tensor,
        label: torch.Tensor,
        members: torch.Tensor | None,
        batch: dict[str, Any],
        source: str,
    ) -> torch.Tensor:
        if name != "bbox_iou":
            return classifier_score(name, logits, label, members)
        iou = batch["bbox_iou"][source].to(logits.device)
        if bool(torch.isnan(iou).any()):
            raise UserError(
                "the bbox_iou foreground score needs a ground-truth box for every image, but "
                f"{type(self.trainer.datamodule.dataset).__name__} gives none for some images "
                "(no gt_boxes and no ground-truth masks). Drop bbox_iou from model.scores."
            )
        return iou

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.outputs_of(batch)[self.primary].logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert self.zeroshot is not None
        return self.zeroshot(images)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, stage: str, batch: dict[str, Any], dataloader_idx: int) -> torch.Tensor:
        split = self.split_names[stage][dataloader_idx]
        outs = self.outputs_of(batch)
        real = _real_rows(batch, len(batch["label"]), batch["label"].device)
        for name, (logits, fallback, object_iou) in outs.items():
            self.update_metrics(f"{split}/{name}", batch, logits, fallback)
            self.object_iou[metric_key(f"{split}/{name}")].update(object_iou[real])
        logits, fallback, _ = outs[self.primary]
        self.update_metrics(split, batch, logits, fallback)
        return logits

    def log_splits(self, stage: str) -> None:
        super().log_splits(stage)
        splits = self.split_names[stage]
        values = self.output_values(stage)
        for split in splits:
            for output in self.outputs:
                mean_iou = self.object_iou[metric_key(f"{split}/{output}")]
                values[f"{split}/{output}/object_iou"] = mean_iou.compute()
                mean_iou.reset()
        self.log_dict(values, add_dataloader_idx=False)
        if self.trainer.sanity_checking:
            return
        results = results_from_values(values, self.variants, splits)
        if self.trainer.is_global_zero:
            if stage == "test":
                self.table_paths = write_table(
                    results, splits, self.table_dir(), self.hparams.table_metric, self.table_meta()
                )
            print(to_markdown(results, splits, self.hparams.table_metric), flush=True)

    def table_dir(self) -> Path:
        if self.hparams.table_dir:
            return Path(self.hparams.table_dir)
        return Path(self.trainer.log_dir or self.trainer.default_root_dir)

    def table_meta(self) -> dict[str, Any]:
        dm = self.trainer.datamodule
        return {
            "model": self.clip.name,
            "alpha_weights": self.hparams.alpha_weights,
            "dataset": type(getattr(dm, "dataset", None)).__name__,
            "sources": self.sources,
            "apply_modes": self.modes,
            "scores": self.score_names,
            "templates": self.templates,
        }

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        outs = self.outputs_of(batch)
        logits, fallback, _ = outs[self.primary]
        pred = self.prediction({**batch, "fallback": fallback}, logits)
        real = _real_rows(batch, len(logits), logits.device).cpu()
        pred["outputs"] = {n: o.logits.detach().float().cpu()[real] for n, o in outs.items()}
        pred["fallbacks"] = {n: o.fallback.detach().cpu()[real] for n, o in outs.items()}
        return pred
