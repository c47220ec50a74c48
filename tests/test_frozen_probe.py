"""Frozen-feature probes (issue 18.1): the feature store is computed once and reused, a changed
view or split is recomputed, probe logits fuse like any run's, missing weights fail fast, and
two processes count every sample once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from occam_l2r.cli import main as cli_main
from occam_l2r.commands.lightning import main as lightning_main
from occam_l2r.data.feature_store import FeatureStore
from occam_l2r.logits import LogitsFile
from occam_l2r.models.frozen import FrozenBackbone, build_frozen

CONF = Path(__file__).parent / "conf" / "tiny_probe.yaml"
REPO = Path(__file__).parents[1]


def _fit(tmp_path: Path, *extra: str):
    """``fit --predict_after_fit`` of the tiny probe; returns the CLI object."""
    args = ["fit", "--config", str(CONF),
            "--data.init_args.dataset.init_args.root", str(tmp_path / "data"),
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
            "--predict_after_fit", "true", *extra]  # fmt: skip
    return lightning_main(args)


def test_features_are_computed_once_and_reused(tmp_path):
    first = _fit(tmp_path)
    store = first.datamodule.feature_store
    assert store.batches_computed > 0
    assert set(store.computed) == {"train", "val", "test_id", "test_shift", "test_random"}
    run = Path(first.trainer.log_dir)
    logits = LogitsFile.load(run / "logits" / "test_shift.npz")
    assert logits.view == "BG_S" and logits.num_classes == 4
    assert logits.config["task"] == "ProbeTask"
    assert logits.config["backbone"] == "frozen timm:convnextv2_atto"
    feats = store.load("test_shift")
    assert feats.config["kind"] == "features" and feats.logits.shape == (8, 320)
    assert list(feats.ids) == list(logits.ids)

    # a second probe (another head) on the same backbone, view and transform: no image is read
    second = _fit(tmp_path, "--model.init_args.hidden_dim", "16")
    again = second.datamodule.feature_store
    assert again.folder == store.folder
    assert again.batches_computed == 0 and again.computed == []

    # another view is another entry of the store
    third = _fit(tmp_path, "--data.init_args.view", "FULL", "--trainer.max_epochs", "1")
    assert third.datamodule.feature_store.folder != store.folder
    assert third.datamodule.feature_store.batches_computed > 0


def test_a_probe_checkpoint_tests_on_the_same_features(tmp_path):
    """`test --ckpt_path` of a probe (a random backbone: built from a fixed seed) reads the
    features its fit stored and gives the fit's numbers."""
    fit = _fit(tmp_path)
    run = Path(fit.trainer.log_dir)
    scored = json.loads((run / "test_metrics.json").read_text())
    best = fit.trainer.checkpoint_callback.best_model_path
    test = lightning_main(["test", "--config", str(CONF),
                           "--data.init_args.dataset.init_args.root", str(tmp_path / "data"),
                           "--ckpt_path", best])  # fmt: skip
    assert test.datamodule.feature_store.folder == fit.datamodule.feature_store.folder
    assert test.datamodule.feature_store.batches_computed == 0
    tested = json.loads((run / "test_metrics.json").read_text())
    for key in ("test_id/acc", "test_shift/acc", "test_random/acc"):
        assert tested[key] == pytest.approx(scored[key]), key


def test_the_stored_features_are_the_backbones_on_the_eval_view(tmp_path):
    cli = _fit(tmp_path, "--trainer.max_epochs", "1")
    dm = cli.datamodule
    batch = next(iter(dm.eval_dataloader("val")))  # the image loader of the split
    expected = build_frozen(FrozenBackbone("timm", "convnextv2_atto", pretrained=False))
    # the random weights are the run's (seeded): compare with the run's own extractor instead
    got = dm.extractor(batch["image"])
    stored = dm.feature_store.load("val").logits[: len(got)]
    torch.testing.assert_close(torch.from_numpy(np.asarray(stored)), got)
    assert expected.feature_dim == got.shape[1]


def test_a_changed_split_or_a_foreign_file_is_recomputed(tmp_path):
    cli = _fit(tmp_path, "--trainer.max_epochs", "1")
    store = cli.datamodule.feature_store
    assert store.has("val", store.load("val").config["samples"])
    assert not store.has("val", "another split's samples")
    # a logits file put in its place is not features
    lf = store.load("val")
    LogitsFile(lf.ids, lf.labels, np.zeros((len(lf.ids), 4), np.float32), split="val").save(
        store.path("val")
    )
    assert not store.has("val", lf.config["samples"])
    assert not FeatureStore(store.folder.parent, {"other": 1}).has("val")


