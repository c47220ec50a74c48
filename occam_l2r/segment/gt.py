"""One code path from records to store rows: what the ``segment`` verb runs on every batch.

:func:`read_item` (read and fully decode one image with
:func:`occam_l2r.gt_store.image_item`, then run the segmenter's CPU preprocessing) and
:func:`segment_batch` (segment the readable items, collect every failure) are what the
``segment`` verb runs (:class:`occam_l2r.data.segment_datamodule.ImageItems` in its DataLoader
workers, :class:`occam_l2r.tasks.segment.SegmentTask` in ``predict_step``). The ground-truth
store built without Lightning (:func:`occam_l2r.gt_store.build_gt_store`) reads its images with
the same :func:`~occam_l2r.gt_store.image_item`, so a truncated or corrupt image is caught the
same way by both.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.gt_store import image_item
from occam_l2r.segment.segmenters import Item, Segmenter
from occam_l2r.store import Segmentation

#: per-image CPU preprocessing: HWC uint8 image -> named tensors (picklable, holds no model)
Preprocess = Callable[[np.ndarray], dict[str, torch.Tensor]]


def read_item(dataset: RecordDataset, record: Record, preprocess: Preprocess) -> Item:
    """One record as a segmenter item: ``record``, ``image_id``, ``label``, ``image`` (HWC
    uint8, fully decoded), ``height``, ``width`` and the preprocessor's tensors; or ``record``,
    ``image_id``, ``label`` and ``error`` when the image cannot be read (missing, empty, not an
    image, corrupt or truncated)."""
    item = image_item(dataset, record)
    if "error" not in item:
        item.update(**preprocess(item["image"]))
    return item


def segment_batch(
    segmenter: Segmenter, items: list[Item]
) -> tuple[list[Segmentation], list[tuple[str, str]]]:
    """Segment the readable items of a batch.

    Returns:
        The segmentations to store, and ``(image_id, error)`` of every item that could not be
        read or segmented.
    """
    good = [it for it in items if "error" not in it]
    failures = [(it["image_id"], it["error"]) for it in items if "error" in it]
    rows: list[Segmentation] = []
    if good:
        for it, result in zip(good, segmenter.segment(good), strict=True):
            if isinstance(result, str):
                failures.append((it["image_id"], result))
            else:
                rows.append(result)
    return rows, failures
