"""The base task: split names, per-split metrics, their logging, the test summary, predictions.

Every task that classifies (the supervised classifier, the fusion heads, the zero-shot models)
subclasses :class:`BaseTask` and holds only what is its own (model, loss, optimiser). The base
task owns:

- the split names of each stage, the group names and the headline metric, read from the fields
  that every DataModule declares (:class:`occam_l2r.data.base.BaseDataModule`:
  ``val_split_names``, ``test_split_names``, ``predict_split_names``, ``group_names``,
  ``headline_metric``, ``view``, ``unreadable_counts``);
- one metric collection per evaluated split: ``acc``, ``macro_acc`` (over the classes present),
  ``group_acc`` / ``worst_group_acc``, ``fallback_rate`` and ``num_samples`` (plus what a
  subclass adds in :meth:`BaseTask.extra_metrics`), logged as ``<split>/<metric>``, and
  ``num_unreadable`` (images the DataModule left out as unreadable, ``data.on_unreadable``);
- the headline metric of the dataset (the DataModule's ``headline_metric``: ``acc``, or
  ``macro_acc`` for FungiTastic), logged after every validation epoch as ``val/headline`` (the value of the first
  validation split), the key the checkpoint callback monitors (``val/acc`` stays logged too);
- the INFO line of ``fit`` that says where the run's outputs go (:meth:`BaseTask.on_fit_start`;
  the DataModule logs the data root, the store and the images per split);
- the test splits scored in a predict pass when :attr:`BaseTask.score_predictions` is set
  (``fit --predict_after_fit``): the same metric collections, :meth:`BaseTask.scored_test_metrics`
  returns what ``test`` would log, so a run reads each test split once;
- what ``predict`` emits: :meth:`BaseTask.prediction` packs a batch's sample ids, labels, groups,
  candidates, fallback flags and logits for the streaming
  :class:`~occam_l2r.tasks.logits_writer.LogitsWriter`, which :meth:`configure_callbacks` adds
  to every run; :meth:`BaseTask.prediction_metadata` stores the headline metric in the files'
  config (``config.headline_metric``), where ``fuse`` reads it.

Under DDP every sample is counted exactly once: the DataModules give evaluation and predict
loaders an unrepeated distributed sampler (:func:`occam_l2r.data.loaders.eval_loader`), and the
metric states are summed over ranks when computed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from occam_l2r.data.base import BaseDataModule
from occam_l2r.models.metrics import GroupAccuracy, PresentClassAccuracy, worst_group
from occam_l2r.tasks.logits_writer import LogitsWriter

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("acc", "macro_acc", "worst_group_acc", "fallback_rate")
#: the key of the headline metric of the first validation split (the checkpoint monitor).
HEADLINE_KEY = "val/headline"


def metric_key(split: str) -> str:
    """ModuleDict key of a split's metrics (``train`` would clash with ``nn.Module.train``)."""
    return "split_" + split.replace(".", "_")


