"""The OCCAM task (OCCAM §3, §E): the Lightning wrapper of the plain
:class:`~occam_l2r.occam.model.Occam` module.

The algorithm — every mask applied, scored by every foreground score, one chosen per image, the
zero-shot CLIP on it, the whole image where there is none — lives in :mod:`occam_l2r.occam`
(usable on one image without Lightning). This task wires it in: it builds the module in ``setup``
(the zero-shot model :class:`~occam_l2r.models.zeroshot.ZeroShotClassifier` on the DataModule's
classes, the ``ensemble`` models, the α-channel encoder
:class:`~occam_l2r.models.alpha_clip.AlphaClipEncoder` when ``alpha`` is a mode), hands it each
batch of an :class:`~occam_l2r.data.occam_datamodule.OccamDataModule` as an
:class:`~occam_l2r.occam.model.OccamBatch`, and logs and writes what comes out.

Outputs (:class:`~occam_l2r.occam.table.Variant`): ``FULL``, ``whole_image/alpha`` and
``<source>/<mode>/<score>``. Metrics per split and output are logged as
``<split>/<output>/<metric>``; the ``primary`` output (default: the first masked one) also as
``<split>/<metric>``. At the end of ``test`` the Table-8-like table is written
(:func:`occam_l2r.occam.table.write_table`) and printed. ``predict`` writes one folder of logits
files per output. No optimiser; the task's :attr:`OccamTask.trainer_defaults` (no checkpoints,
no logger, no model summary) are the ``occam`` verb's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import MeanMetric

from occam_l2r.models.alpha_clip import HINT, AlphaClipEncoder
from occam_l2r.models.metrics import PresentClassAccuracy
from occam_l2r.models.prompts import LabelSpace, label_space_classifier, resolve_templates
from occam_l2r.models.zeroshot import DEFAULT_TEMPLATE, ZeroShotClassifier, load_clip
from occam_l2r.occam.model import Occam, OccamBatch, Output, SourceMasks
from occam_l2r.occam.scores import MissingGroundTruthError, check_scores
from occam_l2r.occam.table import (
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
#: the metrics the Markdown table can show
TABLE_METRICS = ("acc", "macro_acc", "worst_group_acc", "mean_class_acc")


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
        label_space: a label space of :data:`occam_l2r.models.prompts.LABEL_SPACES`: ``dataset``
            (the dataset's classes), ``imagenet1k`` / ``imagenet1k_synonyms`` (the 1000
            ImageNet classes; CounterAnimal), or the OCCAM authors' max-mapped fine-grained
            spaces ``cub200`` (Waterbirds), ``stanford_cars196`` (UrbanCars),
            ``imagenet1k_max`` (ImageNet-9). Whatever the space, the logits, ``max_prob`` and
            ``oracle`` are over the output classes (docs/occam.md).
        scores: the foreground scores: ``max_prob``, ``oracle``, ``ens_entropy``, ``bbox_iou`` or
            any other registered in :data:`occam_l2r.occam.scores.FOREGROUND_SCORES`.
        alpha_weights: an AlphaCLIP visual checkpoint for the ``alpha`` mode (needs a ViT);
            ``null`` leaves the alpha patch embedding at zero (the RGB model's embeddings).
        ensemble: extra models of the ``ens_entropy`` ensemble.
        primary: the output also logged as ``<split>/<metric>``; default the first masked one.
        mask_batch_size: masks encoded per forward pass.
        table_dir: where ``test`` writes ``occam_table.{md,csv,json}``; default the run folder.
        table_metric: the metric of the Markdown table (``acc``, ``macro_acc``,
            ``worst_group_acc``, ``mean_class_acc``: the mean per-class accuracy over the
            classes with at least one correct prediction, the authors' CounterAnimal metric).
        prototype_cache: folder of the cached class prototypes (``null``: no disk cache).
        logits_dir: where ``predict`` writes; default ``<run dir>/logits``.
    """

    #: an OCCAM run trains nothing: no checkpoints, no model summary, no logger unless
    #: configured (the ``occam`` verb's trainer defaults)
    trainer_defaults: ClassVar[dict[str, Any]] = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "default_root_dir": "checkpoints/occam",
    }

    def __init__(
        self,
        model_name: str = "occam-tiny-convnext",
        pretrained: str | None = None,
        model_config: str | None = None,
        num_classes: int = 10,
        templates: str | list[str] = DEFAULT_TEMPLATE,
        class_names_file: str | None = None,
        label_space: LabelSpace = "dataset",
        scores: list[str] | None = None,
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
        self.score_names = check_scores(scores if scores is not None else ["max_prob", "oracle"])
        if table_metric not in TABLE_METRICS:
            raise ValueError(f"table_metric={table_metric!r}: one of {', '.join(TABLE_METRICS)}")
        self.templates = resolve_templates(templates)
        self.clip = load_clip(model_name, pretrained, model_config)  # missing weights: fail now
        if alpha_weights and not Path(alpha_weights).expanduser().is_file():
            raise WeightsNotFoundError(f"AlphaCLIP checkpoint {alpha_weights} not found. {HINT}")
        self.members = [
            load_clip(m.model_name, m.pretrained, m.model_config) for m in ensemble or []
        ]
        #: the plain OCCAM module (built in ``setup``, on the DataModule's classes)
        self.occam: Occam | None = None
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
        if self.occam is None:
            cache = self.hparams.prototype_cache
            # a max-mapped label space scores its members, the classifier outputs the classes
            zeroshot = label_space_classifier(
                ZeroShotClassifier(self.clip, classes.names, self.templates, cache), classes
            )
            ensemble = [
                label_space_classifier(
                    ZeroShotClassifier(c, classes.names, self.templates, cache), classes
                )
                for c in self.members
            ]
            alpha = None
            if "alpha" in self.modes:
                c = self.clip
                alpha = AlphaClipEncoder(
                    c.model.visual, c.image_size, c.mean, c.std, self.hparams.alpha_weights
                )
            self.occam = Occam(
                zeroshot,
                self.score_names,
                ensemble,
                alpha,
                self.hparams.mask_batch_size,
                image_size=dm.image_size,
            )

    def _prepare(self) -> None:
        assert self.occam is not None
        self.occam.prepare()

    def extra_metrics(self) -> dict[str, Any]:
        """``mean_class_acc``: the OCCAM authors' mean per-class accuracy (CounterAnimal)."""
        return {"mean_class_acc": PresentClassAccuracy(self.num_classes, only_correct=True)}

    def update_extra(self, metrics: Any, logits: torch.Tensor, target: torch.Tensor) -> None:
        metrics["mean_class_acc"].update(logits, target)

    # ------------------------------------------------------------------ outputs
    def occam_batch(self, batch: dict[str, Any]) -> OccamBatch:
        """A batch of :func:`~occam_l2r.data.occam_datamodule.collate_occam` as the plain
        module reads it."""
        whole = {"FULL": batch["image"]}
        if "image_alpha" in batch:
            whole["alpha"] = batch["image_alpha"]
        sources = {
            s: SourceMasks(batch["applied"][s], batch["owner"][s], batch["masks"][s])
            for s in self.sources
        }
        return OccamBatch(whole, batch["label"], sources, batch["gt_box"], batch["gt_object"])

    def outputs_of(self, batch: dict[str, Any]) -> dict[str, Output]:
        """Every output of a batch (:class:`~occam_l2r.occam.model.Output`), keyed by
        :attr:`Variant.key`."""
        assert self.occam is not None
        try:
            return self.occam(self.occam_batch(batch))
        except MissingGroundTruthError as err:
            dataset = type(self.trainer.datamodule.dataset).__name__
            raise MissingGroundTruthError(
                "the bbox_iou foreground score needs a ground-truth box for every image, but "
                f"{dataset} gives none for some images (no gt_boxes and no ground-truth masks). "
                "Drop bbox_iou from model.scores."
            ) from err

    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.outputs_of(batch)[self.primary].logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert self.occam is not None
        return self.occam.classifier(images)

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
        return {
            "model": self.clip.name,
            "alpha_weights": self.hparams.alpha_weights,
            "dataset": type(self.datamodule.dataset).__name__,
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
