"""Lightning wiring of the ``segment`` verb: a predict loop that fills a segmentation store.

- :class:`ImageItems` reads images (and runs the segmenter's CPU preprocessing) in DataLoader
  workers; an unreadable image becomes an item carrying its error.
- :class:`SegmentTask` is the LightningModule: its ``predict_dataloader`` gives each rank the
  images of the run that are not in the store yet (rank ``r`` of ``n`` takes the records at
  positions ``r, r + n, ...`` of the dataset, so the split never depends on what another rank has
  already written); ``predict_step`` runs the segmenter on a batch.
- :class:`StoreWriterCallback` writes each batch as a part file as soon as it is done
  (``StoreWriter(rank=trainer.global_rank)``); after the loop, :meth:`StoreWriterCallback.finish`
  merges the rank's parts into its shard and, on rank 0 once all ranks are done, writes
  ``summary.json`` (see :func:`summarize`).
- :class:`ImagesPerSecondBar` adds images/s to Lightning's progress bar.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, TQDMProgressBar
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.data import DataLoader, Dataset

from occam_l2r.data.records import ImageReadError, Record, RecordDataset
from occam_l2r.segment.segmenters import Segmenter
from occam_l2r.store import Segmentation, SegmentationStore, StoreWriter

log = logging.getLogger(__name__)


class ImageItems(Dataset):
    """Records to segment, read and preprocessed in DataLoader workers."""

    def __init__(
        self,
        dataset: RecordDataset,
        records: Sequence[Record],
        preprocess: Callable[[np.ndarray], dict[str, torch.Tensor]],
    ) -> None:
        self.dataset = dataset
        self.records = list(records)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        item: dict[str, Any] = {"record": rec, "image_id": rec.image_id, "label": rec.label}
        try:
            image = self.dataset.read_image(rec)
        except (OSError, ImageReadError) as err:  # missing, corrupt or truncated file
            item["error"] = str(err)
            return item
        item.update(
            image=image, height=image.shape[0], width=image.shape[1], **self.preprocess(image)
        )
        return item


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


class SegmentTask(pl.LightningModule):
    """Runs a segmenter over the images of a dataset that a store does not hold yet.

    Args:
        segmenter: the segmenter, already bound to ``dataset``.
        dataset: the dataset whose records are segmented.
        records: the records of this run (all ranks), in a stable order.
        store: the store folder (to skip the images it holds).
        batch_size: images per predict step.
        num_workers: DataLoader workers per rank.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        dataset: RecordDataset,
        records: Sequence[Record],
        store: Path,
        batch_size: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.dataset = dataset
        self.records = list(records)
        self.store = Path(store)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.models = torch.nn.ModuleDict(segmenter.load())
        self.skipped = 0
        self.computed = 0

    def rank_records(self, rank: int, world_size: int) -> list[Record]:
        """This rank's share of the records not stored yet."""
        writer = StoreWriter(self.store, self.segmenter.name, self.segmenter.config(), rank=rank)
        stored = writer.done_ids()
        mine = self.records[rank::world_size]
        todo = [r for r in mine if r.image_id not in stored]
        self.skipped = len(mine) - len(todo)
        return todo

    def predict_dataloader(self) -> DataLoader:
        todo = self.rank_records(self.trainer.global_rank, self.trainer.world_size)
        log.info(
            "rank %d: %d images to segment, %d already in %s",
            self.trainer.global_rank,
            len(todo),
            self.skipped,
            self.store,
        )
        return DataLoader(
            ImageItems(self.dataset, todo, self.segmenter.preprocessor()),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_collate,
            persistent_workers=False,
        )

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        # Only tensors move; records (frozen dataclasses) and numpy images stay as they are.
        return [
            {k: move_data_to_device(v, device) if torch.is_tensor(v) else v for k, v in it.items()}
            for it in batch
        ]

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> dict[str, Any]:
        good = [it for it in batch if "error" not in it]
        failures = [(it["image_id"], it["error"]) for it in batch if "error" in it]
        rows: list[Segmentation] = []
        if good:
            for it, result in zip(good, self.segmenter.segment(good), strict=True):
                if isinstance(result, str):
                    failures.append((it["image_id"], result))
                else:
                    rows.append(result)
        self.computed += len(good)
        return {"rows": rows, "failures": failures, "images": len(batch)}


