"""Multi-process training: ``fit`` with 2 CPU processes (DDP over gloo) syncs its metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"


def _run(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).parents[1]))
    proc = subprocess.run(
        [sys.executable, "-m", "occam_l2r", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_fit_two_processes_syncs_metrics(tmp_path, tiny_synthetic_root):
    root = tmp_path / "data"
    shutil.copytree(tiny_synthetic_root, root)
    common = ["--config", str(CONF), "--data.init_args.dataset.init_args.root", str(root)]
    _run(["fit", *common, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu",
          "--trainer.logger.init_args.save_dir", str(tmp_path / "ddp")], tmp_path)  # fmt: skip
    run = tmp_path / "ddp" / "tiny" / "FG_C" / "version_0"
    ddp = json.loads((run / "test_metrics.json").read_text())
    # each rank saw half of each 8-image test split; the logged count is the synced total
    for split in ("test_id", "test_shift", "test_random"):
        assert ddp[f"{split}/num_samples"] == 8

    ckpt = next((run / "checkpoints").glob("epoch=*.ckpt"))
    # predict over two processes: each split's logits file holds every sample exactly once
    _run(["predict", *common, "--ckpt_path", str(ckpt), "--trainer.devices", "2", "--trainer.strategy", "ddp",
          "--trainer.accelerator", "cpu", "--trainer.logger.init_args.save_dir", str(tmp_path / "pred")], tmp_path)  # fmt: skip
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.logits import LogitsFile
    from tests.conftest import TINY

    ds = SyntheticSpurious(root=str(root), **TINY)
    for split in ("train", "val", "test_shift"):
        lf = LogitsFile.load(run / "logits" / f"{split}.npz")
        assert sorted(lf.ids) == sorted(r.image_id for r in ds.records(split))

    # the same checkpoint tested in one process gives the same (synced) accuracies
    _run(
        [
            "test",
            *common,
            "--ckpt_path",
            str(ckpt),
            "--trainer.logger.init_args.save_dir",
            str(tmp_path / "single"),
        ],
        tmp_path,
    )
    single = json.loads(
        (tmp_path / "single" / "tiny" / "FG_C" / "version_0" / "test_metrics.json").read_text()
    )
    for split in ("test_id", "test_shift", "test_random"):
        assert ddp[f"{split}/acc"] == pytest.approx(single[f"{split}/acc"])
        assert ddp[f"{split}/macro_acc"] == pytest.approx(single[f"{split}/macro_acc"])
