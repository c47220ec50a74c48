"""The segmentation store: RLE round trip, atomic parts, resume, manifest guard, failures."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from occam_l2r.store import (
    STORE_FORMAT_VERSION,
    Segmentation,
    SegmentationStore,
    StoreWriter,
    decode_mask,
    encode_mask,
)


def _seg(i: int, h: int = 16, w: int = 20) -> Segmentation:
    m = np.zeros((h, w), bool)
    m[2 : 4 + i, 3 : 9 + i] = True
    return Segmentation.from_masks(
        f"img/{i}.png", [m], scores=[0.5 + i / 100], labels=["dog"], label_ids=[i % 3]
    )


def test_rle_round_trip():
    rng = np.random.default_rng(0)
    m = rng.random((31, 17)) > 0.5
    assert np.array_equal(decode_mask(encode_mask(m), 31, 17), m)


def test_write_read_round_trip(tmp_path):
    w = StoreWriter(tmp_path / "s", "gt", {"a": 1})
    segs = [_seg(i) for i in range(5)]
    w.write(segs[:3])
    w.write(segs[3:])
    w.write([Segmentation("img/empty.png", 20, 16)])  # an empty detection is stored as empty
    w.close()
    store = SegmentationStore(tmp_path / "s")
    assert len(store) == 6 and store.segmenter == "gt" and store.config_hash == w.hash
    got = store["img/2.png"]
    assert np.array_equal(got.mask(0), segs[2].mask(0))
    assert got.boxes.tolist() == [[3.0, 2.0, 11.0, 6.0]]
    assert got.labels == ["dog"] and got.label_ids.tolist() == [2] and got.config_hash == w.hash
    assert len(store["img/empty.png"]) == 0
    shards = sorted(p.name for p in (tmp_path / "s").glob("*.parquet"))
    assert shards == ["shard-rank000.parquet"]  # parts merged on close
    meta = pq.read_schema(tmp_path / "s" / shards[0]).metadata
    assert meta[b"occam_l2r_store_format"] == str(STORE_FORMAT_VERSION).encode()


def test_resume_sees_parts_of_killed_run(tmp_path):
    w = StoreWriter(tmp_path / "s", "gt", {"a": 1})
    w.write([_seg(0), _seg(1)])  # run killed before close(): only a part file exists
    w2 = StoreWriter(tmp_path / "s", "gt", {"a": 1})
    assert w2.done_ids() == {"img/0.png", "img/1.png"}
    w2.write([_seg(2)])
    w2.close()
    assert sorted(SegmentationStore(tmp_path / "s").ids()) == [
        "img/0.png",
        "img/1.png",
        "img/2.png",
    ]


def test_no_temporary_files_left(tmp_path):
    w = StoreWriter(tmp_path / "s", "gt", {"a": 1})
    w.write([_seg(0)])
    w.close()
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".")]


def test_other_config_is_refused(tmp_path):
    StoreWriter(tmp_path / "s", "gt", {"a": 1}).close()
    with pytest.raises(ValueError, match="another segmenter config"):
        StoreWriter(tmp_path / "s", "gdino", {"a": 2})


def test_missing_store_and_image_messages(tmp_path):
    with pytest.raises(FileNotFoundError, match="occam_l2r segment"):
        SegmentationStore(tmp_path / "nothing")
    StoreWriter(tmp_path / "s", "gt", {}).close()
    store = SegmentationStore(tmp_path / "s")
    assert store.get("x.png") is None
    with pytest.raises(KeyError, match="not in the segmentation store"):
        store["x.png"]


def test_failures_are_listed(tmp_path):
    w = StoreWriter(tmp_path / "s", "gt", {})
    w.add_failure("bad.png", "cannot decode")
    w.close()
    assert SegmentationStore(tmp_path / "s").failures() == [
        {"image_id": "bad.png", "error": "cannot decode"}
    ]


def test_format_version_guard(tmp_path):
    StoreWriter(tmp_path / "s", "gt", {}).close()
    manifest = tmp_path / "s" / "manifest.json"
    body = json.loads(manifest.read_text())
    body["format_version"] = 99
    manifest.write_text(json.dumps(body))
    with pytest.raises(ValueError, match="format version 99"):
        SegmentationStore(tmp_path / "s")


def test_inconsistent_segmentation_rejected():
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        Segmentation("a.png", 4, 4, boxes=[[0, 0, 1, 1], [1, 1, 2, 2]], scores=[1.0])
