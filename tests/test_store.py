"""The segmentation store: RLE round trip, atomic parts, resume, manifest guard, failures, several
writers on one store (every image once, dead runs' files adopted, live ones left alone), the
first layout's files, one failure line per image."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from occam_l2r.store import (
    SCHEMA,
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


def _raw_ids(store: Path) -> list[str]:
    """Every row of every parquet file, duplicates included."""
    return [
        i
        for f in sorted(store.glob("*.parquet"))
        for i in pq.read_table(f, columns=["image_id"])["image_id"].to_pylist()
    ]


def test_two_writers_on_one_store_keep_every_image_once(tmp_path):
    a = StoreWriter(tmp_path / "s", "gt", {"a": 1})
    b = StoreWriter(tmp_path / "s", "gt", {"a": 1})  # same rank, as two separate jobs
    assert a.run != b.run
    a.write([_seg(0), _seg(1)])
    b.write([_seg(1), _seg(2)])
    a.write([_seg(3)])
    a.add_failure("bad.png", "first")
    b.add_failure("bad.png", "second")
    assert len(SegmentationStore(tmp_path / "s")) == 4, "parts of runs in progress are read"
    a.close()
    assert len(list((tmp_path / "s").glob("part-*"))) == 1, "a merges its own parts only"
    b.close()
    assert sorted(_raw_ids(tmp_path / "s")) == [f"img/{i}.png" for i in range(4)]
    assert (a.duplicates, b.duplicates) == (0, 1), "the later merge drops what is stored"
    assert [p.name for p in (tmp_path / "s").glob("*.parquet")] == ["shard-rank000.parquet"]
    lines = (tmp_path / "s" / "failures.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["image_id"] == "bad.png"
    assert not list((tmp_path / "s").glob("run-*.lock"))


KILLED_WRITER = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from occam_l2r.store import Segmentation, StoreWriter
    w = StoreWriter(sys.argv[1], "gt", {"a": 1})
    m = np.ones((4, 4), bool)
    w.write([Segmentation.from_masks("img/killed.png", [m])])
    w.add_failure("bad.png", "cannot decode")
    os._exit(0)  # dies without close(): its parts and failure list stay behind
    """
)


def test_parts_of_a_dead_run_are_adopted_and_live_ones_left(tmp_path):
    store = tmp_path / "s"
    live = StoreWriter(store, "gt", {"a": 1})
    live.write([_seg(0)])
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(store)], check=True)
    dead_parts = [p for p in store.glob("part-*") if live.run not in p.name]
    assert len(dead_parts) == 1
    dead_run = dead_parts[0].name.split("-")[2]
    assert (store / f"failures-rank000-{dead_run}.jsonl").is_file()
    w = StoreWriter(store, "gt", {"a": 1})
    assert w.done_ids() == {"img/0.png", "img/killed.png"}, "a rerun skips both"
    w.write([_seg(1)])
    w.close()
    assert not dead_parts[0].exists(), "the dead run's part is merged"
    assert [p.name for p in store.glob("part-*")] == [f"part-rank000-{live.run}-000000.parquet"]
    assert [f["image_id"] for f in SegmentationStore(store).failures()] == ["bad.png"]
    assert not list(store.glob("failures-rank*"))
    assert [p.name for p in store.glob("run-*.lock")] == [f"run-{live.run}.lock"]
    live.close()
    assert sorted(_raw_ids(store)) == ["img/0.png", "img/1.png", "img/killed.png"]
    assert not list(store.glob("run-*.lock")) and not list(store.glob("part-*"))


def test_first_layout_store_reads_and_resumes(tmp_path):
    """A store written before run ids: ``part-rank000-000003.parquet`` of a killed run, a shard
    holding an image twice, ``failures-rank000.jsonl`` with a line repeated by each rerun."""
    store = tmp_path / "s"
    StoreWriter(store, "gt", {"a": 1}).close()
    for f in store.glob("*.parquet"):
        f.unlink()
    rows = [s.to_row() for s in (_seg(0), _seg(1), _seg(1))]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), store / "shard-rank000.parquet")
    pq.write_table(
        pa.Table.from_pylist([_seg(2).to_row()], schema=SCHEMA),
        store / "part-rank000-000003.parquet",
    )
    line = json.dumps({"image_id": "bad.png", "error": "cannot decode"}) + "\n"
    (store / "failures-rank000.jsonl").write_text(line * 3 + '{"image_id": "torn')
    reader = SegmentationStore(store)
    assert len(reader) == reader.table.num_rows == 3, "one row per image"
    assert reader.failures() == [{"image_id": "bad.png", "error": "cannot decode"}]
    w = StoreWriter(store, "gt", {"a": 1})
    assert w.done_ids() == {"img/0.png", "img/1.png", "img/2.png"}
    w.close()
    assert not (store / "part-rank000-000003.parquet").exists(), "adopted by the next merge"
    assert (store / "failures.jsonl").read_text() == line
    assert not (store / "failures-rank000.jsonl").exists()
    assert sorted(SegmentationStore(store).ids()) == ["img/0.png", "img/1.png", "img/2.png"]


def test_rerun_failures_one_line_per_image_and_gone_once_stored(tmp_path):
    store = tmp_path / "s"
    for error in ("first", "second", "third"):
        w = StoreWriter(store, "gt", {})
        w.add_failure("img/0.png", error)
        w.add_failure("bad.png", error)
        w.close()
    lines = [json.loads(x) for x in (store / "failures.jsonl").read_text().splitlines()]
    assert sorted(e["image_id"] for e in lines) == ["bad.png", "img/0.png"]
    assert {e["error"] for e in lines} == {"third"}, "the latest error is kept"
    w = StoreWriter(store, "gt", {})
    w.write([_seg(0)])  # the image reads now
    w.close()
    assert [e["image_id"] for e in SegmentationStore(store).failures()] == ["bad.png"]
    assert len((store / "failures.jsonl").read_text().splitlines()) == 1
