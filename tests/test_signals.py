"""SIGTERM (what SLURM sends before the kill) to ``fit`` and ``segment`` as real processes:
``fit`` saves its latest state after the running batch, says so and exits 143, and ``fit
--resume`` finishes the run; a rerun of a stopped ``segment`` stores every image once (issue 17).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from occam_l2r.cli import main
from occam_l2r.tasks.checkpoints import EXIT_SIGTERM

REPO = Path(__file__).parents[1]
CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"
NAME = Path("tiny") / "FG_C"


class PauseUntilSigterm(Callback):
    """At the end of batch ``batch`` of epoch ``epoch`` of a fresh run, touch ``marker`` and wait
    until Lightning's handler has seen a SIGTERM (a resumed run is not paused)."""

    def __init__(self, marker: str, epoch: int = 1, batch: int = 0) -> None:
        self.marker, self.epoch, self.batch = marker, epoch, batch

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        batch_idx = args[-1]
        if trainer.ckpt_path is not None or trainer.current_epoch != self.epoch:
            return
        if batch_idx != self.batch:
            return
        Path(self.marker).write_text(str(trainer.global_step))
        deadline = time.monotonic() + 300
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _wait_for(path: Path, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), log.read_text()[-3000:]


@pytest.mark.slow
def test_sigterm_during_fit_saves_a_resumable_state(synthetic_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    marker = tmp_path / "paused"
    overlay = tmp_path / "pause.yaml"
    init = json.dumps({"marker": str(marker), "epoch": 1, "batch": 0})
    overlay.write_text(
        "trainer:\n  callbacks:\n    - class_path: tests.test_signals.PauseUntilSigterm\n"
        f"      init_args: {init}\n"
    )
    args = ["--config", str(CONF), "--data.init_args.dataset.init_args.root", str(synthetic_copy),
            "--trainer.logger.init_args.save_dir", str(out), "--trainer.default_root_dir", str(out),
            "--trainer.max_epochs", "3"]  # fmt: skip
    log = tmp_path / "fit.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "occam_l2r", "fit", *args, "--config",
                                 str(overlay)], cwd=tmp_path, env=_env(), stdout=f,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        _wait_for(marker, proc, log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    text = log.read_text()
    assert proc.returncode == EXIT_SIGTERM, text[-3000:]
    run = out / NAME / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    # saved at the signal: mid-epoch 1 (3 steps per epoch), not epoch 0's end (step 3)
    state = _ckpt(last)
    assert (state["epoch"], state["global_step"]) == (1, 4) == (1, int(marker.read_text()))
    assert "fit stopped by SIGTERM" in text and str(last) in text
    assert f"--resume {run}" in text and "Traceback" not in text
    assert not (run / "test_metrics.json").exists()  # no test of a half-trained run

    cli = main(["fit", "--resume", str(run)])
    assert cli.trainer.global_step == 9 and cli.trainer.current_epoch == 3
    assert (run / "test_metrics.json").is_file()
    assert sorted(p.name for p in (out / NAME).iterdir()) == ["version_0"]
    assert _ckpt(last)["global_step"] == 9


@pytest.mark.slow
def test_sigterm_during_segment_then_rerun_stores_every_image_once(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq
    from _segment_tiny import SYNTH, check_store, detect_config, shared, write_config

    from occam_l2r.data.datasets.synthetic import SyntheticSpurious

    paths = shared(tmp_path_factory)
    dataset = SyntheticSpurious(root=str(paths["synthetic"]), **SYNTH)
    ids = [r.image_id for r in dataset.all_records()]
    store = tmp_path / "store"
    config = write_config(tmp_path / "seg.yaml", detect_config(paths, store, batch_size=2))
    log = tmp_path / "segment.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "occam_l2r", "segment", "--config",
                                 str(config)], env=_env(), stdout=f, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not list(store.glob("part-*.parquet")) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    text = log.read_text()
    assert proc.returncode == EXIT_SIGTERM, text[-3000:]  # stopped, not run to the end
    assert "segment stopped by SIGTERM" in text and "Traceback" not in text
    assert not (store / "summary.json").exists()
    assert not list(store.glob("part-*.parquet")), "the stopped run merged its batches"
    shards = [p for p in store.glob("shard-*.parquet")]
    stored = sum(pq.read_metadata(p).num_rows for p in shards)
    assert 0 < stored < len(ids)

    summary = main(["segment", "--config", str(config)])
    assert summary["skipped"] == stored and summary["computed"] == len(ids) - stored
    assert summary["stored"] == len(ids) and summary["duplicates_dropped"] == 0
    check_store(store, dataset, ids)  # every image once