class BaseTask(L.LightningModule):
    """Per-split metrics and predictions shared by every classifying task.

    Subclasses implement ``forward`` and :meth:`logits_of` (the logits of a batch) and may add
    metrics with :meth:`extra_metrics` / :meth:`update_extra`.

    Args:
        num_classes: number of classes (linked from the DataModule).
        predictions_dir: where ``predict`` writes the logits files; default
            ``<run dir>/<predictions_subdir>``.
    """

    #: folder of the run dir that ``predict`` writes to when no directory is given.
    predictions_subdir: ClassVar[str] = "logits"

    def __init__(self, num_classes: int, predictions_dir: str | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.predictions_dir = predictions_dir
        self.eval_metrics = nn.ModuleDict()
        self.split_names: dict[str, list[str]] = {"val": [], "test": [], "predict": []}
        self.group_names: list[str] = []
        #: the dataset's headline metric (set from the DataModule in :meth:`setup`)
        self.headline_metric = "acc"
        #: the names of the logits' columns when they are not the DataModule's classes (the
        #: zero-shot tasks' ImageNet-1k label space); empty: the DataModule's ``class_names``
        self.output_class_names: list[str] = []
        #: score the test splits while predicting (``fit --predict_after_fit``: one pass writes
        #: their logits and their test metrics, :meth:`scored_test_metrics`)
        self.score_predictions = False
        #: the stored dtype of the logits files ``predict`` writes (``--logits_dtype``)
        self.logits_dtype = "float32"
        #: the splits that this predict pass scored
        self._scored: set[str] = set()
        #: the test metrics of the last scoring predict pass (:meth:`on_predict_epoch_end`)
        self.scored_metrics: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ what subclasses provide
    def logits_of(self, batch: dict[str, Any]) -> torch.Tensor:
        """The ``(B, C)`` logits of a batch."""
        raise NotImplementedError

    def extra_metrics(self) -> dict[str, Metric]:
        """Metrics of this task beyond the shared ones (e.g. ``nll``)."""
        return {}

    def update_extra(
        self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor
    ) -> None:
        """Update the metrics of :meth:`extra_metrics` with a batch's labelled samples."""

    def prediction_outputs(self) -> list[str]:
        """The named outputs of a task with several per sample (a folder of logits files each,
        see :class:`LogitsWriter`); ``[]``: one output, written to the logits folder itself."""
        return []

    def prediction_metadata(self) -> dict[str, Any]:
        """``view`` and ``config`` written into the logits files of ``predict``.

        ``config`` holds the task's class name (``task``), the model's and the DataModule's
        hyperparameters and the dataset's ``headline_metric``; an override should extend
        ``super().prediction_metadata()``.
        """
        dm = self.datamodule
        return {
            "view": str(dm.view),
            "config": {
                "task": type(self).__qualname__,  # what the report names the model by
                "model": dict(self.hparams),
                "data": dict(dm.hparams),
                "headline_metric": dm.headline_metric,
            },
        }

    # ------------------------------------------------------------------ setup
    @property
    def datamodule(self) -> BaseDataModule:
        """The trainer's DataModule (every task runs with one of the toolkit's DataModules)."""
        return BaseDataModule.of(self.trainer.datamodule, type(self).__name__)

    def setup(self, stage: str) -> None:
        dm = self.datamodule
        self.split_names = {
            "val": list(dm.val_split_names),
            "test": list(dm.test_split_names),
            "predict": list(dm.predict_split_names),
        }
        self.group_names = list(dm.group_names)
        self.headline_metric = dm.headline_metric
        evaluated = {
            "fit": self.split_names["val"],
            "validate": self.split_names["val"],
            "test": self.split_names["test"],
            "predict": self.split_names["test"] if self.score_predictions else [],
        }.get(stage, [])
        for split in evaluated:
            if metric_key(split) not in self.eval_metrics:
                self.eval_metrics[metric_key(split)] = self.make_metrics().to(self.device)
            elif stage == "predict":
                self.eval_metrics[metric_key(split)].reset()
        if stage == "predict":
            self._scored, self.scored_metrics = set(), None

    def make_metrics(self) -> MetricCollection:
        """The metric collection of one split."""
        k = self.num_classes
        groups = max(1, len(self.group_names))
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=k, average="micro"),
                "macro_acc": PresentClassAccuracy(k),
                "group_acc": GroupAccuracy(groups),
                "fallback_rate": MeanMetric(),
                "num_samples": SumMetric(),
                **self.extra_metrics(),
            },
            compute_groups=False,
        )

    def on_fit_start(self) -> None:
        """Log (rank 0) where the run's outputs go: its folder and its checkpoints."""
        trainer = self.trainer
        # every rank reads ``log_dir``: under DDP it is a broadcast from rank 0 (a collective
        # that rank 0 alone would wait on for ever)
        folder = trainer.log_dir or trainer.default_root_dir
        if not trainer.is_global_zero:
            return
        callback = trainer.checkpoint_callback
        where = f" (checkpoints in {callback.dirpath})" if callback and callback.dirpath else ""
        log.info("outputs of this run: %s%s", folder, where)

    def configure_callbacks(self) -> list[Callback]:
        """The streaming logits writer serves ``predict`` of every task."""
        if self._trainer is not None and self.trainer.state.fn != "predict":
            return []
        return [LogitsWriter(self.predictions_dir, self.predictions_subdir, dtype=self.logits_dtype)]

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, stage: str, batch: dict[str, Any], dataloader_idx: int) -> torch.Tensor:
        """Update the split's metrics with a batch; returns the batch's logits."""
        split = self.split_names[stage][dataloader_idx]
        logits = self.logits_of(batch)
        self.update_metrics(split, batch, logits, batch.get("fallback"))
        return logits

    def update_metrics(
        self,
        split: str,
        batch: dict[str, Any],
        logits: torch.Tensor,
        fallback: torch.Tensor | None = None,
    ) -> None:
        """Update the metric collection ``split`` (made by :meth:`make_metrics`; a task with
        several outputs keys one per ``<split>/<output>``) with a batch's ``logits``."""
        real = _real_rows(batch, len(logits), logits.device)  # DDP padding is never counted
        label = batch["label"]
        scored = real & (label >= 0)  # unlabelled samples (-1) are predicted, never scored
        m = self.eval_metrics[metric_key(split)]
        z, y = logits[scored], label[scored]
        g = batch["group"][scored] if "group" in batch else torch.zeros_like(y)
        if len(y):
            m["acc"].update(z, y)
            m["macro_acc"].update(z, y)
            m["group_acc"].update(z, y, g)
            self.update_extra(m, z, y)
        if fallback is None:
            fallback = torch.zeros(len(label), device=logits.device)
        if bool(real.any()):
            m["fallback_rate"].update(fallback[real].float())
        m["num_samples"].update(real.sum().float())

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate("val", batch, dataloader_idx)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.evaluate("test", batch, dataloader_idx)

    def split_values(self, split: str) -> dict[str, torch.Tensor]:
        """Compute (synced over ranks) and reset a split's metrics as ``{<split>/<name>: value}``."""
        m = self.eval_metrics[metric_key(split)]
        values: dict[str, torch.Tensor] = {}
        for name, metric in m.items():
            value = metric.compute()
            if name == "group_acc":
                value = value.reshape(-1)  # torchmetrics squeezes one group's value to 0-d
                values[f"{split}/worst_group_acc"] = worst_group(value)
                for g, acc in enumerate(value):
                    if not torch.isnan(acc) and g < len(self.group_names):
                        values[f"{split}/group_acc/{self.group_names[g]}"] = acc
            else:
                values[f"{split}/{name}"] = value
        values.update(self.unreadable_values([split]))
        m.reset()
        return values

    def unreadable_values(self, splits: list[str]) -> dict[str, torch.Tensor]:
        """``{<split>/num_unreadable: n}``: images of each split the DataModule left out.

        Read from the DataModule's ``unreadable_counts`` (``data.on_unreadable: skip``); empty
        without a trainer.
        """
        counts = self.datamodule.unreadable_counts if self._trainer is not None else {}
        return {
            f"{s}/num_unreadable": torch.tensor(float(counts[s]), device=self.device)
            for s in splits
            if s in counts
        }

    def log_splits(self, stage: str) -> None:
        values: dict[str, torch.Tensor] = {}
        for split in self.split_names[stage]:
            values.update(self.split_values(split))
        if stage == "val" and self.split_names["val"]:
            first = self.split_names["val"][0]
            if first != "val":  # `val/acc` whatever the val split is called
                values["val/acc"] = values[f"{first}/acc"]
            values[HEADLINE_KEY] = self.headline_value(values, first)
        if stage == "val":  # the training split is not evaluated: its count is logged here
            values.update(self.unreadable_values(["train"]))
        self.log_dict(values, add_dataloader_idx=False)

    def headline_value(self, values: dict[str, torch.Tensor], split: str) -> torch.Tensor:
        """The headline metric of ``split`` among the logged ``values``.

        Raises:
            ValueError: the split has no such metric (an unknown ``headline_metric``).
        """
        key = f"{split}/{self.headline_metric}"
        if key not in values:
            known = sorted(k.split("/", 1)[1] for k in values if k.startswith(f"{split}/"))
            raise ValueError(
                f"the dataset's headline metric {self.headline_metric!r} is not a metric of the "
                f"task; it logs {known} for {split!r}"
            )
        return values[key]

    def on_validation_epoch_end(self) -> None:
        self.log_splits("val")

    def on_test_epoch_end(self) -> None:
        self.log_splits("test")

    # ------------------------------------------------------------------ predict
    def prediction(self, batch: dict[str, Any], logits: torch.Tensor) -> dict[str, Any]:
        """What :class:`LogitsWriter` stores for a batch (on the CPU, DDP padding dropped)."""
        n = len(logits)
        real = _real_rows(batch, n, logits.device).cpu()
        keep = real.nonzero().flatten().tolist()
        out: dict[str, Any] = {
            "index": batch["index"].detach().cpu()[real],
            "id": [batch["id"][i] for i in keep],
            "label": batch["label"].detach().cpu()[real],
            "logits": logits.detach().float().cpu()[real],
            "group": [batch["group_name"][i] for i in keep]
            if "group_name" in batch
            else [""] * len(keep),
        }
        for key in ("candidate", "fallback"):
            if key in batch:
                out[key] = batch[key].detach().cpu()[real]
        return out

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        logits = self.logits_of(batch)
        if self.score_predictions:
            self.score_prediction(batch, logits, dataloader_idx)
        return self.prediction(batch, logits)

    def score_prediction(self, batch: dict, logits: torch.Tensor, dataloader_idx: int) -> None:
        """Update the test metrics with a predicted batch of a test split (a split that is
        predicted but not tested, ``train`` or ``val``, is not scored)."""
        split = self.split_names["predict"][dataloader_idx]
        if split in self.split_names["test"] and metric_key(split) in self.eval_metrics:
            self.update_metrics(split, batch, logits, batch.get("fallback"))
            self._scored.add(split)

    def on_predict_epoch_end(self) -> None:
        """After a scoring pass: :attr:`scored_metrics`, also logged to the run's loggers as a
        test logs them (before the trainer closes them)."""
        if not self.score_predictions:
            return
        self.scored_metrics = self.scored_test_metrics()
        if self.scored_metrics:
            values = {k: float(v) for k, v in self.scored_metrics.items()}
            for logger in self.loggers:  # rank 0 writes
                logger.log_metrics(values, step=self.trainer.global_step)

    def scored_test_metrics(self) -> dict[str, torch.Tensor] | None:
        """The metrics of every test split that a predict pass scored (the values and keys that
        ``test`` logs, :meth:`split_values`); ``None`` when a test split was not scored (not
        predicted, empty, or a task whose ``predict_step`` scores nothing): test it apart."""
        tests = self.split_names["test"]
        if not tests or any(s not in self._scored for s in tests):
            return None
        values: dict[str, torch.Tensor] = {}
        for split in tests:
            values.update(self.split_values(split))
        return values


def _real_rows(batch: dict[str, Any], n: int, device: torch.device) -> torch.Tensor:
    """Rows that are samples of the split, not a distributed sampler's padding."""
    padding = batch.get("padding")
    if padding is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    return ~padding.to(device=device, dtype=torch.bool)


def format_summary(metrics: dict[str, Any], stage: str = "test") -> str:
    """One Markdown row per split: accuracy, macro and worst-group accuracy, fallback rate (%)."""
    splits = sorted(
        {k.split("/")[0] for k in metrics if k.split("/")[-1] in SUMMARY_COLUMNS}
        - ({"val"} if stage != "val" else set())
    )
    lines = ["| split | " + " | ".join(SUMMARY_COLUMNS) + " |", "|---" * 5 + "|"]
    for split in splits:
        cells = []
        for c in SUMMARY_COLUMNS:
            v = metrics.get(f"{split}/{c}")
            cells.append("-" if v is None else f"{100 * float(v):.2f}")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_metrics(metrics: dict[str, Any], path: Path) -> None:
    """Write a metrics dict as JSON atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2, sort_keys=True))
    tmp.replace(path)
