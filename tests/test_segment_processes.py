"""``python -m occam_l2r segment`` as real processes: SIGKILL + resume, and two-rank CPU DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from _segment_tiny import SYNTH, check_store, detect_config, shared, write_config

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.store import SegmentationStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared(tmp_path_factory)


@pytest.fixture(scope="module")
def dataset(paths: dict[str, Path]) -> SyntheticSpurious:
    return SyntheticSpurious(root=str(paths["synthetic"]), **SYNTH)


def _command(config: Path) -> list[str]:
    return [sys.executable, "-m", "occam_l2r", "segment", "--config", str(config)]


def _run(config: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        _command(config),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _rows(store: Path) -> int:
    return sum(
        pq.read_metadata(p).num_rows for p in store.glob("*.parquet") if not p.name.startswith(".")
    )


def _assert_same_store(a: Path, b: Path) -> None:
    ra, rb = SegmentationStore(a), SegmentationStore(b)
    assert sorted(ra.ids()) == sorted(rb.ids())
    assert ra.config_hash == rb.config_hash
    for image_id in ra.ids():
        x, y = ra[image_id], rb[image_id]
        assert x.labels == y.labels and x.prompts == y.prompts
        assert np.array_equal(x.label_ids, y.label_ids)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-4)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-5)
        assert x.masks_rle == y.masks_rle


def test_killed_run_resumes_to_the_same_store(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    ids = [r.image_id for r in dataset.all_records()]
    reference = tmp_path / "reference"
    main(
        [
            "segment",
            "--config",
            str(write_config(tmp_path / "ref.yaml", detect_config(paths, reference, batch_size=2))),
        ]
    )
    check_store(reference, dataset, ids)

    store = tmp_path / "killed"
    config = write_config(tmp_path / "killed.yaml", detect_config(paths, store, batch_size=2))
    proc = subprocess.Popen(
        _command(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    deadline = time.monotonic() + 240
    while not list(store.glob("part-rank000-*.parquet")):
        assert proc.poll() is None, (
            f"run ended before writing a batch: {proc.stderr.read().decode()[-3000:]}"
        )
        assert time.monotonic() < deadline, "no batch written in time"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    stored_before = _rows(store)
    assert 0 < stored_before < len(ids), "killed mid-way: some batches stored, not all"
    assert not (store / "summary.json").exists()

    _run(config)
    summary = json.loads((store / "summary.json").read_text())
    assert summary["skipped"] == stored_before, "finished images are not recomputed"
    assert summary["computed"] == len(ids) - stored_before
    assert summary["stored"] == len(ids) and summary["failures"] == 0
    assert not list(store.glob("part-*.parquet")), "parts are merged into the shard"
    assert not list(store.glob("run-*.lock")), "the killed run's lock file is cleared"
    check_store(store, dataset, ids)
    _assert_same_store(store, reference)


def test_two_process_cpu_ddp_writes_two_disjoint_shards(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    store = tmp_path / "ddp"
    cfg = detect_config(
        paths, store, detector="owlv2", batch_size=4, splits=["train", "val", "test_shift"]
    )
    cfg["trainer"].update(devices=2, strategy="ddp")
    _run(write_config(tmp_path / "ddp.yaml", cfg), OMP_NUM_THREADS="1")  # 2 ranks on 2 cores
    ids = [r.image_id for s in ("train", "val", "test_shift") for r in dataset.records(s)]
    shards = sorted(p.name for p in store.glob("*.parquet"))
    assert shards == ["shard-rank000.parquet", "shard-rank001.parquet"]
    per_rank = [
        pq.read_table(store / s, columns=["image_id"]).column("image_id").to_pylist()
        for s in shards
    ]
    assert all(per_rank), "both ranks wrote rows"
    assert not set(per_rank[0]) & set(per_rank[1]), "no image is segmented twice"
    assert sorted(per_rank[0] + per_rank[1]) == sorted(ids), "the union covers every image"
    check_store(store, dataset, ids)
    summary = json.loads((store / "summary.json").read_text())
    assert summary["computed"] == len(ids) and summary["stored"] == len(ids)
