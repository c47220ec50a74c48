"""The base of every DataModule of the toolkit: the fields tasks read, stores, exact loaders.

:class:`BaseDataModule` declares what a task may ask of any DataModule, so that no task guesses
with ``getattr``:

- ``dataset`` — the record dataset (``None`` where samples are not images, e.g. logits);
- ``num_classes``, ``class_names``, ``group_names`` — from the dataset by default;
- ``val_split_names``, ``test_split_names``, ``predict_split_names`` — one loader per name, in
  order (a subclass says which splits each stage evaluates);
- ``headline_metric`` — the metric that selects checkpoints (the dataset's by default);
- ``view`` — the view the samples show (``""`` when that is not a view of images);
- ``unreadable_counts`` — split -> images left out as unreadable (empty unless a subclass
  skips images);
- :meth:`~BaseDataModule.use_model_preprocessing` — what a task tells the DataModule of its
  model's preprocessing (resize interpolation, crop fraction).

A task that reads more than these (the captions' ``object_words``, the logits' ``num_inputs``,
the ``views`` of one image) names the DataModule it needs with :meth:`BaseDataModule.of`
(``CaptionDataModule.of(dm, "ClipTrainTask")``): any other DataModule is a
:class:`WrongDataModuleError` naming the one to configure.

Before a run builds its Trainer, the toolkit's command line calls :meth:`BaseDataModule.preflight`:
the cheap checks of the data the run reads (the dataset's records can be listed: its root and
index files are there; the stores it reads exist), with the messages that ``setup`` gives for
the same faults, from the same methods (:meth:`~BaseDataModule.check_dataset`, and a
subclass's store checks).

It also owns where the segmentation stores live — :meth:`store_folder` and :meth:`open_store`
apply the one rule of :func:`occam_l2r.store_location.resolve_store` with the dataset's root and
``gt_store_dir`` — the ground-truth store's build (:meth:`build_gt_store`, the store layer's
:func:`occam_l2r.gt_store.build_gt_store`), and evaluation/predict loaders that count every
sample once under DDP (:meth:`eval_loader`, :func:`occam_l2r.data.loaders.eval_loader`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Self

import lightning as L
from torch.utils.data import DataLoader, Dataset

from occam_l2r.data.loaders import eval_loader, world_of
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.errors import UserError
from occam_l2r.gt_store import build_gt_store, dataset_source
from occam_l2r.store import SegmentationStore
from occam_l2r.store_location import GT_STORE, open_store, resolve_store


class WrongDataModuleError(UserError, TypeError):
    """A task run with a DataModule it cannot read (the message names the one it needs)."""


class StoreCoverageError(UserError, ValueError):
    """Images of a split that the segmentation store does not hold, with
    ``data.on_missing: error`` (the message says how to segment them or fall back)."""


class BaseDataModule(L.LightningDataModule):
    """What the DataModules share (see the module docstring for the fields tasks read).

    A subclass sets ``self.dataset`` (or overrides the dataset-derived fields), defines the
    split names of each stage and its loaders. A ``gt_store_dir`` hyperparameter, when the
    subclass has one, places the ``gt`` store.
    """

    #: the view the samples show (``""``: not a view of images)
    view: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.dataset: RecordDataset | None = None
        #: split -> number of images left out as unreadable
        self.unreadable_counts: dict[str, int] = {}

    @classmethod
    def of(cls, datamodule: object, user: str) -> Self:
        """``datamodule`` itself when it is a ``cls``; else a :class:`WrongDataModuleError`
        saying that ``user`` (a task) needs ``cls`` (the ``data.class_path`` to configure)."""
        if not isinstance(datamodule, cls):
            raise WrongDataModuleError(
                f"{user} needs a {cls.__name__} (data.class_path: "
                f"{cls.__module__}.{cls.__qualname__} or a subclass), not "
                f"{type(datamodule).__name__}"
            )
        return datamodule

    # ------------------------------------------------------------------ what tasks read
    def require_dataset(self) -> RecordDataset:
        """The record dataset; a clear error for a DataModule without one."""
        if self.dataset is None:
            raise TypeError(f"{type(self).__name__} has no record dataset")
        return self.dataset

    @property
    def num_classes(self) -> int:
        return self.require_dataset().num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.require_dataset().class_names)

    @property
    def group_names(self) -> list[str]:
        return list(self.require_dataset().group_names)

    @property
    def headline_metric(self) -> str:
        """The metric that selects checkpoints: the dataset's headline metric."""
        return self.require_dataset().headline_metric or "acc"

    @property
    def val_split_names(self) -> list[str]:
        """The splits of the validation loaders, in order (one loader each)."""
        raise NotImplementedError

    @property
    def test_split_names(self) -> list[str]:
        """The splits of the test loaders, in order (one loader each)."""
        raise NotImplementedError

    @property
    def predict_split_names(self) -> list[str]:
        """The names of the predict loaders, in order (one loader each)."""
        raise NotImplementedError

    def use_model_preprocessing(
        self, interpolation: str | None = None, crop_pct: float | None = None
    ) -> None:
        """Told by the task in its ``setup``: the model's own resize interpolation and
        centre-crop fraction (a DataModule of images resizes with them where its config names
        none; the others ignore them)."""

    def prepare_data(self) -> None:
        """Create the data on disk when the dataset can (the synthetic benchmark)."""
        if self.dataset is not None:
            self.dataset.prepare()

    # ------------------------------------------------------------------ before the Trainer
    def preflight(self) -> None:
        """The cheap checks of the data, before a Trainer is built (the toolkit's LightningCLI
        classes call it right after building the DataModule): here :meth:`check_dataset`, unless
        the dataset creates its data in ``prepare_data`` (the synthetic benchmark); subclasses
        add the stores they read. ``setup`` runs the same checks, so a run started otherwise
        (a Trainer of one's own) fails with the same messages, later."""
        if self.dataset is not None and not creates_its_data(self.dataset):
            self.check_dataset()

    def check_dataset(self) -> None:
        """The dataset's records can be listed: its root and the index files of its layout are
        there (the reader's own error names the missing file and where to get it). The records
        are kept, so the later listing costs nothing."""
        if self.dataset is not None:
            self.dataset.all_records()

    # ------------------------------------------------------------------ stores
    @property
    def gt_store_dir(self) -> str | None:
        """Where the ``gt`` store lives when not under the dataset root (hyperparameter)."""
        return self.hparams.get("gt_store_dir")

    def store_folder(self, spec: str) -> Path:
        """The folder of the store ``spec`` (a name or a path, the one rule of
        :func:`occam_l2r.store_location.resolve_store`)."""
        return resolve_store(spec, self.require_dataset().root, self.gt_store_dir)

    def open_store(self, spec: str) -> SegmentationStore:
        """The store ``spec`` opened and checked against the dataset's own image files (each
        image id's file as the dataset resolves it: list files, extra roots); a missing or
        foreign store raises an error naming it and the fix."""
        dataset = self.require_dataset()
        return open_store(spec, dataset.root, self.gt_store_dir, source=dataset_source(dataset))

    def build_gt_store(self, records: Iterable[Record]) -> Path:
        """Write (or complete) the ``gt`` store with ``records`` (main process, in
        ``prepare_data``); returns its folder."""
        dataset = self.require_dataset()
        return build_gt_store(dataset, self.store_folder(GT_STORE), records=list(records))

    # ------------------------------------------------------------------ loaders
    def eval_loader(self, dataset: Dataset, batch_size: int, **kwargs: Any) -> DataLoader:
        """An in-order loader; over several processes every sample is counted exactly once
        (padding marked, :func:`occam_l2r.data.loaders.eval_loader`)."""
        world, rank = world_of(self.trainer)
        return eval_loader(dataset, batch_size, world_size=world, rank=rank, **kwargs)


def creates_its_data(dataset: RecordDataset) -> bool:
    """Whether ``dataset`` writes its data in ``prepare`` (it overrides
    :meth:`~occam_l2r.data.records.RecordDataset.prepare`: the synthetic benchmark), so that its
    records can be listed only after ``prepare_data`` ran."""
    return type(dataset).prepare is not RecordDataset.prepare
