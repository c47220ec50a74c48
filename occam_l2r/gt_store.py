"""The ground-truth (``gt``) segmentation store: its rows, its config, and its one builder.

A dataset's ground-truth instance masks become store rows here, and only here:

- :func:`gt_segmentation` turns one record's masks into a :class:`Segmentation` (one detection
  per non-empty mask, score 1.0, its tight box, the class name as label);
- :func:`gt_config` is the config hashed into the store's manifest;
- :func:`image_item` reads one image for a segmenter (fully decoded; an unreadable image becomes
  an item carrying its error), the code path of the ``segment`` verb too
  (:func:`occam_l2r.segment.gt.read_item` adds the segmenter's preprocessing to it);
- :func:`dataset_source` names the dataset's image files for the store's identity check
  (:class:`~occam_l2r.store_identity.ImageSource`); :func:`image_item` records each file's fingerprint;
- :func:`retire_old_gt_store` moves a ``gt`` store of an older format aside, so it is rebuilt;
- :func:`build_gt_store` writes (or completes) the store without Lightning. The DataModules
  (``data.segmentation: gt``, ``data.mask_sources: [gt]``) and ``discover`` call it; the
  ``segment`` verb's :class:`~occam_l2r.segment.segmenters.GroundTruth` segmenter writes the same
  rows and config hash through :func:`gt_segment`, so either can start a store and the other
  complete it.

Resumable: images already stored are skipped; a store of an older format is moved aside and
rebuilt, a damaged data file is moved aside and its images converted again, and a store made
from other image files is refused (:class:`~occam_l2r.store_identity.StoreIdentityError`). Images that
cannot be read or whose masks are unusable are listed in the store's failures, and an
unreadable image stops the build with a message naming the files and the fix. Where the store lives: :mod:`occam_l2r.store_location`.

Same layer as :mod:`occam_l2r.store` (the stored formats): it reads the dataset's records (the
layer below) with numpy and PIL; no torch, no Lightning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from occam_l2r.data.records import ImageReadError, Record, RecordDataset, size_mismatch
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import STORE_FORMAT_VERSION, StoreWriter, read_manifest
from occam_l2r.store_files import file_fingerprint
from occam_l2r.store_identity import ImageSource
from occam_l2r.store_location import GT_STORE, resolve_store

__all__ = [
    "GT_SEGMENTER",
    "build_gt_store",
    "dataset_source",
    "fingerprints_of",
    "gt_config",
    "gt_segment",
    "gt_segmentation",
    "image_item",
    "retire_old_gt_store",
    "unreadable_message",
]

log = logging.getLogger(__name__)

#: the segmenter name recorded in a ground-truth store's manifest and rows
GT_SEGMENTER = "gt"


def gt_config(dataset: RecordDataset) -> dict[str, Any]:
    """The config of a ground-truth store (hashed into its manifest)."""
    return {"segmenter": GT_SEGMENTER, "dataset": type(dataset).__name__}


def gt_segmentation(
    dataset: RecordDataset, record: Record, size: tuple[int, int] | None = None
) -> Segmentation:
    """The ground truth of one record; raises ``OSError``/``ValueError`` when unreadable.

    Each non-empty ground-truth instance mask becomes one detection with score 1.0, its tight
    box and the image's class name as label (``label_ids``: the class index); an image whose
    masks are all empty has no detection (its views fall back to FULL).

    Args:
        dataset: the record's dataset.
        record: the image's record.
        size: ``(height, width)`` of the decoded image (EXIF orientation applied, as the views
            see it); read from the file header if omitted.
    """
    masks = [m for m in dataset.gt_masks(record) if m.any()]
    if size is None:
        with Image.open(dataset.image_path(record)) as im:
            width, height = im.size
    else:
        height, width = size
    for m in masks:  # the size rule of a usable image (the DataModules and `check` apply it)
        if why := size_mismatch((height, width), m.shape[:2], "its ground-truth mask"):
            raise ValueError(f"{record.image_id}: {why}")
    known = 0 <= record.label < dataset.num_classes
    name = dataset.class_names[record.label] if known else ""
    return Segmentation.from_masks(
        record.image_id,
        masks,
        labels=[name] * len(masks),
        label_ids=[record.label] * len(masks),
        height=height,
        width=width,
        prompts=[],
    )


def gt_segment(dataset: RecordDataset, items: list[dict[str, Any]]) -> list[Segmentation | str]:
    """The ground truth of read items (:func:`image_item`): per item, in order, its
    segmentation or why it could not be made (an unreadable mask, a size mismatch)."""
    out: list[Segmentation | str] = []
    for it in items:
        try:
            size = (it["height"], it["width"]) if "height" in it else None
            out.append(gt_segmentation(dataset, it["record"], size))
        except (OSError, ValueError) as err:
            out.append(f"ground truth of {it['image_id']}: {err}")
    return out


def dataset_source(dataset: RecordDataset) -> ImageSource:
    """The image files of ``dataset`` (its root, and the file of each image id), against which a
    store is checked (:meth:`~occam_l2r.store.SegmentationStore.check_images`)."""
    records: dict[str, Record] = {}

    def file(image_id: str) -> Path | None:
        if not records:
            records.update((r.image_id, r) for r in dataset.all_records())
        record = records.get(image_id)
        return dataset.image_path(record) if record is not None else None

    return ImageSource(Path(dataset.root), file)


def image_item(dataset: RecordDataset, record: Record) -> dict[str, Any]:
    """One record read for a segmenter: ``record``, ``image_id``, ``label``, ``image`` (HWC
    uint8, fully decoded), ``height``, ``width`` and ``fingerprint`` (the file's size and hash,
    :func:`~occam_l2r.store_files.file_fingerprint`, stored with its row); or ``record``,
    ``image_id``, ``label`` and ``error`` when the image cannot be read (missing, empty, not an
    image, corrupt or truncated)."""
    item: dict[str, Any] = {"record": record, "image_id": record.image_id, "label": record.label}
    try:
        image = dataset.read_image(record)
        fingerprint = file_fingerprint(dataset.image_path(record))
    except (OSError, ImageReadError) as err:
        item["error"] = str(err)
        return item
    item.update(image=image, height=image.shape[0], width=image.shape[1], fingerprint=fingerprint)
    return item


def fingerprints_of(items: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, str]]:
    """Image id -> file fingerprint of the read items (for :meth:`StoreWriter.write`)."""
    return {it["image_id"]: it["fingerprint"] for it in items if "fingerprint" in it}


def retire_old_gt_store(path: Path) -> Path | None:
    """Move a ``gt`` store of an older format (no image fingerprints) aside to
    ``<folder>.format<N>`` (logged; never deleted), so that it is rebuilt; returns where it went,
    or ``None`` when there is nothing to move."""
    if not (path / "manifest.json").is_file():
        return None
    version = int(read_manifest(path).get("format_version", 0))
    if version >= STORE_FORMAT_VERSION:
        return None
    target = path.with_name(f"{path.name}.format{version}")
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.format{version}.{n}")
    try:
        os.replace(path, target)
    except FileNotFoundError:  # another process moved it first
        return None
    log.warning(
        "gt store %s has format %d (no image fingerprints): moved aside to %s (delete it when "
        "you like) and rebuilt", path, version, target,
    )  # fmt: skip
    return target


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
    path: str | Path | None = None,
    records: Iterable[Record] | None = None,
    batch_size: int = 128,
    on_unreadable: Literal["error", "skip"] = "error",
    workers: int | None = None,
) -> Path:
    """Write (or complete) the ``gt`` store of ``dataset``; resumable.

    Every image is fully decoded (:func:`image_item`, as in the ``segment`` verb), so a
    truncated file is found here rather than in the middle of training.

    Args:
        dataset: the dataset whose ground-truth masks are stored (already prepared).
        path: the store folder; default ``<dataset root>/segmentations/gt``
            (:func:`occam_l2r.store_location.resolve_store` of ``gt``).
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
    path = Path(path) if path is not None else resolve_store(GT_STORE, dataset.root)
    retire_old_gt_store(path)
    writer = StoreWriter(
        path, GT_SEGMENTER, gt_config(dataset), dataset=dataset.name, source=dataset_source(dataset)
    )
    done = writer.done_ids()
    todo = [
        r
        for r in (records if records is not None else dataset.all_records())
        if r.image_id not in done
    ]
    if todo:
        log.info("gt store %s: converting %d ground-truth masks", path, len(todo))
    unreadable: list[tuple[Record, str]] = []
    failed: list[tuple[str, str]] = []
    n_threads = workers or min(8, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                items = list(pool.map(lambda r: image_item(dataset, r), batch))
                unreadable += [(it["record"], it["error"]) for it in items if "error" in it]
                good = [it for it in items if "error" not in it]
                failures = [(it["image_id"], it["error"]) for it in items if "error" in it]
                rows: list[Segmentation] = []
                for it, result in zip(good, gt_segment(dataset, good), strict=True):
                    if isinstance(result, str):
                        failures.append((it["image_id"], result))
                    else:
                        rows.append(result)
                for image_id, error in failures:
                    writer.add_failure(image_id, error)
                failed += failures
                writer.write(rows, fingerprints_of(good))
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
