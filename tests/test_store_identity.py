"""A store knows the images it describes, and a damaged store is named and repaired (issue 17,
items 2 and 5).

- Identity (store format 2): a store of the same benchmark generated with another seed (same
  ids and image sizes, other pixels) is refused with one message naming the store and the
  dataset, by readers (``fit``: exit 3) and writers (``build_gt_store``, ``segment``); a copy of
  the same files (timestamps changed, as ``cp -r`` without ``-p``) still opens; a store of
  format 1 (no fingerprints) is read with one warning, and a ``gt`` store of format 1 is moved
  aside and rebuilt.
- Damage: a truncated data file is one message naming it and the repair (``fit``: exit 3);
  ``segment`` moves it aside to ``<file>.damaged``, recomputes exactly its images, and ``fit``
  then works.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from _segment_tiny import segment_config, write_config

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.errors import EXIT_USER_ERROR
from occam_l2r.gt_store import build_gt_store
from occam_l2r.store import SegmentationStore, StoreDamagedError, StoreWriter
from occam_l2r.store_identity import StoreIdentityError
from occam_l2r.store_location import open_store
from tests.conftest import TINY, clean_copy, tiny_fit_args

GT_SEGMENTER = {"class_path": "occam_l2r.segment.segmenters.GroundTruth"}


def _exit_and_message(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str]:
    """``python -m occam_l2r <argv>`` in process: its exit status and its stderr."""
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def reseeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny benchmark generated again with another seed: same ids and sizes, other pixels."""
    root = tmp_path_factory.mktemp("reseeded") / "tiny"
    SyntheticSpurious(root=str(root), seed=1, **TINY).prepare()
    return root


def test_a_store_of_another_generation_is_refused_by_readers_and_writers(
    synthetic_copy: Path, reseeded: Path, tmp_path: Path
) -> None:
    ours = SyntheticSpurious(root=str(synthetic_copy), **TINY)
    other = SyntheticSpurious(root=str(reseeded), **TINY)
    assert [r.image_id for r in ours.all_records()] == [r.image_id for r in other.all_records()]
    store = build_gt_store(ours, tmp_path / "store")
    open_store(store, synthetic_copy)  # its own dataset: opens
    with pytest.raises(StoreIdentityError) as err:
        open_store(store, reseeded)
    text = str(err.value)
    assert str(store) in text and str(reseeded) in text and "segment" in text
    with pytest.raises(StoreIdentityError, match="not computed on the images under"):
        build_gt_store(other, store)  # a writer does not complete a foreign store either
    # a copy of the same files with new timestamps (cp -r, rsync without -t) is the same data
    copy = clean_copy(synthetic_copy, tmp_path / "copy")
    for f in copy.rglob("*.png"):
        os.utime(f, (1, 1))
    shutil.copytree(store, tmp_path / "store_copy")
    assert len(open_store(tmp_path / "store_copy", copy)) == len(ours.all_records())


def test_a_foreign_store_fails_fit_with_one_message(
    synthetic_copy: Path, reseeded: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    store = build_gt_store(SyntheticSpurious(root=str(reseeded), **TINY), tmp_path / "other_gt")
    argv = ["fit", *tiny_fit_args(synthetic_copy, tmp_path / "out")]
    code, err = _exit_and_message(
        [*argv, "--data.init_args.segmentation", str(store)], monkeypatch, capsys
    )
    assert code == EXIT_USER_ERROR and "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert line.startswith("occam_l2r fit: error: segmentation store"), err
    assert str(store) in line and str(synthetic_copy) in line


def _as_format_1(store: Path) -> None:
    """Rewrite ``store`` as format 1 wrote it: no fingerprint columns, version 1."""
    for f in store.glob("*.parquet"):
        pq.write_table(pq.read_table(f).drop_columns(["file_size", "file_hash"]), f)
    manifest = json.loads((store / "manifest.json").read_text())
    (store / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))


def test_format_1_is_read_with_a_warning_and_an_old_gt_store_is_rebuilt(
    synthetic_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = SyntheticSpurious(root=str(synthetic_copy), **TINY)
    gt = build_gt_store(dataset)
    before = SegmentationStore(gt).table
    _as_format_1(gt)
    with caplog.at_level(logging.WARNING):
        old = open_store("gt", synthetic_copy)
    assert len(old) == len(before)
    warned = [r.getMessage() for r in caplog.records if "no image fingerprint" in r.getMessage()]
    assert len(warned) == 1 and str(synthetic_copy) in warned[0]
    build_gt_store(dataset)  # first use: the old gt store is moved aside and rebuilt
    assert (gt.parent / "gt.format1" / "manifest.json").is_file(), "kept, not deleted"
    rebuilt = open_store("gt", synthetic_copy)
    assert rebuilt.manifest["format_version"] == 2 and rebuilt.table.equals(before)


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def test_a_truncated_shard_is_one_message_and_a_writer_moves_it_aside(tmp_path: Path) -> None:
    from tests.test_store import _seg

    w = StoreWriter(tmp_path / "s", "fake", {"a": 1})
    w.write([_seg(i) for i in range(3)])
    w.close()
    shard = tmp_path / "s" / "shard-rank000.parquet"
    _truncate(shard)
    with pytest.raises(StoreDamagedError) as err:
        SegmentationStore(tmp_path / "s")
    assert str(shard) in str(err.value) and "python -m occam_l2r segment --config" in str(err.value)
    w = StoreWriter(tmp_path / "s", "fake", {"a": 1})
    assert w.moved_aside == [tmp_path / "s" / "shard-rank000.parquet.damaged"]
    assert w.done_ids() == set(), "its images count as not stored"
    w.write([_seg(0)])
    w.close()
    assert SegmentationStore(tmp_path / "s").ids() == ["img/0.png"]


@pytest.mark.slow
def test_segment_repairs_a_truncated_shard_then_fit_works(
    synthetic_copy: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    # segment's console logging set up once here would write to a capture closed later
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    store = tmp_path / "gt_store"
    cfg = segment_config(synthetic_copy, GT_SEGMENTER, store)
    cfg["data"]["dataset"]["init_args"] = {"root": str(synthetic_copy), **TINY}
    conf = write_config(tmp_path / "gt_segment.yaml", cfg)
    first = main(["segment", "--config", str(conf)])
    n = len(SyntheticSpurious(root=str(synthetic_copy), **TINY).all_records())
    assert first["stored"] == first["computed"] == n
    before = SegmentationStore(store).table
    # a second rank's shard (as a DDP run leaves), then truncated
    half = before.slice(0, n // 3)
    pq.write_table(before.slice(n // 3), store / "shard-rank000.parquet")
    pq.write_table(half, store / "shard-rank001.parquet")
    _truncate(store / "shard-rank001.parquet")
    fit = ["fit", *tiny_fit_args(synthetic_copy, tmp_path / "out")]
    fit += ["--data.init_args.segmentation", str(store)]
    code, err = _exit_and_message(fit, monkeypatch, capsys)
    assert code == EXIT_USER_ERROR and "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert str(store / "shard-rank001.parquet") in line
    assert "python -m occam_l2r segment --config" in line
    repaired = main(["segment", "--config", str(conf)])
    assert (store / "shard-rank001.parquet.damaged").is_file(), "moved aside, not deleted"
    assert repaired["computed"] == n // 3 and repaired["skipped"] == n - n // 3
    after = SegmentationStore(store)
    assert after.table.sort_by("image_id").equals(before.sort_by("image_id"))
    main(fit)  # trains on the repaired store
    assert list((tmp_path / "out").rglob("*.ckpt")), "fit ran to a checkpoint"
