"""The ``gt`` segmenter: ground-truth masks of a dataset converted into a segmentation store.

Each non-empty ground-truth instance mask becomes one detection with score 1.0, its tight box
and the image's class name as label. An image whose masks are all empty is stored with no
detection (the views then fall back to FULL and count it); an image or mask that cannot be read
is listed in the store's failures, not silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.store import Segmentation, StoreWriter

log = logging.getLogger(__name__)


class GroundTruthSegmenter:
    """Turns a dataset's ground-truth masks into :class:`Segmentation` rows."""

    name = "gt"

    def config(self, dataset: RecordDataset) -> dict:
        return {"segmenter": self.name, "dataset": type(dataset).__name__}

    def __call__(self, dataset: RecordDataset, record: Record) -> Segmentation:
        masks = [m for m in dataset.gt_masks(record) if m.any()]
        with Image.open(dataset.image_path(record)) as im:
            width, height = im.size
        for m in masks:
            if m.shape != (height, width):
                raise ValueError(
                    f"ground-truth mask of {record.image_id} is {m.shape[1]}x{m.shape[0]}, the image is "
                    f"{width}x{height}"
                )
        name = dataset.class_names[record.label] if 0 <= record.label < dataset.num_classes else ""
        return Segmentation.from_masks(
            record.image_id,
            masks,
            labels=[name] * len(masks),
            label_ids=[record.label] * len(masks),
            height=height,
            width=width,
            prompts=[],
        )


def build_gt_store(
    dataset: RecordDataset,
    path: str | Path,
    records: Iterable[Record] | None = None,
    batch_size: int = 256,
) -> Path:
    """Write (or complete) the ``gt`` store of ``dataset`` at ``path``; resumable."""
    segmenter = GroundTruthSegmenter()
    writer = StoreWriter(path, segmenter.name, segmenter.config(dataset), dataset=dataset.name)
    done = writer.done_ids()
    todo = [
        r
        for r in (records if records is not None else dataset.all_records())
        if r.image_id not in done
    ]
    if todo:
        log.info("gt store %s: converting %d ground-truth masks", path, len(todo))
    batch: list[Segmentation] = []
    for rec in todo:
        try:
            batch.append(segmenter(dataset, rec))
        except (OSError, ValueError) as err:
            writer.add_failure(rec.image_id, str(err))
            log.warning("gt segmenter: %s", err)
        if len(batch) >= batch_size:
            writer.write(batch)
            batch = []
    writer.write(batch)
    writer.close()
    return Path(path)
