"""The segmentation store: one folder per (dataset, segmenter config), parquet shards, COCO RLE.

Layout of a store folder::

    manifest.json                 format version, segmenter name, its config and config hash
    shard-rank000.parquet         one shard per rank after a run finished
    part-rank000-000012.parquet   batches of a run in progress (merged into the shard on close)
    failures-rank000.jsonl        images the segmenter could not read, with the error

Every parquet row is one image: ``image_id`` (path relative to the dataset root), ``width``,
``height``, ``segmenter``, ``config_hash``, ``prompts``, ``boxes`` (xyxy pixels, x1/y1 exclusive),
``scores``, ``labels`` (prompt text per detection), ``label_ids`` (class index or -1) and
``masks`` (COCO RLE ``counts`` bytes, one per detection, size = (height, width); empty when the
source gives boxes only); a row reads back as a :class:`~occam_l2r.segmentation.Segmentation`.
Every file is written to a temporary name and renamed, so a killed run
loses at most the batch in flight, and a rerun skips the images already stored.
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

from occam_l2r.segmentation import Segmentation, decode_mask, encode_mask, mask_to_box

__all__ = [
    "SCHEMA",
    "STORE_FORMAT_VERSION",
    "Segmentation",
    "SegmentationStore",
    "StoreWriter",
    "config_hash",
    "decode_mask",
    "encode_mask",
    "mask_to_box",
]

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
    ],
    metadata={"occam_l2r_store_format": str(STORE_FORMAT_VERSION)},
)


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a segmenter config (JSON with sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def _atomic_write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _rows_to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SCHEMA)


class StoreWriter:
    """Writes one rank's rows into a store folder; resumable and crash-safe.

    Args:
        path: the store folder (created if absent).
        segmenter: segmenter name recorded in the manifest and every row.
        config: the segmenter's full config; its hash guards against mixing two configs.
        rank: the process rank; each rank writes its own parts and shard.
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
        manifest = self.path / "manifest.json"
        if manifest.exists():
            old = json.loads(manifest.read_text())
            if old.get("config_hash") != self.hash:
                raise ValueError(
                    f"segmentation store {self.path} was written by {old.get('segmenter')} with config "
                    f"hash {old.get('config_hash')}, not {segmenter} {self.hash}. Use another folder "
                    "for another segmenter config, or delete the old store."
                )
        elif rank == 0:
            body = {
                "format_version": STORE_FORMAT_VERSION,
                "segmenter": segmenter,
                "config_hash": self.hash,
                "config": config,
                "dataset": dataset,
            }
            _atomic_write_text(json.dumps(body, indent=2, default=str), manifest)
        existing = sorted(self.path.glob(f"part-rank{rank:03d}-*.parquet"))
        self._seq = 1 + max((int(p.stem.rsplit("-", 1)[1]) for p in existing), default=-1)

    def done_ids(self) -> set[str]:
        """Image ids already stored by any rank (finished shards and parts)."""
        done: set[str] = set()
        for f in _data_files(self.path):
            done.update(pq.read_table(f, columns=["image_id"]).column("image_id").to_pylist())
        return done

    def write(self, segmentations: Sequence[Segmentation]) -> None:
        """Persist one batch as a new part file (atomic)."""
        if not segmentations:
            return
        rows = []
        for seg in segmentations:
            seg.segmenter, seg.config_hash = self.segmenter, self.hash
            rows.append(seg.to_row())
        name = f"part-rank{self.rank:03d}-{self._seq:06d}.parquet"
        _atomic_write_table(_rows_to_table(rows), self.path / name)
        self._seq += 1

    def add_failure(self, image_id: str, error: str) -> None:
        """Record an image the segmenter could not read (listed in the store's report)."""
        line = json.dumps({"image_id": image_id, "error": error})
        with open(self.path / f"failures-rank{self.rank:03d}.jsonl", "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def close(self) -> Path:
        """Merge this rank's parts into ``shard-rank<r>.parquet`` (atomic) and delete the parts."""
        shard = self.path / f"shard-rank{self.rank:03d}.parquet"
        parts = sorted(self.path.glob(f"part-rank{self.rank:03d}-*.parquet"))
        if not parts:
            if not shard.exists():
                _atomic_write_table(_rows_to_table([]), shard)
            return shard
        tables = [pq.read_table(p) for p in ([shard] if shard.exists() else []) + parts]
        merged = pa.concat_tables([t.cast(SCHEMA) for t in tables])
        _atomic_write_table(merged, shard)
        for p in parts:
            p.unlink()
        return shard


def _data_files(path: Path) -> list[Path]:
    return sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))


class SegmentationStore:
    """Read-only view of a store folder: ``store[image_id] -> Segmentation``.

    Rows from every shard and part are indexed by image id; a duplicate id (an image stored twice
    by two interrupted runs) keeps the last row read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(
                f"no segmentation store at {self.path} (manifest.json missing). Create it with "
                "`python -m occam_l2r segment --config ...`, or set data.segmentation: gt for "
                "datasets with ground-truth masks."
            )
        self.manifest = json.loads(manifest.read_text())
        version = int(self.manifest.get("format_version", 0))
        if version != STORE_FORMAT_VERSION:
            raise ValueError(
                f"store {self.path} has format version {version}; this occam_l2r reads version "
                f"{STORE_FORMAT_VERSION}. Recompute the segmentations."
            )
        files = _data_files(self.path)
        tables = [pq.read_table(f).cast(SCHEMA) for f in files]
        self.table = pa.concat_tables(tables) if tables else _rows_to_table([])
        ids = self.table.column("image_id").to_pylist()
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
        """Images the segmenter could not read, from every rank's failure list."""
        out = []
        for f in sorted(self.path.glob("failures-rank*.jsonl")):
            out.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
        return out
