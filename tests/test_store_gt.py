"""The ground-truth store's one builder, :func:`occam_l2r.gt_store.build_gt_store`: its rows and
manifest unchanged since it moved to the store layer, its default folder that of the resolver,
and the DataModules building the ``gt`` store through it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.gt_store import build_gt_store
from occam_l2r.store import SegmentationStore
from occam_l2r.store_location import resolve_store
from tests.conftest import TINY

#: :func:`store_digest` of the tiny benchmark's gt store written by ``build_gt_store`` as it was
#: in ``occam_l2r/segment/gt.py``, before it moved to the store layer
DIGEST_BEFORE = "9b7cd87fe67e2eb0edf3a7ab5003e3027ad591d4bb564c62f1f4e09f129df4e1"


def store_digest(folder: Path) -> str:
    """sha256 of a store's manifest and of its rows (masks' RLE bytes as hex), in stored order."""
    h = hashlib.sha256()
    manifest = json.loads((folder / "manifest.json").read_text())
    h.update(json.dumps(manifest, sort_keys=True).encode())
    for shard in sorted(folder.glob("shard-*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            row["masks"] = [m.hex() for m in row["masks"]]
            h.update(json.dumps(row, sort_keys=True).encode())
    return h.hexdigest()


def test_gt_store_rows_and_manifest_unchanged(synthetic_copy: Path):
    dataset = SyntheticSpurious(root=str(synthetic_copy), **TINY)
    folder = build_gt_store(dataset)  # default folder: the resolver's `gt`
    assert folder == resolve_store("gt", synthetic_copy) == synthetic_copy / "segmentations" / "gt"
    assert store_digest(folder) == DIGEST_BEFORE
    assert len(SegmentationStore(folder)) == len(dataset.all_records())


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
