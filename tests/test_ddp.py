"""Two processes (DDP over gloo) on odd-sized splits: every sample counted and written once.

The embedded benchmark with 3 classes and 3 images per class and test split gives splits of 9
images, which 2 processes cannot share evenly; Lightning's distributed sampler would pad them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).parent / "conf" / "tiny_fg.yaml"
ODD = {"num_classes": 3, "train_per_class": 5, "val_per_class": 3, "test_per_class": 3}
DDP = ["--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu"]


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
def test_two_processes_count_every_sample_once(tmp_path):
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.logits import LogitsFile

    root = tmp_path / "data"
    ds = SyntheticSpurious(root=str(root), **ODD)
    ds.prepare()
    common = ["--config", str(CONF)]
    for key, value in {"root": str(root), **ODD}.items():
        common += [f"--data.init_args.dataset.init_args.{key}", str(value)]
    _run(["fit", *common, *DDP, "--trainer.logger.init_args.save_dir", str(tmp_path / "ddp")], tmp_path)  # fmt: skip
    run = tmp_path / "ddp" / "tiny" / "FG_C" / "version_0"
    ddp = json.loads((run / "test_metrics.json").read_text())
    for split in ("test_id", "test_shift", "test_random"):
        assert len(ds.records(split)) == 9
        assert ddp[f"{split}/num_samples"] == 9  # not 10: the sampler's padding is not counted

    ckpt = next((run / "checkpoints").glob("epoch=*.ckpt"))
    # predict over two processes: every sample exactly once, in the dataset's order
    _run(
        ["predict", *common, "--ckpt_path", str(ckpt), *DDP, "--trainer.logger", "false"], tmp_path
    )
    for split in ("train", "val", "test_shift"):
        lf = LogitsFile.load(run / "logits" / f"{split}.npz")
        if split == "train":
            assert len(lf.ids) == 15
        if split != "train":  # train/val are held out from one pool; the others are whole splits
            assert list(lf.ids) == [r.image_id for r in ds.records(split)]
        assert len(set(lf.ids)) == len(lf.ids)
    assert not (run / "logits" / ".parts").exists()

    # the same checkpoint tested in one process gives the same accuracies and counts
    # (test --ckpt_path K writes beside K's run: the DDP metrics were read above)
    _run(["test", *common, "--ckpt_path", str(ckpt)], tmp_path)
    single = json.loads((run / "test_metrics.json").read_text())
    for split in ("test_id", "test_shift", "test_random"):
        for key in ("acc", "macro_acc", "worst_group_acc", "num_samples"):
            assert ddp[f"{split}/{key}"] == pytest.approx(single[f"{split}/{key}"])

    # a fusion head predicting over two processes writes each fused sample once too
    fused = tmp_path / "fused"
    _run(["predict", "--config", "configs/fusion/weighted_logits.yaml", *DDP,
          "--data.init_args.input1", str(run), "--data.init_args.input2", str(run),
          "--model.init_args.fused_logits_dir", str(fused), "--trainer.logger", "false"],
         Path(__file__).parents[1])  # fmt: skip
    for split in ("val", "test_id"):
        lf = LogitsFile.load(fused / f"{split}.npz")
        assert list(lf.ids) == list(LogitsFile.load(run / "logits" / f"{split}.npz").ids)
