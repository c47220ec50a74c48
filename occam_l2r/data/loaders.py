"""Loaders: evaluation/predict loaders that count every sample exactly once under DDP, and a
training loader whose augmentations follow ``seed_everything``.

Lightning gives val/test loaders a ``DistributedSampler`` that pads a split with repeated
samples so that every rank runs the same number of batches (uneven batch counts can hang the
collective calls of a DDP forward). Padding is kept — no hang — but marked: :class:`MarkedPaddingSampler`
hands out padded positions as ``len(dataset) + i``, and :class:`PaddingMarked` reads them as
sample ``i`` with ``padding = True``. The tasks drop such rows from metrics and predictions, so a
2-process test of a 9-image split counts 9 images, not 10.

Batches are pinned when the run trains on CUDA (:func:`pin_memory_for`); the images stay uint8
until the device (the tasks normalise there, in ``on_after_batch_transfer``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler


class PaddingMarked(Dataset):
    """A map-style dataset of dict samples; position ``len + i`` is sample ``i`` marked padding."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.dataset)
        item = dict(self.dataset[index % n])
        item["padding"] = torch.tensor(index >= n)
        return item


class MarkedPaddingSampler(DistributedSampler):
    """In-order ``DistributedSampler`` whose padding positions are ``len(dataset) + i``."""

    def __init__(self, dataset: PaddingMarked, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        indices = list(range(n)) + [n + i % max(n, 1) for i in range(self.total_size - n)]
        return iter(indices[self.rank : self.total_size : self.num_replicas])


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    world_size: int = 1,
    rank: int = 0,
    **kwargs: Any,
) -> DataLoader:
    """An in-order loader; over several processes each rank gets its slice, padding marked."""
    if world_size > 1:
        marked = PaddingMarked(dataset)
        sampler = MarkedPaddingSampler(marked, world_size, rank)
        return DataLoader(
            marked, batch_size=batch_size, sampler=sampler, num_workers=num_workers, **kwargs
        )
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, **kwargs
    )


def world_of(trainer: Any) -> tuple[int, int]:
    """``(world_size, global_rank)`` of the trainer a DataModule is attached to (1, 0 without)."""
    if trainer is None:
        return 1, 0
    return int(trainer.world_size), int(trainer.global_rank)


def pin_memory_for(trainer: Any) -> bool:
    """Whether loaders for ``trainer`` pin their batches (page-locked memory, so the copy to
    the GPU is asynchronous): when it trains on CUDA; without a trainer, when CUDA is there."""
    if trainer is None:
        return torch.cuda.is_available()
    try:
        return trainer.strategy.root_device.type == "cuda"
    except (AttributeError, RuntimeError):  # a trainer not set up yet
        return torch.cuda.is_available()


def _seed_transform(dataset: Any, seed: int) -> None:
    transform = getattr(dataset, "transform", None)
    if transform is not None and hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed % 2**32)


def _seed_worker(worker_id: int) -> None:
    """Each worker's augmentations follow its own torch seed (base seed + worker id)."""
    info = torch.utils.data.get_worker_info()
    if info is not None:
        _seed_transform(info.dataset, info.seed)


def train_loader(dataset: Dataset, batch_size: int, num_workers: int, **kwargs: Any) -> DataLoader:
    """A shuffled loader whose augmentations are reproducible under ``seed_everything``.

    Albumentations' ``Compose`` keeps its own random state, which the global seeds do not reach:
    it is seeded here from torch's global generator (so from ``seed_everything``) and, in each
    DataLoader worker, from the worker's torch seed, so that workers do not repeat each other.
    """
    _seed_transform(dataset, int(torch.randint(0, 2**31 - 1, ()).item()))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        **kwargs,
    )
