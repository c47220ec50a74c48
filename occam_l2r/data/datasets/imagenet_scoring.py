"""Scoring 1000-way ImageNet predictions on datasets with their own label space.

- :func:`map_imagenet_predictions` / :func:`imagenet_mapped_accuracy`: a 1000-way prediction is
  mapped through a dataset's ``imagenet_to_class`` (ImageNet-9's ``in_to_in9.json``, ImageNet-D's
  folders, the ImageNet subsets CounterAnimal and Hard ImageNet); unmapped indices are wrong.
- :func:`accepted_label_accuracy`: the clean-label rule of the relabelling works (any accepted
  label counts), for :class:`~occam_l2r.data.datasets.imagenet.ImageNet`'s ``test_clean``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def map_imagenet_predictions(
    predictions: Sequence[int] | np.ndarray, imagenet_to_class: Mapping[int, int]
) -> np.ndarray:
    """ImageNet-1k class indices (e.g. the argmax of 1000-way logits) -> a dataset's classes.

    Args:
        predictions: ImageNet-1k indices.
        imagenet_to_class: ImageNet-1k index -> class index (a dataset's ``imagenet_to_class``).

    Returns:
        The class of each prediction, ``-1`` where the mapping has none (always wrong).
    """
    preds = np.asarray(predictions, dtype=np.int64)
    size = max([1000, *(int(i) + 1 for i in imagenet_to_class)])
    table = np.full(size, -1, dtype=np.int64)
    for index, cls in imagenet_to_class.items():
        table[int(index)] = int(cls)
    out = np.full(preds.shape, -1, dtype=np.int64)
    inside = (preds >= 0) & (preds < size)
    out[inside] = table[preds[inside]]
    return out


def imagenet_mapped_accuracy(
    logits: np.ndarray, labels: Sequence[int] | np.ndarray, imagenet_to_class: Mapping[int, int]
) -> float:
    """Accuracy of 1000-way ``logits`` on a dataset: the argmax mapped through
    ``imagenet_to_class`` must equal the label (unmapped = wrong), as in9_eval.py scores IN-9."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] < 1000:
        raise ValueError(f"expected (N, 1000) ImageNet-1k logits, got shape {logits.shape}")
    preds = map_imagenet_predictions(logits.argmax(1), imagenet_to_class)
    return float((preds == np.asarray(labels)).mean()) if len(preds) else float("nan")


def accepted_label_accuracy(
    predictions: Sequence[int] | np.ndarray, accepted: Sequence[Sequence[int]]
) -> float:
    """Fraction of predictions that are one of their image's accepted labels (ReaL's rule).

    Args:
        predictions: predicted class per image.
        accepted: the accepted classes of each image (``ImageNet.accepted_labels``), same order.
    """
    if len(predictions) != len(accepted):
        raise ValueError(f"{len(predictions)} predictions for {len(accepted)} label sets")
    hits = [int(p) in set(map(int, a)) for p, a in zip(predictions, accepted, strict=True)]
    return float(np.mean(hits)) if hits else float("nan")
