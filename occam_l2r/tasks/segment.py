"""Lightning wiring of the ``segment`` verb: a predict loop that fills a segmentation store.

- :class:`SegmentTask` is the LightningModule: it binds its segmenter to the DataModule's dataset,
  fixes the store folder, loads the segmenter's models in ``configure_model`` (so Lightning moves
  them to the device and applies the precision's autocast) and runs the segmenter in
  ``predict_step``.
- :class:`StoreWriterCallback` writes each batch as a part file of this process's run as soon as
  it is done (``StoreWriter(rank=trainer.global_rank)``); after the loop,
  :meth:`StoreWriterCallback.finish` merges the process's parts into its rank's shard (under the
  store lock, dropping images another run stored first) and, once every rank is done, returns the
  run's counts on rank 0 (the ``segment`` verb turns them into ``summary.json``). A SIGTERM
  stops the run after the batch being written: its rows are merged into the shard and
  Lightning's ``SIGTERMException`` ends the loop (a rerun computes only the rest).

The DataModule is :class:`occam_l2r.data.segment_datamodule.SegmentDataModule`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn

from occam_l2r.data.records import RecordDataset
from occam_l2r.gt_store import GT_SEGMENTER, dataset_source, fingerprints_of, retire_old_gt_store
from occam_l2r.segment.gt import segment_batch
from occam_l2r.segment.segmenters import Segmenter
from occam_l2r.store import StoreWriter, config_hash
from occam_l2r.store_identity import ImageSource
from occam_l2r.store_location import GT_STORE, resolve_store, stores_root

log = logging.getLogger(__name__)


def default_store(dataset: RecordDataset, segmenter: Segmenter, config_name: str | None) -> Path:
    """``<dataset root>/segmentations/<config name>`` (``<segmenter>-<config hash>`` without a
    config file): the store of that name (:func:`occam_l2r.store_location.resolve_store`); the
    ``gt`` source always goes to the ``gt`` store, where training configs with
    ``data.segmentation: gt`` read it. ``segmenter`` must be bound."""
    if segmenter.name == GT_SEGMENTER:
        return resolve_store(GT_STORE, dataset.root)
    name = config_name or f"{segmenter.name.replace('+', '_')}-{config_hash(segmenter.config())}"
    return stores_root(dataset.root) / name


class SegmentTask(L.LightningModule):
    """Runs a segmenter over the images of the DataModule that the store does not hold yet.

    Args:
        segmenter: ``DetectAndSegment``, ``AutomaticMasks`` or ``GroundTruth``
            (:mod:`occam_l2r.segment.segmenters`).
        store: the store, a name or a path (:func:`occam_l2r.store_location.resolve_store`);
            default ``<dataset root>/segmentations/<config file name>`` (``.../gt`` for the
            ``gt`` source).
    """

    def __init__(self, segmenter: Segmenter, store: str | None = None) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.store = store
        self.store_path: Path | None = None
        self.dataset_name = ""
        self.source: ImageSource | None = None
        self.models = nn.ModuleDict()

    def preflight(self) -> None:
        """Before a Trainer is built (the toolkit's LightningCLI classes call it, then the
        DataModule's): the segmenter's weights are there (one message naming the file if not)."""
        self.segmenter.check_weights()

    def bind(self, dataset: RecordDataset, config_name: str | None = None) -> Path:
        """Bind the segmenter to ``dataset`` and fix the store folder (``store``, else the default
        named after ``config_name``). Writes nothing (a ``gt`` store of an older format is moved
        aside, to be rebuilt); returns the folder."""
        self.segmenter.bind(dataset)
        self.dataset_name = dataset.name
        self.source = dataset_source(dataset)
        self.store_path = (
            resolve_store(self.store, dataset.root)
            if self.store
            else default_store(dataset, self.segmenter, config_name)
        )
        if self.segmenter.name == GT_SEGMENTER:
            retire_old_gt_store(self.store_path)
        return self.store_path

    def writer(self, rank: int, verify: bool = False) -> StoreWriter:
        """A writer of rank ``rank`` into the store; creates the manifest, or refuses a store
        written with another segmenter config (``ValueError``) or from other image files
        (:class:`~occam_l2r.store_identity.StoreIdentityError`); moves damaged data files aside
        (``verify``: reads them whole to find damage)."""
        if self.store_path is None:
            raise RuntimeError("SegmentTask.bind(dataset) must run before the store is opened")
        config = self.segmenter.config()
        return StoreWriter(
            self.store_path,
            self.segmenter.name,
            config,
            rank=rank,
            dataset=self.dataset_name,
            source=self.source,
            verify=verify,
        )

    def setup(self, stage: str) -> None:
        """Hand the DataModule the segmenter's CPU preprocessing and the image ids the store
        holds (runs on every rank, before the predict dataloader is built)."""
        data = self.trainer.datamodule
        if self.store_path is None:  # not bound by the segment verb: default folder name
            self.bind(data.dataset)
        stored = self.writer(self.trainer.global_rank).done_ids()
        data.use(self.segmenter.preprocessor(), stored)

    def configure_model(self) -> None:
        """Load the segmenter's models on this rank; Lightning then moves them to the device."""
        if len(self.models) == 0:  # Lightning may call it once per trainer call
            self.models.update(self.segmenter.load())

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> dict[str, Any]:
        """Segment a batch (:func:`occam_l2r.segment.gt.segment_batch`): the rows to store, the
        fingerprints of their files, the failures (``(image_id, error)``) and counts."""
        rows, failures = segment_batch(self.segmenter, batch)
        computed = sum("error" not in it for it in batch)
        return {
            "rows": rows,
            "fingerprints": fingerprints_of(batch),
            "failures": failures,
            "images": len(batch),
            "computed": computed,
        }


class StoreWriterCallback(BasePredictionWriter):
    """Writes every predict batch into this rank's part files; merges them at the end.

    The store folder, segmenter and dataset come from the :class:`SegmentTask`.
    """

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self.writer: StoreWriter | None = None
        self.computed = 0
        self.start = time.perf_counter()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.writer = None
        self.computed = 0
        self.start = time.perf_counter()

    def _writer(self, trainer: L.Trainer, task: SegmentTask) -> StoreWriter:
        if self.writer is None:
            self.writer = task.writer(trainer.global_rank)
        return self.writer

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        writer = self._writer(trainer, pl_module)  # type: ignore[arg-type]
        writer.write(prediction["rows"], prediction.get("fingerprints"))
        for image_id, error in prediction["failures"]:
            log.warning("could not segment %s: %s", image_id, error)
            writer.add_failure(image_id, error)
        self.computed += prediction["computed"]
        if trainer.received_sigterm:  # Lightning's handler noted it; the predict loop would not
            from lightning.pytorch.utilities.exceptions import SIGTERMException

            writer.close()  # this batch and the earlier ones merged into the shard
            raise SIGTERMException

    def finish(self, trainer: L.Trainer, task: SegmentTask) -> dict[str, Any] | None:
        """After ``trainer.predict``, on every rank: merge this rank's parts into its shard and
        wait for every rank. Returns, on rank 0, the counts of the whole run (``computed``,
        ``skipped``, ``duplicates``: rows dropped because another run had stored the image first,
        ``seconds``); ``None`` on the other ranks. Called by the ``segment`` verb
        after the predict loop, which Lightning skips, hooks included, on a rank with nothing to do.
        """
        writer = self._writer(trainer, task)
        writer.close()
        skipped = trainer.datamodule.skipped  # SegmentDataModule: images already stored
        strategy = trainer.strategy
        counts = torch.tensor(
            [self.computed, skipped, writer.duplicates],
            dtype=torch.long,
            device=strategy.root_device,
        )
        counts = strategy.reduce(counts, reduce_op="sum").cpu()
        strategy.barrier("segment_store_closed")
        if trainer.global_rank != 0:
            return None
        return {
            "computed": int(counts[0]),
            "skipped": int(counts[1]),
            "duplicates": int(counts[2]),
            "seconds": time.perf_counter() - self.start,
        }
