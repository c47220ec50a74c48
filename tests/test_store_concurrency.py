"""Two ``segment`` processes on one store, failure lists on rerun, and unreadable images in the
``gt`` store (issue 12, points 3, 6 and 9).

The concurrent runs use the ``gt`` segmenter of ``configs/segment/synthetic_gt.yaml`` on a small
copy of the embedded benchmark, through ``python -m occam_l2r segment`` in two subprocesses
started together. :class:`RendezvousGroundTruth` (the ``gt`` segmenter, same name and config
hash) makes the overlap certain: at its first batch each process waits until both have read
what the store holds, then segments slowly enough for the runs to interleave.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.records import ImageReadError
from occam_l2r.gt_store import build_gt_store
from occam_l2r.segment.segmenters import GroundTruth, Item
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import SegmentationStore
from tests.conftest import clean_copy

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
GT_CONFIG = REPO / "configs" / "segment" / "synthetic_gt.yaml"
SYNTH = {"num_classes": 4, "train_per_class": 3, "val_per_class": 3, "test_per_class": 3}
SPLITS = ["train", "val", "test_id", "test_shift", "test_random"]


class RendezvousGroundTruth(GroundTruth):
    """The ``gt`` segmenter; with ``$RENDEZVOUS_DIR`` set, its first batch waits until
    ``$RENDEZVOUS_PARTIES`` processes have reached theirs, and every batch takes 50 ms more."""

    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        folder = os.environ.get("RENDEZVOUS_DIR")
        if folder and not getattr(self, "_met", False):
            Path(folder, f"{os.getpid()}.ready").touch()
            parties = int(os.environ.get("RENDEZVOUS_PARTIES", "2"))
            deadline = time.monotonic() + 120
            while len(list(Path(folder).glob("*.ready"))) < parties:
                assert time.monotonic() < deadline, "the other process never started segmenting"
                time.sleep(0.02)
            self._met = True
        if folder:
            time.sleep(0.05)
        return super().segment(items)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("concurrency") / "synthetic"
    SyntheticSpurious(root=str(path), **SYNTH).prepare()
    return path


def _overlay(path: Path, root: Path, store: Path, **data: Any) -> Path:
    """A config laid over ``synthetic_gt.yaml``: the small dataset, the store folder, small
    batches, one CPU process without progress bar, the rendezvous segmenter."""
    cfg = {
        "model": {
            "segmenter": {"class_path": f"{__name__}.RendezvousGroundTruth"},
            "store": str(store),
        },
        "data": {
            "dataset": {
                "class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
                "init_args": {"root": str(root), **SYNTH},
            },
            "batch_size": 2,
            "num_workers": 0,
            **data,
        },
        "trainer": {"enable_progress_bar": False},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


def _run_together(configs: list[Path], folder: Path) -> list[str]:
    """Start one ``segment`` process per config at once; their stdout, after all exit 0."""
    (folder / "rendezvous").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
        "RENDEZVOUS_DIR": str(folder / "rendezvous"),
        "RENDEZVOUS_PARTIES": str(len(configs)),
        "OMP_NUM_THREADS": "1",
    }
    procs = []
    for k, config in enumerate(configs):
        command = [
            sys.executable,
            "-m",
            "occam_l2r",
            "segment",
            "--config",
            str(GT_CONFIG),
            "--config",
            str(config),
        ]
        with open(folder / f"out{k}.txt", "w") as out, open(folder / f"err{k}.txt", "w") as err:
            procs.append(subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=REPO))
    try:
        for proc in procs:
            proc.wait(timeout=300)
    finally:
        for proc in procs:  # a hung run must not outlive the test
            if proc.poll() is None:
                proc.kill()
    outs = []
    for k, proc in enumerate(procs):
        err = (folder / f"err{k}.txt").read_text()
        assert proc.returncode == 0 and "Traceback" not in err, err[-4000:]
        outs.append((folder / f"out{k}.txt").read_text())
    return outs


def _ids(dataset: SyntheticSpurious, splits: list[str]) -> list[str]:
    return [r.image_id for s in splits for r in dataset.records(s)]


def _assert_every_image_once(store: Path, expected: list[str]) -> None:
    """Every row of every parquet file of the store, read raw: each image exactly once."""
    files = sorted(store.glob("*.parquet"))
    assert files and all(p.name.startswith("shard-") for p in files), "parts merged, none left"
    rows = [
        i for f in files for i in pq.read_table(f, columns=["image_id"])["image_id"].to_pylist()
    ]
    assert sorted(rows) == sorted(expected), "each image stored exactly once"
    assert not list(store.glob("run-*.lock")) and not list(store.glob(".*")), "no run leftovers"


def _dropped(out: str) -> int:
    return int(re.search(r"dropped \(stored by another run\) (\d+)", out).group(1))


def _check_summary(store: Path, dataset: SyntheticSpurious) -> dict[str, Any]:
    summary = json.loads((store / "summary.json").read_text())
    n = len(dataset.all_records())
    assert summary["store_images"] == n and summary["store_failures"] == 0
    for split in SPLITS:
        per = len(dataset.records(split))
        assert summary["splits"][split] == {"images": per, "stored": per, "failed": 0, "missing": 0}
    assert summary["stored"] == summary["images"] and summary["missing"] == 0
    return summary


def test_two_runs_on_different_splits(root: Path, tmp_path: Path) -> None:
    dataset = SyntheticSpurious(root=str(root), **SYNTH)
    store = tmp_path / "store"
    first, second = ["train", "val"], ["test_id", "test_shift", "test_random"]
    outs = _run_together(
        [
            _overlay(tmp_path / "a.yaml", root, store, splits=first),
            _overlay(tmp_path / "b.yaml", root, store, splits=second),
        ],
        tmp_path,
    )
    _assert_every_image_once(store, _ids(dataset, SPLITS))
    summary = _check_summary(store, dataset)
    assert summary["images"] in (len(_ids(dataset, first)), len(_ids(dataset, second)))
    for out, splits in zip(outs, (first, second), strict=True):
        n = len(_ids(dataset, splits))
        assert f"images {n}: stored {n}, computed now {n}, skipped (already stored) 0" in out
        assert _dropped(out) == 0
    reader = SegmentationStore(store)
    for rec in dataset.all_records():
        assert reader[rec.image_id].label_ids.tolist() == [rec.label]


def test_two_runs_on_the_same_splits(root: Path, tmp_path: Path) -> None:
    dataset = SyntheticSpurious(root=str(root), **SYNTH)
    store = tmp_path / "store"
    outs = _run_together(
        [
            _overlay(tmp_path / "a.yaml", root, store, splits=None),
            _overlay(tmp_path / "b.yaml", root, store, splits=None),
        ],
        tmp_path,
    )
    n = len(dataset.all_records())
    _assert_every_image_once(store, _ids(dataset, SPLITS))
    summary = _check_summary(store, dataset)
    assert summary["images"] == summary["stored"] == n
    # both computed everything (they met before writing); the later merge kept none of its rows
    assert sorted(_dropped(out) for out in outs) == [0, n]
    for out in outs:  # and each printed a true summary
        assert f"images {n}: stored {n}, computed now {n}, skipped (already stored) 0" in out
        assert f"whole store: {n} images, 0 failed" in out


def test_rerun_keeps_one_failure_line_per_image(root: Path, tmp_path: Path) -> None:
    dataset = SyntheticSpurious(root=str(root), **SYNTH)
    bad = dataset.records("val")[:2]
    copy = tmp_path / "copy"
    clean_copy(root, copy)
    for rec in bad:  # a truncated PNG: the header reads, the pixels do not
        path = copy / rec.image_id
        path.write_bytes(path.read_bytes()[:80])
    store = tmp_path / "store"
    cfg = _overlay(tmp_path / "c.yaml", copy, store, splits=["val"])
    argv = ["segment", "--config", str(GT_CONFIG), "--config", str(cfg)]
    for _ in range(3):
        summary = main(argv)
    assert summary["failures"] == 2 and summary["failed_ids"] == sorted(r.image_id for r in bad)
    assert summary["stored"] == len(dataset.records("val")) - 2 and summary["missing"] == 0
    lines = (store / "failures.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["image_id"] for line in lines) == sorted(r.image_id for r in bad)
    assert not list(store.glob("failures-rank*.jsonl")), "run lists merged into failures.jsonl"
    assert all("truncated" in f["error"] for f in SegmentationStore(store).failures())

    # the gt store built for training decodes images fully: the truncated files stop it
    gt = tmp_path / "gt"
    with pytest.raises(ImageReadError) as err:
        build_gt_store(SyntheticSpurious(root=str(copy), **SYNTH), gt)
    message = str(err.value)
    assert all(str(copy / r.image_id) in message for r in bad)
    assert "data.on_unreadable: skip" in message and "2 image(s)" in message
    assert len(SegmentationStore(gt)) == len(dataset.all_records()) - 2, "the rest is stored"
    with pytest.raises(ImageReadError):  # a rerun retries them (resume) and stops again
        build_gt_store(SyntheticSpurious(root=str(copy), **SYNTH), gt)
    assert len((gt / "failures.jsonl").read_text().splitlines()) == 2
    build_gt_store(SyntheticSpurious(root=str(copy), **SYNTH), gt, on_unreadable="skip")
    for rec in bad:  # fixed files are stored by the next build, and leave the failure list
        (copy / rec.image_id).write_bytes((root / rec.image_id).read_bytes())
    build_gt_store(SyntheticSpurious(root=str(copy), **SYNTH), gt)
    assert len(SegmentationStore(gt)) == len(dataset.all_records())
    assert not (gt / "failures.jsonl").exists() and SegmentationStore(gt).failures() == []


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", "0"), ("batch_size", "-4"), ("num_workers", "-1"), ("limit", "0")],
)
def test_bad_data_values_are_rejected_when_parsed(
    key: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    argv = [
        "segment",
        "--config",
        str(GT_CONFIG),
        f"--data.{key}",
        value,
        "--model.store",
        str(store),
    ]
    with pytest.raises(SystemExit):
        main(argv)
    assert key in capsys.readouterr().err
    assert not store.exists(), "rejected before anything was created"
