"""The ``gt`` store without Lightning: :func:`build_gt_store` runs the
:class:`~occam_l2r.segment.segmenters.GroundTruth` segmenter in a plain loop.

Training configs with ``data.segmentation: gt`` call it from ``ViewDataModule.prepare_data``; it
writes the same rows, manifest and config hash as
``python -m occam_l2r segment --config configs/segment/synthetic_gt.yaml`` (one shard, rank 0),
so either can start a store and the other complete it. Resumable: images already stored are
skipped; unreadable images or masks are listed in the store's failures.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.segment.segmenters import GroundTruth
from occam_l2r.store import Segmentation, StoreWriter

log = logging.getLogger(__name__)


def build_gt_store(
    dataset: RecordDataset,
    path: str | Path,
    records: Iterable[Record] | None = None,
    batch_size: int = 256,
) -> Path:
    """Write (or complete) the ``gt`` store of ``dataset`` at ``path``; resumable.

    Args:
        dataset: the dataset whose ground-truth masks are stored (already prepared).
        path: the store folder (``<dataset root>/segmentations/gt`` by convention).
        records: the records to store (default: every record of every split).
        batch_size: rows per part file.

    Returns:
        The store folder.
    """
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
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        items = [{"record": r, "image_id": r.image_id, "label": r.label} for r in batch]
        rows: list[Segmentation] = []
        for item, result in zip(items, segmenter.segment(items), strict=True):
            if isinstance(result, str):
                log.warning("gt segmenter: %s", result)
                writer.add_failure(item["image_id"], result)
            else:
                rows.append(result)
        writer.write(rows)
    writer.close()
    return Path(path)
