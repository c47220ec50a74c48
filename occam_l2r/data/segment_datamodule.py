"""The DataModule of the ``segment`` verb: which images a run segments, read in DataLoader workers.

:class:`SegmentDataModule` owns the record selection (``splits``, ``limit``) and the predict
dataloader. Rank ``r`` of ``n`` takes the records at positions ``r, r + n, ...`` of the run, minus
those already in the store, so the split never depends on what another rank has written and every
image is segmented by exactly one rank. What the store holds and how the segmenter preprocesses an
image come from the LightningModule (:class:`occam_l2r.tasks.segment.SegmentTask` calls
:meth:`SegmentDataModule.use` in its ``setup``, before the dataloader is built).

:class:`ImageItems` reads and fully decodes an image and runs the segmenter's CPU preprocessing
(:func:`occam_l2r.segment.gt.read_item`, the code path the ``gt`` store built by training runs
too); an unreadable image becomes an item carrying its error (listed in the store's failures, not
dropped).

``batch_size``, ``num_workers`` and ``limit`` are typed (``PositiveInt``, ``NonNegativeInt``): a
bad value is rejected when the config is parsed, before any run starts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.data import DataLoader, Dataset

from occam_l2r.data.base import BaseDataModule
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.errors import UserError, option_flag
from occam_l2r.segment.gt import Preprocess, read_item

__all__ = [
    "ImageItems",
    "Preprocess",
    "SegmentDataModule",
    "UnknownSplitError",
    "collate_items",
    "no_preprocessing",
    "select_records",
]

log = logging.getLogger(__name__)


def no_preprocessing(image: np.ndarray) -> dict[str, torch.Tensor]:
    """The preprocessing of a source without models: nothing beyond the image itself."""
    return {}


class ImageItems(Dataset):
    """Records to segment, read and preprocessed in DataLoader workers.

    An item is a dict with ``record``, ``image_id``, ``label``, ``image`` (HWC uint8), ``height``,
    ``width`` and the preprocessor's tensors; or ``record``, ``image_id``, ``label`` and ``error``
    when the image cannot be read.
    """

    def __init__(
        self, dataset: RecordDataset, records: Sequence[Record], preprocess: Preprocess
    ) -> None:
        self.dataset = dataset
        self.records = list(records)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return read_item(self.dataset, self.records[index], self.preprocess)


def collate_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batches stay lists of items (images differ in size; the segmenter batches its tensors)."""
    return items


class UnknownSplitError(UserError, ValueError):
    """A name in ``data.splits`` that is no split of the dataset."""


def select_records(
    dataset: RecordDataset, splits: list[str] | None, limit: int | None
) -> list[Record]:
    """The run's records in a stable order: ``splits`` (all when ``None``), first ``limit`` of each
    split (all splits: the first ``limit`` in total).

    Raises:
        UnknownSplitError: a name of ``splits`` is no split of ``dataset``; the message names it,
            the dataset's splits and the flag.
    """
    records = dataset.all_records()
    if splits is None:
        return records[:limit] if limit is not None else records
    known = sorted({r.split for r in records})
    unknown = [s for s in splits if s not in known]
    if unknown:
        flag = option_flag("data", "splits")
        raise UnknownSplitError(
            f"{flag} names {', '.join(map(repr, unknown))}, not a split of "
            f"{type(dataset).__name__} at {dataset.root}; its splits are {known}. Give some of "
            f"those ({flag} '[{known[0] if known else 'train'}]'), or leave {flag} out to segment "
            "every split"
        )
    out: list[Record] = []
    for split in splits:
        out.extend(dataset.records(split)[:limit])
    return out


class SegmentDataModule(BaseDataModule):
    """The images of a dataset to segment, one slice per rank.

    Args:
        dataset: the dataset (same section as ``data.init_args.dataset`` of training configs).
        splits: splits to segment (all splits when omitted).
        limit: segment at most this many images per split (all splits: in total).
        batch_size: images per forward pass on each device.
        num_workers: DataLoader workers per device (image reading and preprocessing).
    """

    def __init__(
        self,
        dataset: RecordDataset,
        splits: list[str] | None = None,
        limit: PositiveInt | None = None,
        batch_size: PositiveInt = 8,
        num_workers: NonNegativeInt = 2,
    ) -> None:
        super().__init__()
        if batch_size < 1 or num_workers < 0 or (limit is not None and limit < 1):
            raise ValueError(
                f"data.batch_size={batch_size} and data.limit={limit} must be positive, "
                f"data.num_workers={num_workers} not negative"
            )
        self.dataset = dataset
        self.splits = splits
        self.limit = None if limit is None else int(limit)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.preprocess: Preprocess = no_preprocessing
        self.stored: set[str] = set()
        #: images of this rank's share already in the store (set by :meth:`predict_dataloader`)
        self.skipped = 0

    @property
    def val_split_names(self) -> list[str]:
        return []

    @property
    def test_split_names(self) -> list[str]:
        return []

    @property
    def predict_split_names(self) -> list[str]:
        """Its one predict loader: ``run``, the images of this run that this rank segments."""
        return ["run"]

    def prepare_data(self) -> None:
        """Create the data when the dataset can, then check ``splits`` against it (a dataset that
        creates its data is checked here, before the verb writes anything)."""
        super().prepare_data()
        self.check_dataset()

    def check_dataset(self) -> None:
        """The dataset's records can be listed and every name of ``splits`` is one of its splits
        (:class:`UnknownSplitError`), before a Trainer is built."""
        super().check_dataset()
        if self.dataset is not None:
            self.run_records()

    def use(self, preprocess: Preprocess, stored: set[str]) -> None:
        """Set the segmenter's per-image preprocessing and the image ids the store already holds."""
        self.preprocess = preprocess
        self.stored = set(stored)

    def run_records(self) -> list[Record]:
        """The records of the whole run (every rank), in a stable order."""
        return select_records(self.dataset, self.splits, self.limit)

    def rank_records(self, rank: int, world_size: int) -> list[Record]:
        """This rank's share of the run, minus the images already stored."""
        mine = self.run_records()[rank::world_size]
        todo = [r for r in mine if r.image_id not in self.stored]
        self.skipped = len(mine) - len(todo)
        return todo

    def transfer_batch_to_device(
        self, batch: list[dict[str, Any]], device: torch.device, dataloader_idx: int
    ) -> list[dict[str, Any]]:
        # Only tensors move; records (frozen dataclasses) and numpy images stay as they are.
        return [
            {k: move_data_to_device(v, device) if torch.is_tensor(v) else v for k, v in it.items()}
            for it in batch
        ]

    def predict_dataloader(self) -> DataLoader:
        rank, world_size = self.trainer.global_rank, self.trainer.world_size
        todo = self.rank_records(rank, world_size)
        log.info("rank %d: %d images to segment, %d already stored", rank, len(todo), self.skipped)
        return DataLoader(
            ImageItems(self.dataset, todo, self.preprocess),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_items,
            persistent_workers=False,
        )
