"""The trainable fusion heads fit, test and predict through the real CLI (LightningCLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.data.logits_datamodule import LogitsDataModule
from occam_l2r.fusion.synthetic import write_synthetic_runs
from occam_l2r.logits import LogitsFile

CONFIGS = Path(__file__).parents[1] / "configs" / "fusion"
SIZES = {"train": 200, "val": 100, "test_id": 100, "test_shift": 100}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[str]]:
    return write_synthetic_runs(
        tmp_path_factory.mktemp("logits"), num_classes=4, seeds=1, sizes=SIZES
    )


def args(head: str, runs: dict, out: Path, *extra: str) -> list[str]:
    return [
        "--config", str(CONFIGS / f"{head}.yaml"),
        "--data.init_args.input1", runs["FG_C"][0],
        "--data.init_args.input2", runs["BG_S"][0],
        "--data.init_args.test_splits", "[test_id, test_shift]",
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.default_root_dir", str(out),
        "--trainer.max_epochs", "3",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("head", ["temperature", "weighted_logits", "concat_fc"])
def test_head_fit_test_predict_through_cli(head, runs, tmp_path):
    out = tmp_path / "runs"
    main(["fit", *args(head, runs, out)])
    run = out / "fusion" / head / "version_0"
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents*"))
    metrics = json.loads((run / "test_metrics.json").read_text())
    for split in ("test_id", "test_shift"):
        for key in ("acc", "macro_acc", "nll"):
            assert np.isfinite(metrics[f"{split}/{key}"])
        assert 0.0 <= metrics[f"{split}/acc"] <= 1.0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    # the test metrics come from the best checkpoint (last.ckpt is the latest epoch's state)
    ckpt = next((run / "checkpoints").glob("epoch=*.ckpt"))

    main(["predict", *args(head, runs, out), "--ckpt_path", str(ckpt)])
    # predict writes the splits the DataModule knows: its train split (val for temperature
    # scaling, which is fitted on val), val and the test splits
    splits = [s for s in SIZES if s != "train" or head != "temperature"]
    assert sorted(p.stem for p in (run / "fused_logits").glob("*.npz")) == sorted(splits)
    for split in splits:
        n = SIZES[split]
        lf = LogitsFile.load(run / "fused_logits" / f"{split}.npz")
        assert lf.logits.shape == (n, 4) and np.isfinite(lf.logits).all()
        assert lf.view == "FG_C+BG_S" and lf.split == split
    # the exported fused logits reproduce the logged test accuracy
    lf = LogitsFile.load(run / "fused_logits" / "test_shift.npz")
    assert float((lf.logits.argmax(1) == lf.labels).mean()) == pytest.approx(
        metrics["test_shift/acc"], abs=1e-6
    )


def test_single_input_temperature_and_input_errors(runs, tmp_path):
    out = tmp_path / "runs"
    main([
        "fit", *args("temperature", runs, out, "--model.init_args.num_inputs", "1"),
        "--data.init_args.input2", "null",
    ])  # fmt: skip
    assert (out / "fusion" / "temperature" / "version_0" / "test_metrics.json").is_file()
    with pytest.raises(ValueError, match="expects 2 inputs, the data gives 1"):
        main(["fit", *args("weighted_logits", runs, out), "--data.init_args.input2", "null"])


def test_logits_datamodule_checks_alignment(runs, tmp_path):
    other = write_synthetic_runs(tmp_path, num_classes=3, seeds=1, sizes={"train": 10, "val": 10})
    dm = LogitsDataModule(runs["FG_C"][0], other["BG_S"][0], test_splits=[])
    with pytest.raises(ValueError, match="class counts differ"):
        dm.setup("fit")
    dm = LogitsDataModule(runs["FG_C"][0], runs["BG_S"][0], test_splits=["test_id"])
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    assert batch["z1"].shape == (100, 4) and batch["z2"].shape == (100, 4) and dm.num_classes == 4


@pytest.mark.slow
@pytest.mark.parametrize("head", ["weighted_logits", "concat_fc"])
def test_fit_and_fuse_ablation_give_the_same_head(head, runs, tmp_path):
    """Issue 9.8: the ablation chooses the epoch on val as `fit` does; same seed, same numbers."""
    out = tmp_path / "runs"
    main(["fit", *args(head, runs, out, "--seed_everything", "0",
                       "--data.init_args.batch_size", "64")])  # fmt: skip
    fitted = json.loads((out / "fusion" / head / "version_0" / "test_metrics.json").read_text())
    lr = yaml.safe_load((CONFIGS / f"{head}.yaml").read_text())["model"]["init_args"]["lr"]
    sweep = tmp_path / "sweep"
    cfg = tmp_path / "fuse.yaml"
    cfg.write_text(
        yaml.safe_dump({
            "runs": {"FG_C": runs["FG_C"], "BG_S": runs["BG_S"]}, "output_dir": str(sweep),
            "pairs": [["FG_C", "BG_S"]], "baseline": "FG_C", "methods": [head],
            "test_splits": ["test_id", "test_shift"], "fallback": "none",
            "heads": {"max_epochs": 3, "batch_size": 64, "lr": lr, "hidden_dim": 64},
        })
    )  # fmt: skip
    main(["fuse", "--config", str(cfg)])
    rec = next(
        json.loads(line)
        for line in (sweep / "results.jsonl").read_text().splitlines()
        if f'"method": "{head}"' in line
    )
    for split in ("test_id", "test_shift"):
        for metric in ("acc", "macro_acc"):
            assert rec["metrics"][split][metric] == pytest.approx(
                fitted[f"{split}/{metric}"], abs=1e-6
            ), (split, metric)
    ckpt = next((out / "fusion" / head / "version_0" / "checkpoints").glob("epoch=*.ckpt"))
    assert rec["params"]["best_epoch"] == int(ckpt.name.split("-")[0].removeprefix("epoch="))