def test_probe_logits_fuse_with_each_other(tmp_path):
    bg = Path(_fit(tmp_path).trainer.log_dir)
    full = Path(_fit(tmp_path, "--data.init_args.view", "FULL").trainer.log_dir)
    cfg = tmp_path / "fuse.yaml"
    cfg.write_text(yaml.safe_dump({
        "runs": {"FULL": [str(full)], "BG_S": [str(bg)]}, "output_dir": str(tmp_path / "fused"),
        "pairs": [["FULL", "BG_S"]], "methods": ["max_conf"], "test_splits": ["test_shift"],
        "fallback": "none", "baseline": "FULL",
    }))  # fmt: skip
    cli_main(["fuse", "--config", str(cfg)])
    rows = [
        json.loads(line) for line in (tmp_path / "fused" / "results.jsonl").read_text().splitlines()
    ]
    assert any("max_conf" in r["cell"] for r in rows)


def test_missing_backbone_weights_fail_fast_with_one_message(tmp_path):
    """`python -m occam_l2r fit` with a backbone whose weights file is not there: exit 3 and one
    message naming the file and the probe's option, before any data is prepared."""
    args = ["fit", "--config", str(CONF),
            "--data.init_args.dataset.init_args.root", str(tmp_path / "data"),
            "--data.init_args.backbone.kind", "open_clip",
            "--data.init_args.backbone.name", "occam-tiny-convnext",
            "--data.init_args.backbone.checkpoint_path", str(tmp_path / "missing.pt")]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("OCCAM_L2R_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "occam_l2r", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("occam_l2r fit: error:")]
    assert "missing.pt" in line and "--data.init_args.backbone.checkpoint_path" in line
    assert "Traceback" not in proc.stderr and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_two_processes_compute_and_predict_every_sample_once(tmp_path):
    """DDP over gloo on odd-sized splits (9 images): each split's features and logits hold every
    sample once, in the dataset's order, and the test counts are 9."""
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious

    odd = {"num_classes": 3, "train_per_class": 5, "val_per_class": 3, "test_per_class": 3}
    root = tmp_path / "data"
    ds = SyntheticSpurious(root=str(root), **odd)
    ds.prepare()
    args = ["fit", "--config", str(CONF), "--predict_after_fit", "true",
            "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.accelerator", "cpu",
            "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]  # fmt: skip
    for key, value in {"root": str(root), **odd}.items():
        args += [f"--data.init_args.dataset.init_args.{key}", str(value)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "occam_l2r", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "runs" / "tiny" / "probe_BG_S" / "version_0"
    metrics = json.loads((run / "test_metrics.json").read_text())
    (folder,) = (root / "features").iterdir()
    for split in ("test_id", "test_shift", "test_random"):
        ids = [r.image_id for r in ds.records(split)]
        assert len(ids) == 9 and metrics[f"{split}/num_samples"] == 9
        assert list(LogitsFile.load(folder / f"{split}.npz").ids) == ids
        assert list(LogitsFile.load(run / "logits" / f"{split}.npz").ids) == ids
    assert not (folder / ".parts").exists()


def test_a_dinov2_backbone_by_name_at_the_views_size():
    """timm's DINOv2 (built for 518 px) as a frozen backbone at another size: its position
    embeddings are set to the views' size (random weights here; by name with weights offline)."""
    extractor = build_frozen(
        FrozenBackbone("timm", "vit_small_patch14_dinov2", pretrained=False), 56
    )
    out = extractor(torch.zeros(2, 3, 56, 56, dtype=torch.uint8))
    assert out.shape == (2, 384) and extractor.feature_dim == 384


def test_classify_reads_a_probe_run_like_predict(tmp_path):
    """`classify`'s view model of a probe run (its frozen backbone rebuilt from the checkpoint's
    DataModule settings, its head from the checkpoint) gives `predict`'s logits on the same
    images; `export` refuses it with one message."""
    from occam_l2r.classify.models import ViewModel
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious

    run = Path(_fit(tmp_path, "--data.init_args.view", "FULL").trainer.log_dir)
    model = ViewModel("FULL", run, image_size=32)
    assert not model.exportable and model.num_classes == 4
    ds = SyntheticSpurious(root=str(tmp_path / "data"), train_per_class=6, val_per_class=2,
                           test_per_class=2)  # fmt: skip
    records = ds.records("test_id")
    got = model.logits([ds.read_image(r) for r in records])
    ref = LogitsFile.load(run / "logits" / "test_id.npz")
    assert list(ref.ids) == [r.image_id for r in records]
    np.testing.assert_allclose(got, ref.logits, rtol=1e-4, atol=1e-4)
    # export holds classifiers only: a probe view is refused with one message naming it
    from occam_l2r.classify.portable import ExportError
    from occam_l2r.classify.system import System

    system = System.__new__(System)
    system.models = {"FULL": model}
    with pytest.raises(ExportError, match="probes on frozen backbones"):
        system.export(tmp_path / "export")
    assert not (tmp_path / "export").exists()
