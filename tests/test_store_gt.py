"""The ground-truth store's one builder, :func:`occam_l2r.gt_store.build_gt_store`: its rows and
manifest unchanged since it moved to the store layer (store format 2 adds each row's file
fingerprint and nothing else), its default folder that of the resolver,
and the DataModules building the ``gt`` store through it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.gt_store import build_gt_store
from occam_l2r.store import STORE_FORMAT_VERSION, SegmentationStore
from occam_l2r.store_location import resolve_store
from tests.conftest import TINY

#: :func:`store_digest` of the tiny benchmark's gt store written by ``build_gt_store`` as it was
#: in ``occam_l2r/segment/gt.py``, before it moved to the store layer
DIGEST_BEFORE = "9b7cd87fe67e2eb0edf3a7ab5003e3027ad591d4bb564c62f1f4e09f129df4e1"


#: what store format 2 added: the manifest's version and each row's file fingerprint
FORMAT_2 = ("file_size", "file_hash")


def store_digest(folder: Path) -> str:
    """sha256 of a store's manifest and of its rows (masks' RLE bytes as hex), in stored order,
    as format 1 wrote them: the content of format 2 without its fingerprint columns."""
    h = hashlib.sha256()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 1
    h.update(json.dumps(manifest, sort_keys=True).encode())
    for shard in sorted(folder.glob("shard-*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            row["masks"] = [m.hex() for m in row["masks"]]
            for name in FORMAT_2:
                row.pop(name)
            h.update(json.dumps(row, sort_keys=True).encode())
    return h.hexdigest()


def test_gt_store_rows_and_manifest_unchanged(synthetic_copy: Path):
    dataset = SyntheticSpurious(root=str(synthetic_copy), **TINY)
    folder = build_gt_store(dataset)  # default folder: the resolver's `gt`
    assert folder == resolve_store("gt", synthetic_copy) == synthetic_copy / "segmentations" / "gt"
    assert store_digest(folder) == DIGEST_BEFORE, "boxes, masks, scores: as before format 2"
    store = SegmentationStore(folder)
    assert len(store) == len(dataset.all_records())
    assert store.manifest["format_version"] == STORE_FORMAT_VERSION == 2
    rows = store.table.select(["image_id", *FORMAT_2]).to_pylist()
    for row in rows:  # every row names its file: size and blake2b of the bytes
        path = synthetic_copy / row["image_id"]
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        assert (row["file_size"], row["file_hash"]) == (path.stat().st_size, digest)


def test_the_datamodule_builds_the_gt_store_in_gt_store_dir(synthetic_copy: Path, tmp_path: Path):
    dataset = SyntheticSpurious(root=str(synthetic_copy), **TINY)
    gt_dir = tmp_path / "elsewhere" / "gt"
    dm = ViewDataModule(dataset, view="FG_C", segmentation="gt", gt_store_dir=str(gt_dir))
    dm.prepare_data()
    dm.setup("fit")
    assert dm.store_path == gt_dir and dm.store is not None and dm.store.path == gt_dir
    assert not (synthetic_copy / "segmentations" / "gt").exists()
    direct = SegmentationStore(build_gt_store(dataset, tmp_path / "direct")).table
    assert dm.store.table.sort_by("image_id").equals(direct.sort_by("image_id"))
