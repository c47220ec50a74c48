"""The ground truth OCCAM's diagnostics read: each image's object mask and box.

``bbox_iou`` (:mod:`occam_l2r.occam.scores`) needs a ground-truth box per image, and the IoU of
the chosen mask with the object (:func:`mask_iou`, computed by
:class:`~occam_l2r.occam.model.Occam`) tells whether a foreground score found it. Both come from the
dataset (a :class:`~occam_l2r.data.records.RecordDataset`, duck-typed here: this layer does not
import the data layer): its ``gt_boxes(record)`` when it has them (Stanford Dogs' VOC boxes),
else the tight box of its ground-truth masks (``gt_masks(record)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from occam_l2r.segmentation import mask_to_box


def ground_truth(
    dataset: Any, record: Any, size: tuple[int, int]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(box, object mask)`` of a record: the union of its ``gt_boxes`` (else the box of its
    masks) and the union of its ground-truth masks; ``None`` where the dataset has neither."""
    obj = None
    try:
        masks = [m for m in dataset.gt_masks(record) if m.shape == size and m.any()]
        obj = np.logical_or.reduce(masks) if masks else None
    except (OSError, ValueError):
        obj = None
    box = None
    gt_boxes = getattr(dataset, "gt_boxes", None)
    if callable(gt_boxes):
        try:
            boxes = np.asarray(gt_boxes(record), np.float32).reshape(-1, 4)
        except (OSError, ValueError):
            boxes = np.zeros((0, 4), np.float32)
        if len(boxes):
            box = np.array([*boxes[:, :2].min(0), *boxes[:, 2:].max(0)], np.float32)
    if box is None and obj is not None:
        box = mask_to_box(obj)
    return box, obj


def mask_iou(masks: Sequence[np.ndarray] | np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """IoU of each mask with ``target`` (NaN for every mask without a target).

    Args:
        masks: boolean ``(H, W)`` masks of one image (a list, or a ``(K, H, W)`` array).
        target: the image's boolean ``(H, W)`` object mask, or ``None``.

    Returns:
        ``(K,)`` float32 (0 where a mask and the target are both empty).
    """
    if target is None:
        return np.full(len(masks), np.nan, np.float32)
    if len(masks) == 0:
        return np.zeros(0, np.float32)
    m = np.asarray(masks, dtype=bool).reshape(len(masks), -1)
    t = np.asarray(target, dtype=bool).reshape(-1)
    inter = (m & t).sum(axis=1)
    union = m.sum(axis=1) + int(t.sum()) - inter
    iou = np.divide(inter, union, out=np.zeros(len(m), np.float64), where=union > 0)
    return iou.astype(np.float32)
