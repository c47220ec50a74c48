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
source gives boxes only) and ``prompt_ids`` (class index of each prompt, -1 for a meta-prompt;
null in rows written before it); a row reads back as a
:class:`~occam_l2r.segmentation.Segmentation`.

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
import os
from collections.abc import Iterable, Sequence
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
    new_run_id,
    read_failures,
    run_is_alive,
    run_of,
    store_lock,
    stored_ids,
)

__all__ = [
    "SCHEMA",
    "STORE_FORMAT_VERSION",
    "Segmentation",
    "SegmentationStore",
    "StoreFormatError",
    "StoreNotFoundError",
    "StoreWriter",
    "atomic_write_text",
    "config_hash",
    "decode_mask",
    "encode_mask",
    "mask_to_box",
    "store_lock",
]


class StoreNotFoundError(UserError, FileNotFoundError):
    """No segmentation store at the given folder (the message says how to create one)."""


class StoreFormatError(UserError, ValueError):
    """A store written by an incompatible version of the toolkit."""


STORE_FORMAT_VERSION = 1

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
    ],
    metadata={"occam_l2r_store_format": str(STORE_FORMAT_VERSION)},
)


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a segmenter config (JSON with sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def _conform(table: pa.Table) -> pa.Table:
    """A stored table in :data:`SCHEMA`; ``prompt_ids`` (added within format 1) is null in
    tables written before it."""
    for f in SCHEMA:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table.select(SCHEMA.names).cast(SCHEMA)


def _rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


class StoreWriter:
    """Writes one process's rows into a store folder; resumable, crash-safe, concurrency-safe.

    Args:
        path: the store folder (created if absent).
        segmenter: segmenter name recorded in the manifest and every row.
        config: the segmenter's full config; its hash guards against mixing two configs.
        rank: the process rank; :meth:`close` merges into ``shard-rank<rank>.parquet``.
        dataset: optional dataset description stored in the manifest.
    """

    def __init__(
        self,
        path: str | Path,
        segmenter: str,
        config: dict[str, Any],
        rank: int = 0,
        dataset: str = "",
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
        self._seq = 0
        self._run_lock = RunLock(self.path, self.run)  # taken before the run's first file
        manifest = self.path / "manifest.json"
        with store_lock(self.path):
            if manifest.exists():
                old = json.loads(manifest.read_text())
                if old.get("config_hash") != self.hash:
                    raise ValueError(
                        f"segmentation store {self.path} was written by {old.get('segmenter')} "
                        f"with config hash {old.get('config_hash')}, not {segmenter} {self.hash}. "
                        "Use another folder for another segmenter config, or delete the old store."
                    )
            else:
                body = {
                    "format_version": STORE_FORMAT_VERSION,
                    "segmenter": segmenter,
                    "config_hash": self.hash,
                    "config": config,
                    "dataset": dataset,
                }
                atomic_write_text(json.dumps(body, indent=2, default=str), manifest)

    def done_ids(self) -> set[str]:
        """Image ids already stored by any run or rank (shards and parts)."""
        with store_lock(self.path, exclusive=False):
            return stored_ids(self.path)

    def write(self, segmentations: Sequence[Segmentation]) -> None:
        """Persist one batch as a new part file of this run (atomic)."""
        if not segmentations:
            return
        rows = []
        for seg in segmentations:
            seg.segmenter, seg.config_hash = self.segmenter, self.hash
            rows.append(seg.to_row())
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
        self.manifest = json.loads(manifest.read_text())
        version = int(self.manifest.get("format_version", 0))
        if version != STORE_FORMAT_VERSION:
            raise StoreFormatError(
                f"store {self.path} has format version {version}; this occam_l2r reads version "
                f"{STORE_FORMAT_VERSION}. Recompute the segmentations."
            )
        with store_lock(self.path, exclusive=False):
            tables = [_conform(pq.read_table(f)) for f in data_files(self.path)]
            self._failures = read_failures(failure_files(self.path))
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
