"""The segmentation store: one folder per (dataset, segmenter config), parquet shards, COCO RLE.

Layout of a store folder::

    manifest.json                            format version, segmenter, its config and hash
    shard-rank000.parquet                    one shard per rank: the merged rows of finished runs
    part-rank000-<run>-000012.parquet        batches of a run in progress (merged on close)
    failures.jsonl                           images that could not be segmented, one line per id
    failures-rank000-<run>.jsonl             failures of a run in progress (merged on close)
    store.lock, run-<run>.lock               lock files (``fcntl.flock``)
    summary.json                             what the store holds (the ``segment`` verb)

Every parquet row is one image: ``image_id`` (path relative to the dataset root), ``width``,
``height``, ``segmenter``, ``config_hash``, ``prompts``, ``boxes`` (xyxy pixels, x1/y1 exclusive),
``scores``, ``labels`` (prompt text per detection), ``label_ids`` (class index or -1) and
``masks`` (COCO RLE ``counts`` bytes, one per detection, size = (height, width); empty when the
source gives boxes only), ``prompt_ids`` (class index of each prompt, -1 for a meta-prompt;
null in rows written before it), and ``file_size`` / ``file_hash`` (the image file's size and
blake2b-128 digest when the row was written, :func:`~occam_l2r.store_files.file_fingerprint`;
null in rows of format 1 and rows written without a file); a row reads back as a
:class:`~occam_l2r.segmentation.Segmentation`.

**Identity (format 2).** A store knows the exact files it was computed on: opened for a dataset
(:meth:`SegmentationStore.check_images`, which :func:`occam_l2r.store_location.open_store` and
every writer given an :class:`~occam_l2r.store_identity.ImageSource` call), a few rows of every
data file are compared with the dataset's files (:mod:`occam_l2r.store_identity`).

**Damage.** A data file that cannot be read (truncated, not parquet) is one
:class:`StoreDamagedError` naming it for a reader; a writer (``segment``, the ``gt`` build)
moves it aside to ``<file>.damaged`` and so recomputes exactly the images it held.

**Safety.** Every file is written to a temporary name and renamed, so a killed run loses at most
the batch in flight, and a rerun skips the images already stored. Several writers may share a
store (the ranks of a DDP run, or separate jobs on the same or other splits): each process names
its parts and failures after its own run id (``<pid>_<random token>``) and holds
``run-<run>.lock`` while it runs; merges, reads and summaries hold ``store.lock`` (exclusive for
writers, shared for readers). A merge drops rows of images another run stored first (every image
once) and adopts the files of dead runs (a free run lock); see :mod:`occam_l2r.store_files`.
Stores of the first layout (``part-rank000-000012.parquet``, ``failures-rank000.jsonl``) read and
resume as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from occam_l2r.errors import UserError
from occam_l2r.segmentation import Segmentation, decode_mask, encode_mask, mask_to_box
from occam_l2r.store_files import (
    FAILURES_NAME,
    PART,
    RUN_FAILURES,
    RunLock,
    atomic_write_table,
    atomic_write_text,
    data_files,
    failure_files,
    ids_of,
    move_aside,
    new_run_id,
    read_failures,
    run_is_alive,
    run_of,
    store_lock,
    stored_ids,
)
from occam_l2r.store_identity import (
    SEGMENT_COMMAND,
    ImageSource,
    Sample,
    check_images,
    sample_rows,
)

__all__ = [
    "READABLE_FORMATS",
    "SCHEMA",
    "STORE_FORMAT_VERSION",
    "Segmentation",
    "SegmentationStore",
    "StoreDamagedError",
    "StoreFormatError",
    "StoreNotFoundError",
    "StoreWriter",
    "atomic_write_text",
    "config_hash",
    "decode_mask",
    "encode_mask",
    "mask_to_box",
    "read_manifest",
    "store_lock",
]


class StoreNotFoundError(UserError, FileNotFoundError):
    """No segmentation store at the given folder (the message says how to create one)."""


class StoreFormatError(UserError, ValueError):
    """A store written by an incompatible version of the toolkit (or an unreadable manifest)."""


class StoreDamagedError(UserError, ValueError):
    """A data file of a store cannot be read (truncated, not parquet)."""


log = logging.getLogger(__name__)

#: 2: rows carry ``file_size`` and ``file_hash`` (the store's identity)
STORE_FORMAT_VERSION = 2
#: the formats this version reads (1: no fingerprints, read with a warning)
READABLE_FORMATS = (1, 2)

SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("segmenter", pa.string()),
        ("config_hash", pa.string()),
        ("prompts", pa.list_(pa.string())),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("scores", pa.list_(pa.float32())),
        ("labels", pa.list_(pa.string())),
        ("label_ids", pa.list_(pa.int32())),
        ("masks", pa.list_(pa.binary())),
        ("prompt_ids", pa.list_(pa.int32())),
        ("file_size", pa.int64()),
        ("file_hash", pa.string()),
    ],
    metadata={"occam_l2r_store_format": str(STORE_FORMAT_VERSION)},
)


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a segmenter config (JSON with sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def _conform(table: pa.Table) -> pa.Table:
    """A stored table in :data:`SCHEMA`; ``prompt_ids`` (added within format 1) and the
    fingerprint (format 2) are null in tables written before them."""
    for f in SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table.select(SCHEMA.names).cast(SCHEMA)


def _rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


def read_manifest(path: Path) -> dict[str, Any]:
    """A store's manifest; a torn or foreign one is a :class:`StoreFormatError`."""
    manifest = path / "manifest.json"
    try:
        body = json.loads(manifest.read_text())
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        int(body.get("format_version", 0))
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise StoreFormatError(
            f"the manifest {manifest} of segmentation store {path} cannot be read ({err}). "
            "Move the store aside and recompute it with "
            f"`{SEGMENT_COMMAND}` (the gt store is rebuilt on first use)."
        ) from err
    return body


