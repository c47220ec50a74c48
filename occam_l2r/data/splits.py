"""The records of every split a DataModule reads: train, val and the named test splits.

A dataset without a validation split (``val_split = None``: Spawrious, Stanford Dogs, Hard
ImageNet) gets a per-class stratified hold-out of its training records as val
(:func:`holdout_val`); an evaluation-only dataset (``train_split = None``) has empty train and
val splits. :func:`splits_without_gt_masks` says which splits lack ground-truth masks (for
``data.segmentation: gt``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from occam_l2r.data.records import NoGroundTruthError, Record, RecordDataset, gt_mask_problem

log = logging.getLogger(__name__)


def holdout_val(
    train: Sequence[Record], val_fraction: float, seed: int
) -> tuple[list[Record], list[Record]]:
    """Hold out ``round(val_fraction * n_k)`` records of every class k as val.

    Args:
        train: the training records.
        val_fraction: fraction of each class held out, in (0, 1).
        seed: seed of the draw (the same seed gives the same hold-out).

    Returns:
        The remaining train records (in order) and the held-out val records (in order).
    """
    rng = np.random.default_rng(seed)
    labels = np.array([r.label for r in train])
    val_idx: list[int] = []
    for k in np.unique(labels):
        idx = np.nonzero(labels == k)[0]
        n_val = int(round(len(idx) * val_fraction))
        val_idx.extend(rng.permutation(idx)[:n_val].tolist())
    held = set(val_idx)
    return [r for i, r in enumerate(train) if i not in held], [train[i] for i in sorted(held)]


def split_records(
    dataset: RecordDataset, test_splits: Sequence[str], val_fraction: float, seed: int
) -> dict[str, list[Record]]:
    """``{"train": ..., "val": ..., <test split>: ...}`` for ``dataset``.

    Args:
        dataset: the record dataset.
        test_splits: the names of the test splits to read.
        val_fraction: fraction of train held out as val when the dataset has no val split.
        seed: seed of that hold-out.
    """
    if dataset.train_split is None:
        train: list[Record] = []
        val: list[Record] = []
    elif dataset.val_split is not None:
        train = list(dataset.records(dataset.train_split))
        val = list(dataset.records(dataset.val_split))
    else:
        train, val = holdout_val(list(dataset.records(dataset.train_split)), val_fraction, seed)
    splits = {"train": train, "val": val}
    for name in test_splits:
        splits[name] = list(dataset.records(name))
    return splits


def splits_without_gt_masks(dataset: RecordDataset, splits: dict[str, list[Record]]) -> list[str]:
    """The splits whose images have no ground-truth masks (a warning names them).

    Args:
        dataset: the record dataset.
        splits: the records per split.

    Raises:
        NoGroundTruthError: no split in use has masks (before any store is built).
    """
    problems = {s: p for s, recs in splits.items() if (p := gt_mask_problem(dataset, recs))}
    used = [s for s, recs in splits.items() if recs]
    if not problems:
        return []
    first = next(iter(problems.values()))
    if len(problems) == len(used):
        raise NoGroundTruthError(
            f"data.segmentation: gt needs ground-truth masks, but {type(dataset).__name__} "
            f"at {dataset.root} has none for the images of {sorted(problems)} ({first}). "
            "Segment the dataset with a detector (python -m occam_l2r segment --config "
            "configs/segment/<detector>.yaml) and set data.segmentation to that store, or train "
            "view FULL with data.segmentation: null."
        )
    log.warning(
        "data.segmentation: gt: %s has no ground-truth masks for splits %s (%s); their images "
        "are not in the gt store (data.on_missing decides what happens to them).",
        type(dataset).__name__, sorted(problems), first,
    )  # fmt: skip
    return sorted(problems)