class StoreWriterCallback(BasePredictionWriter):
    """Writes every predict batch into this rank's part files; merges and summarises at the end.

    Args:
        store: the store folder.
        segmenter: the segmenter (name and config recorded in the store).
        dataset_name: the dataset recorded in the manifest.
        run_ids: image ids of the whole run (all ranks), for the summary.
    """

    def __init__(
        self, store: Path, segmenter: Segmenter, dataset_name: str, run_ids: Sequence[str]
    ) -> None:
        super().__init__(write_interval="batch")
        self.store = Path(store)
        self.segmenter = segmenter
        self.dataset_name = dataset_name
        self.run_ids = list(run_ids)
        self.writer: StoreWriter | None = None
        self.start = time.perf_counter()
        self.summary: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.writer = StoreWriter(
            self.store,
            self.segmenter.name,
            self.segmenter.config(),
            rank=trainer.global_rank,
            dataset=self.dataset_name,
        )
        self.start = time.perf_counter()

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        assert self.writer is not None
        self.writer.write(prediction["rows"])
        for image_id, error in prediction["failures"]:
            log.warning("could not segment %s: %s", image_id, error)
            self.writer.add_failure(image_id, error)

    def finish(self, trainer: pl.Trainer, task: SegmentTask) -> dict[str, Any] | None:
        """After ``trainer.predict``: merge this rank's parts into its shard, wait for every rank,
        and on rank 0 write ``summary.json``. Called by the ``segment`` verb after the predict
        loop (which Lightning skips, hooks included, on a rank with nothing to do)."""
        if self.writer is None:  # the loop never set up (no rank had data): still merge parts
            self.setup(trainer, task, "predict")
        assert self.writer is not None
        self.writer.close()
        strategy = trainer.strategy
        counts = torch.tensor(
            [task.computed, task.skipped], dtype=torch.long, device=strategy.root_device
        )
        counts = strategy.reduce(counts, reduce_op="sum").cpu()
        strategy.barrier("segment_store_closed")
        if trainer.global_rank != 0:
            return None
        seconds = time.perf_counter() - self.start
        self.summary = summarize(self.store, self.run_ids, int(counts[0]), int(counts[1]), seconds)
        tmp = self.store / ".summary.json.tmp"
        tmp.write_text(json.dumps(self.summary, indent=2))
        tmp.replace(self.store / "summary.json")
        return self.summary


class ImagesPerSecondBar(TQDMProgressBar):
    """Lightning's progress bar with images/s of this rank in the predict bar."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0
        self.t0 = 0.0

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_predict_epoch_start(trainer, pl_module)
        self.images, self.t0 = 0, time.perf_counter()

    def on_predict_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:  # type: ignore[no-untyped-def]
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self.images += len(batch)
        rate = self.images / max(time.perf_counter() - self.t0, 1e-9)
        if self.predict_progress_bar is not None:
            self.predict_progress_bar.set_postfix({"img/s": f"{rate:.1f}"}, refresh=False)


def summarize(
    store: Path, run_ids: Sequence[str], computed: int, skipped: int, seconds: float
) -> dict[str, Any]:
    """Summary of a run: images, detections-per-image histogram, empties (FULL fallbacks),
    failures, time. Counts cover the run's images in the whole store (all shards)."""
    reader = SegmentationStore(store)
    wanted = set(run_ids)
    hist: Counter[str] = Counter()
    table = reader.table
    ids = table.column("image_id").to_pylist()
    n_boxes = [len(s) for s in table.column("scores").to_pylist()]
    n_masks = [len(m) for m in table.column("masks").to_pylist()]
    stored = 0
    with_masks = 0
    for image_id, n, m in zip(ids, n_boxes, n_masks, strict=True):
        if image_id in wanted:
            stored += 1
            hist[str(n) if n < 10 else ">=10"] += 1
            with_masks += m > 0
    failed = sorted({f["image_id"] for f in reader.failures()} & (wanted - set(ids)))
    order = sorted(hist, key=lambda k: (len(k), k))
    return {
        "store": str(store),
        "segmenter": reader.segmenter,
        "config_hash": reader.config_hash,
        "images": len(wanted),
        "stored": stored,
        "computed": computed,
        "skipped": skipped,
        "detections_per_image": {k: hist[k] for k in order},
        "empty": hist.get("0", 0),
        "with_masks": with_masks,
        "failures": len(failed),
        "failed_ids": failed[:100],
        "missing": len(wanted) - stored - len(failed),
        "seconds": round(seconds, 3),
        "images_per_second": round(computed / seconds, 3) if seconds > 0 else 0.0,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable summary lines."""
    hist = ", ".join(f"{k}: {v}" for k, v in summary["detections_per_image"].items()) or "none"
    lines = [
        f"segmentation store {summary['store']} ({summary['segmenter']}, config {summary['config_hash']})",
        f"  images {summary['images']}: stored {summary['stored']}, computed now {summary['computed']}, "
        f"skipped (already stored) {summary['skipped']}, failed {summary['failures']}, missing {summary['missing']}",
        f"  detections per image: {hist}",
        f"  empty (views fall back to FULL): {summary['empty']}",
        f"  time {summary['seconds']:.1f} s, {summary['images_per_second']:.2f} images/s",
    ]
    if summary["failures"]:
        lines.append(
            f"  failed images (first {len(summary['failed_ids'])}): {summary['failed_ids']}"
        )
    return "\n".join(lines)
