"""One code path from records to store rows, and the ``gt`` store without Lightning.

:func:`read_item` (read and fully decode one image, run the segmenter's CPU preprocessing) and
:func:`segment_batch` (segment the readable items, collect every failure) are what the
``segment`` verb runs (:class:`occam_l2r.data.segment_datamodule.ImageItems` in its DataLoader
workers, :class:`occam_l2r.tasks.segment.SegmentTask` in ``predict_step``) and what
:func:`build_gt_store` runs in a plain loop with the
:class:`~occam_l2r.segment.segmenters.GroundTruth` segmenter. So a truncated or corrupt image is
caught the same way by both.

Training configs with ``data.segmentation: gt`` call :func:`build_gt_store` from
``ViewDataModule.prepare_data``; it writes the same rows, manifest and config hash as
``python -m occam_l2r segment --config configs/segment/synthetic_gt.yaml``, so either can start a
store and the other complete it. Resumable: images already stored are skipped; images that
cannot be read or whose masks are unusable are listed in the store's failures, and an
unreadable image stops the build with a message naming the files and the fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from occam_l2r.data.records import ImageReadError, Record, RecordDataset
from occam_l2r.segment.segmenters import GroundTruth, Item, Segmenter
from occam_l2r.store import Segmentation, StoreWriter

log = logging.getLogger(__name__)

#: per-image CPU preprocessing: HWC uint8 image -> named tensors (picklable, holds no model)
Preprocess = Callable[[np.ndarray], dict[str, torch.Tensor]]


def read_item(dataset: RecordDataset, record: Record, preprocess: Preprocess) -> Item:
    """One record as a segmenter item: ``record``, ``image_id``, ``label``, ``image`` (HWC
    uint8, fully decoded), ``height``, ``width`` and the preprocessor's tensors; or ``record``,
    ``image_id``, ``label`` and ``error`` when the image cannot be read (missing, empty, not an
    image, corrupt or truncated)."""
    item: Item = {"record": record, "image_id": record.image_id, "label": record.label}
    try:
        image = dataset.read_image(record)
    except (OSError, ImageReadError) as err:
        item["error"] = str(err)
        return item
    item.update(image=image, height=image.shape[0], width=image.shape[1], **preprocess(image))
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


def unreadable_message(
    dataset: RecordDataset, store: Path, unreadable: list[tuple[Record, str]]
) -> str:
    """The error of :func:`build_gt_store` for images it could not read: the files and the fix."""
    named = ", ".join(str(dataset.image_path(r)) for r, _ in unreadable[:5])
    more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
    return (
        f"{len(unreadable)} image(s) of {type(dataset).__name__} cannot be read, so the gt "
        f"segmentation store {store} lacks them: {named}{more} (first error: {unreadable[0][1]}). "
        "Re-extract or remove the files and rerun (the store resumes), or set "
        "data.on_unreadable: skip to leave unreadable images out of training "
        "(`python -m occam_l2r check --config <your config>` lists them all). They are listed "
        f"in {store / 'failures.jsonl'}."
    )


def build_gt_store(
    dataset: RecordDataset,
    path: str | Path,
    records: Iterable[Record] | None = None,
    batch_size: int = 128,
    on_unreadable: Literal["error", "skip"] = "error",
    workers: int | None = None,
) -> Path:
    """Write (or complete) the ``gt`` store of ``dataset`` at ``path``; resumable.

    Every image is fully decoded (:func:`read_item`, as in the ``segment`` verb), so a truncated
    file is found here rather than in the middle of training.

    Args:
        dataset: the dataset whose ground-truth masks are stored (already prepared).
        path: the store folder (``<dataset root>/segmentations/gt`` by convention).
        records: the records to store (default: every record of every split).
        batch_size: rows per part file.
        on_unreadable: an image that cannot be read raises :class:`ImageReadError` after the
            readable ones are stored (``error``), or is only listed in the store's failures
            (``skip``).
        workers: threads decoding images (default: the CPU count, at most 8).

    Returns:
        The store folder.

    Raises:
        ImageReadError: ``on_unreadable="error"`` and some images cannot be read; the message
            names them and what to do.
    """
    path = Path(path)
    segmenter = GroundTruth()
    segmenter.bind(dataset)
    writer = StoreWriter(path, segmenter.name, segmenter.config(), dataset=dataset.name)
    done = writer.done_ids()
    todo = [
        r
        for r in (records if records is not None else dataset.all_records())
        if r.image_id not in done
    ]
    if todo:
        log.info("gt store %s: converting %d ground-truth masks", path, len(todo))
    preprocess = segmenter.preprocessor()
    unreadable: list[tuple[Record, str]] = []
    failed: list[tuple[str, str]] = []
    n_threads = workers or min(8, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                items = list(pool.map(lambda r: read_item(dataset, r, preprocess), batch))
                unreadable += [(it["record"], it["error"]) for it in items if "error" in it]
                rows, failures = segment_batch(segmenter, items)
                for image_id, error in failures:
                    writer.add_failure(image_id, error)
                failed += failures
                writer.write(rows)
    finally:
        writer.close()
    if unreadable and on_unreadable == "error":
        raise ImageReadError(unreadable_message(dataset, path, unreadable))
    if failed:
        first = "; ".join(error for _, error in failed[:3])
        where = path / "failures.jsonl"
        log.warning(
            "gt store %s: %d image(s) not stored (%s); see %s", path, len(failed), first, where
        )
    return path