def _check_format(path: Path, version: int) -> None:
    if version not in READABLE_FORMATS:
        raise StoreFormatError(
            f"store {path} has format version {version}; this occam_l2r reads versions "
            f"{', '.join(map(str, READABLE_FORMATS))}. Recompute the segmentations into a new "
            f"folder with `{SEGMENT_COMMAND} --model.store <new folder>`, or use the occam_l2r "
            "that wrote it."
        )


def damaged_message(store: Path, file: Path, err: BaseException) -> str:
    """The error for a data file of ``store`` that cannot be read, and how to repair it."""
    return (
        f"segmentation store {store} is damaged: {file} cannot be read ({err}). "
        f"`{SEGMENT_COMMAND}` repairs it: it moves the file aside to {file.name}.damaged and "
        "recomputes only the images it held (for the gt store, rerunning the command that "
        "failed does the same)."
    )


def _read_data_file(store: Path, file: Path, columns: list[str] | None = None) -> pa.Table:
    """One data file (``columns`` of it that exist, else all, in :data:`SCHEMA`); an unreadable
    file is a :class:`StoreDamagedError`."""
    try:
        if columns is None:
            return _conform(pq.read_table(file))
        present = set(pq.read_schema(file).names)
        return pq.read_table(file, columns=[c for c in columns if c in present])
    except (pa.ArrowException, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise StoreDamagedError(damaged_message(store, file, err)) from err


class StoreWriter:
    """Writes one process's rows into a store folder; resumable, crash-safe, concurrency-safe.

    Args:
        path: the store folder (created if absent).
        segmenter: segmenter name recorded in the manifest and every row.
        config: the segmenter's full config; its hash guards against mixing two configs.
        rank: the process rank; :meth:`close` merges into ``shard-rank<rank>.parquet``.
        dataset: optional dataset description stored in the manifest.
        source: the dataset's image files: an existing store is checked against them
            (:func:`check_images`) before anything is written to it.
        verify: read every data file whole (not only its footer and ids) to find damage.

    Opening a store repairs it: a data file that cannot be read is moved aside
    (``<file>.damaged``, logged, listed in :attr:`moved_aside`), so its images count as not
    stored and are computed again. A store of format 1 is upgraded to format 2 (its old rows
    keep no fingerprint).
    """

    def __init__(
        self,
        path: str | Path,
        segmenter: str,
        config: dict[str, Any],
        rank: int = 0,
        dataset: str = "",
        source: ImageSource | None = None,
        verify: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.segmenter = segmenter
        self.config = config
        self.hash = config_hash(config)
        self.rank = rank
        #: this process's run id: names its parts, failures and run lock
        self.run = new_run_id()
        #: rows dropped by :meth:`close` because another run had stored the image first
        self.duplicates = 0
        #: damaged data files this writer moved aside (their new names)
        self.moved_aside: list[Path] = []
        self._seq = 0
        self._run_lock = RunLock(self.path, self.run)  # taken before the run's first file
        manifest = self.path / "manifest.json"
        with store_lock(self.path):
            if manifest.exists():
                old = read_manifest(self.path)
                version = int(old.get("format_version", 0))
                _check_format(self.path, version)
                if old.get("config_hash") != self.hash:
                    raise ValueError(
                        f"segmentation store {self.path} was written by {old.get('segmenter')} "
                        f"with config hash {old.get('config_hash')}, not {segmenter} {self.hash}. "
                        "Use another folder for another segmenter config, or delete the old store."
                    )
                self._repair(source, verify)
                if version != STORE_FORMAT_VERSION:
                    old["format_version"] = STORE_FORMAT_VERSION
                    atomic_write_text(json.dumps(old, indent=2, default=str), manifest)
            else:
                body = {
                    "format_version": STORE_FORMAT_VERSION,
                    "segmenter": segmenter,
                    "config_hash": self.hash,
                    "config": config,
                    "dataset": dataset,
                }
                atomic_write_text(json.dumps(body, indent=2, default=str), manifest)

    def _repair(self, source: ImageSource | None, verify: bool) -> None:
        """Move unreadable data files aside, then check the rest against ``source`` (under the
        store lock)."""
        samples: list[Sample] = []
        unmarked = rows = 0
        for f in data_files(self.path):
            try:
                cols = None if verify else ["image_id", "file_size", "file_hash"]
                table = _read_data_file(self.path, f, cols)
            except StoreDamagedError as err:
                self.moved_aside.append(move_aside(f))
                log.warning(
                    "segmentation store %s: moved the damaged file %s aside to %s (%s); its "
                    "images are computed again", self.path, f.name, self.moved_aside[-1].name,
                    err.__cause__,
                )  # fmt: skip
                continue
            except FileNotFoundError:
                continue
            got, n = sample_rows(table)
            samples += got
            unmarked += n
            rows += table.num_rows
        if source is not None:
            check_images(self.path, samples, unmarked, rows, source)

    def done_ids(self) -> set[str]:
        """Image ids already stored by any run or rank (shards and parts)."""
        with store_lock(self.path, exclusive=False):
            return stored_ids(self.path)

    def write(
        self,
        segmentations: Sequence[Segmentation],
        fingerprints: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        """Persist one batch as a new part file of this run (atomic).

        Args:
            segmentations: the rows.
            fingerprints: image id -> ``(size, hash)`` of its file
                (:func:`~occam_l2r.store_files.file_fingerprint`); a row without one is stored
                with a null fingerprint (not checked on open).
        """
        if not segmentations:
            return
        rows = []
        files = fingerprints or {}
        for seg in segmentations:
            seg.segmenter, seg.config_hash = self.segmenter, self.hash
            row = seg.to_row()
            row["file_size"], row["file_hash"] = files.get(seg.image_id, (None, None))
            rows.append(row)
        self._run_lock.acquire()
        name = f"part-rank{self.rank:03d}-{self.run}-{self._seq:06d}.parquet"
        atomic_write_table(_rows_to_table(rows), self.path / name)
        self._seq += 1

    def add_failure(self, image_id: str, error: str) -> None:
        """Record an image that could not be segmented (merged, one line per id, on close)."""
        self._run_lock.acquire()
        line = json.dumps({"image_id": image_id, "error": error})
        with open(self.path / f"failures-rank{self.rank:03d}-{self.run}.jsonl", "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def close(self) -> Path:
        """Merge this run's parts (and those of dead runs) into ``shard-rank<rank>.parquet``,
        minus images another run stored first; merge the failures into ``failures.jsonl`` (one
        line per image id, none for stored images). Holds the store lock; returns the shard."""
        shard = self.path / f"shard-rank{self.rank:03d}.parquet"
        with store_lock(self.path):
            found = {run for ok, run in map(run_of, os.listdir(self.path)) if ok}
            dead = {r for r in found - {self.run} if r is None or not run_is_alive(self.path, r)}
            runs = dead | {self.run}  # None: parts of the first layout (no run id)
            parts = [
                f for f in data_files(self.path) if (m := PART.match(f.name)) and m["run"] in runs
            ]
            if parts or not shard.exists():
                self._merge(shard, parts)
            for p in parts:
                p.unlink()
            self._merge_failures(runs)
            self._run_lock.release()
        return shard

    def _merge(self, shard: Path, parts: list[Path]) -> None:
        seen: set[str] = set()
        for f in data_files(self.path):
            if f.name.startswith("shard-") and f != shard:
                seen.update(ids_of(f))
        base = _conform(pq.read_table(shard)) if shard.exists() else _rows_to_table([])
        seen.update(base.column("image_id").to_pylist())
        tables = [_conform(pq.read_table(p)) for p in parts]
        new = pa.concat_tables(tables) if tables else _rows_to_table([])
        keep = []
        for i, image_id in enumerate(new.column("image_id").to_pylist()):
            if image_id not in seen:
                seen.add(image_id)
                keep.append(i)
        self.duplicates += new.num_rows - len(keep)
        atomic_write_table(pa.concat_tables([base, new.take(pa.array(keep, pa.int64()))]), shard)

    def _merge_failures(self, runs: set[str | None]) -> None:
        merged = self.path / FAILURES_NAME
        files = [
            f
            for f in failure_files(self.path)
            if not (m := RUN_FAILURES.match(f.name)) or m["run"] in runs
        ]
        if not files:
            return
        stored = stored_ids(self.path)
        entries = [e for i, e in read_failures(files).items() if i not in stored]
        if entries:
            atomic_write_text("".join(json.dumps(e) + "\n" for e in entries), merged)
        else:
            merged.unlink(missing_ok=True)
        for f in files:
            if f != merged:
                f.unlink(missing_ok=True)


class SegmentationStore:
    """Read-only view of a store folder: ``store[image_id] -> Segmentation``.

    Rows from every shard and part are indexed by image id, read under the store's shared lock;
    a duplicate id (an image stored twice by runs of an older version) keeps the last row read.
    A data file that cannot be read is a :class:`StoreDamagedError` naming it and the repair.
    Whether the rows describe a dataset's files: :meth:`check_images`.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise StoreNotFoundError(
                f"no segmentation store at {self.path} (manifest.json missing). Create it with "
                "`python -m occam_l2r segment --config ...`, or set data.segmentation: gt for "
                "datasets with ground-truth masks."
            )
        self.manifest = read_manifest(self.path)
        _check_format(self.path, int(self.manifest.get("format_version", 0)))
        with store_lock(self.path, exclusive=False):
            tables = [_read_data_file(self.path, f) for f in data_files(self.path)]
            self._failures = read_failures(failure_files(self.path))
        self._samples: list[Sample] = []
        self._unmarked = 0
        self._rows_read = sum(t.num_rows for t in tables)
        for t in tables:
            got, n = sample_rows(t)
            self._samples += got
            self._unmarked += n
        table = pa.concat_tables(tables) if tables else _rows_to_table([])
        ids = table.column("image_id").to_pylist()
        last = {image_id: i for i, image_id in enumerate(ids)}
        if len(last) < len(ids):
            table = table.take(sorted(last.values()))
            ids = table.column("image_id").to_pylist()
        self.table = table
        self._index = {image_id: i for i, image_id in enumerate(ids)}
        self._rows: list[dict[str, Any]] | None = None

    @property
    def segmenter(self) -> str:
        return str(self.manifest.get("segmenter", ""))

    def check_images(self, source: ImageSource) -> None:
        """Check that the store was computed on the files of ``source``: a few rows of every
        data file (:data:`SAMPLES_PER_FILE`) against their files (:func:`check_images`).

        Raises:
            StoreIdentityError: a sampled file differs from the one the row was made from.
        """
        check_images(self.path, self._samples, self._unmarked, self._rows_read, source)

    @property
    def config_hash(self) -> str:
        return str(self.manifest.get("config_hash", ""))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index

    def ids(self) -> list[str]:
        return list(self._index)

    def get(self, image_id: str) -> Segmentation | None:
        """The segmentation of ``image_id``, or ``None`` when the store lacks it."""
        i = self._index.get(image_id)
        if i is None:
            return None
        if self._rows is None:  # one conversion, then O(1) look-ups (a slice costs ~0.1 ms each)
            self._rows = self.table.to_pylist()
        return Segmentation.from_row(self._rows[i])

    def __getitem__(self, image_id: str) -> Segmentation:
        seg = self.get(image_id)
        if seg is None:
            raise KeyError(
                f"image {image_id!r} is not in the segmentation store {self.path}. Rerun "
                "`python -m occam_l2r segment` (it resumes and fills the gaps)."
            )
        return seg

    def failures(self) -> list[dict[str, str]]:
        """Images that could not be segmented and are not stored: one entry per image id
        (the latest error), from the merged list and the lists of runs in progress."""
        return [e for image_id, e in self._failures.items() if image_id not in self._index]
