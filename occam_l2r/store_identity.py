"""A segmentation store's identity (store format 2): do its rows describe these image files?

Every row of a store records its image file's size and blake2b-128 digest when it was written
(:func:`occam_l2r.store_files.file_fingerprint`). :func:`check_images` compares a few rows of
every data file (:data:`SAMPLES_PER_FILE`, spread over the file, :func:`sample_rows`) with the
files an :class:`ImageSource` names: a stat and one read each, O(data files), never O(images)
and no decoding. A store of another dataset, or of the same one generated again (same ids and
sizes, other pixels), is one :class:`StoreIdentityError`; a copy of the same files (``cp -r``,
``rsync``) passes. Rows without a fingerprint (format 1) are reported by one warning.
:class:`occam_l2r.store.SegmentationStore` and :class:`occam_l2r.store.StoreWriter` call it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from occam_l2r.errors import UserError
from occam_l2r.store_files import file_fingerprint

log = logging.getLogger(__name__)

#: rows of every data file whose image is compared with the dataset's file on open
SAMPLES_PER_FILE = 4
#: the command that repairs or completes a store (named in messages)
SEGMENT_COMMAND = "python -m occam_l2r segment --config <the store's segment config>"


class StoreIdentityError(UserError, ValueError):
    """A store computed on other image files than the dataset's (another dataset, or the same
    ids generated again with other content)."""


#: one sampled row: image id, recorded file size, recorded file hash
Sample = tuple[str, int, str]


def sample_rows(table: pa.Table) -> tuple[list[Sample], int]:
    """Up to :data:`SAMPLES_PER_FILE` fingerprinted rows of one data file, spread over it, and
    the number of its rows without a fingerprint."""
    if "file_hash" not in table.column_names:
        return [], table.num_rows
    hashes = table.column("file_hash")
    rows = [i for i, ok in enumerate(hashes.is_valid().to_pylist()) if ok]
    if not rows:
        return [], table.num_rows
    k = min(SAMPLES_PER_FILE, len(rows))
    picks = sorted({rows[round(j * (len(rows) - 1) / max(k - 1, 1))] for j in range(k)})
    ids, sizes = table.column("image_id"), table.column("file_size")
    out = [(ids[i].as_py(), sizes[i].as_py(), hashes[i].as_py()) for i in picks]
    return out, table.num_rows - len(rows)


@dataclass(frozen=True)
class ImageSource:
    """The image files a store is meant to describe: the dataset root (named in messages) and
    the file of an image id (``None``: not a file of this dataset).

    Args:
        root: the dataset root.
        file: image id -> its file; default ``root / image_id``.
    """

    root: Path
    file: Callable[[str], Path | None] | None = None

    def path(self, image_id: str) -> Path | None:
        return self.file(image_id) if self.file is not None else Path(self.root) / image_id


def check_images(
    store: Path, samples: Sequence[Sample], unmarked: int, rows: int, source: ImageSource
) -> None:
    """Compare sampled rows of ``store`` with the files of ``source`` (a stat, and a read when
    the size matches); raise :class:`StoreIdentityError` when any differs. A sampled file that
    does not exist is not compared (the unreadable-image checks report it). Logs one warning
    when rows carry no fingerprint (format 1) or nothing could be compared."""
    checked, differ = 0, []
    for image_id, size, digest in samples:
        path = source.path(image_id)
        try:
            if path is None or not path.is_file():
                continue
            if path.stat().st_size == size and file_fingerprint(path) == (size, digest):
                checked += 1
                continue
        except OSError:
            continue
        checked += 1
        differ.append(image_id)
    if differ:
        gt = store.name == "gt"
        fix = (
            f"Move {store} aside (the gt store is rebuilt on first use)"
            if gt
            else "Point the config at the store made for this dataset, or compute one into a "
            f"new folder: `{SEGMENT_COMMAND} --model.store <new folder>`"
        )
        raise StoreIdentityError(
            f"segmentation store {store} was not computed on the images under {source.root}: "
            f"{len(differ)} of {checked} images checked differ from the files it was made from "
            f"(first: {differ[0]}). It belongs to another dataset, or to another generation of "
            f"this one (e.g. another seed). {fix}."
        )
    if unmarked:
        log.warning(
            "segmentation store %s: %d of %d rows carry no image fingerprint (written before "
            "store format 2), so that they describe the images under %s cannot be checked; "
            "recompute the store into a new folder to get the check",
            store, unmarked, rows, source.root,
        )  # fmt: skip
    elif samples and not checked:
        log.warning(
            "segmentation store %s: none of the images it samples exists under %s, so its "
            "identity was not checked", store, source.root,
        )  # fmt: skip
