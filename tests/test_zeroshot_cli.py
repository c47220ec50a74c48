"""Zero-shot end to end through the CLI: test, predict, and fuse on the VLM logits files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from occam_l2r.cli import KNOWN_ERRORS, main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.errors import UserError, known_cause
from occam_l2r.logits import LogitsFile
from occam_l2r.weights import WeightsNotFoundError
from tests._clip_tiny import TINY_VIT, save_tiny_clip
from tests.conftest import TINY

CONFIG = Path(__file__).parents[1] / "configs" / "synthetic" / "zeroshot.yaml"
OUTPUTS = ["FULL", "FG_C", "BG_S", "CENTERCROP", "FG_C+FULL", "FG_C+BG_S"]
TESTS = ["test_id", "test_shift", "test_random"]


def _args(root: Path, out: Path, clip: Path | str) -> list[str]:
    d = "--data.init_args.dataset.init_args."
    sizes = [a for k, v in TINY.items() for a in (d + k, str(v))]
    return [
        "--config", str(CONFIG), d + "root", str(root), *sizes,
        "--model.init_args.model_name", TINY_VIT,
        "--model.init_args.pretrained", str(clip),
        "--model.init_args.prototype_cache", str(out / "prototypes"),
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "8",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight the other tests for cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tiny_synthetic_root, tmp_path_factory):
    """``test`` then ``predict`` of the synthetic zero-shot config with a tiny CLIP file."""
    out = tmp_path_factory.mktemp("zeroshot")
    clip = save_tiny_clip(out / "clip" / "open_clip.pt", seed=3)
    args = _args(tiny_synthetic_root, out, clip)
    tested = main(["test", *args])
    predicted = main(["predict", *args])
    return tested, predicted, out


@pytest.mark.slow
def test_test_logs_every_split_and_output(runs, capsys):
    tested, _, _ = runs
    metrics = json.loads(Path(tested.trainer.log_dir, "test_metrics.json").read_text())
    for split in TESTS:
        for output in OUTPUTS:
            assert 0.0 <= metrics[f"{split}/{output}/acc"] <= 1.0
            assert metrics[f"{split}/{output}/num_samples"] == 4 * TINY["test_per_class"]
            assert metrics[f"{split}/{output}/fallback_rate"] == 0.0  # gt masks: no fallback
        assert metrics[f"{split}/acc"] == metrics[f"{split}/FG_C+FULL/acc"]  # the primary output


@pytest.mark.slow
def test_predict_writes_one_logits_folder_per_output(runs):
    tested, predicted, _ = runs
    logits = Path(predicted.trainer.log_dir) / "logits"
    metrics = json.loads(Path(tested.trainer.log_dir, "test_metrics.json").read_text())
    files = {o: {s: LogitsFile.load(logits / o / f"{s}.npz") for s in TESTS} for o in OUTPUTS}
    for output, by_split in files.items():
        for split, lf in by_split.items():
            assert lf.view == output and lf.split == split
            assert lf.class_names == ["zero", "one", "two", "three"]
            assert lf.logits.shape == (4 * TINY["test_per_class"], 4) and not lf.fallback.any()
            acc = float(np.mean(lf.logits.argmax(1) == lf.labels))
            assert acc == pytest.approx(metrics[f"{split}/{output}/acc"], abs=1e-6)
    for split in TESTS:  # the fused rows are those of the more confident view
        fg, full, fused = (files[o][split].logits for o in ("FG_C", "FULL", "FG_C+FULL"))
        rows = zip(fused, fg, full, strict=True)
        assert all(np.array_equal(r, a) or np.array_equal(r, b) for r, a, b in rows)
    assert (logits / "FULL" / "train.npz").is_file() and (logits / "FULL" / "val.npz").is_file()


@pytest.mark.slow
def test_fuse_runs_on_the_zero_shot_logits(runs, tmp_path):
    tested, predicted, _ = runs
    logits = Path(predicted.trainer.log_dir) / "logits"
    config = {
        "runs": {v: [str(logits / v)] for v in ("FULL", "FG_C", "BG_S")},
        "output_dir": str(tmp_path / "fusion"),
        "pairs": [["FG_C", "FULL"], ["FG_C", "BG_S"]],
        "methods": ["max_conf"],
        "summary_methods": ["max_conf"],
        "test_splits": TESTS,
    }
    path = tmp_path / "fusion.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fuse", "--config", str(path)])
    metrics = json.loads(Path(tested.trainer.log_dir, "test_metrics.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "fusion" / "results.jsonl").open()]
    by_name = {(r["name"], r["method"]): r["metrics"] for r in records}
    for split in TESTS:  # fuse's ⊕max on the files = the task's fused output; views likewise
        for name, method in (
            ("FG_C+FULL", "max_conf"),
            ("FG_C+BG_S", "max_conf"),
            ("FULL", "model"),
        ):
            got = by_name[(name, method)][split]["acc"]
            assert got == pytest.approx(metrics[f"{split}/{name}/acc"], abs=1e-6)


@pytest.mark.slow
def test_missing_embedded_clip_is_named(tiny_synthetic_root, tmp_path):
    args = _args(tiny_synthetic_root, tmp_path, tmp_path / "no_clip.pt")
    args[args.index("--model.init_args.model_name") + 1] = "occam-tiny-convnext"
    with pytest.raises(Exception) as caught:  # jsonargparse chains the model's error
        main(["test", *args])
    known = known_cause(caught.value, KNOWN_ERRORS)
    assert isinstance(known, WeightsNotFoundError), caught.value
    assert "no_clip.pt" in str(known) and "configs/synthetic/clip.yaml" in str(known)


@pytest.mark.slow
def test_fit_is_refused(tiny_synthetic_root, tmp_path):
    clip = save_tiny_clip(tmp_path / "clip.pt")
    with pytest.raises(UserError, match="nothing to train"):
        main(["fit", *_args(tiny_synthetic_root, tmp_path, clip)])


class ImagenetDigits(SyntheticSpurious):
    """The tiny benchmark posing as four ImageNet-1k classes, for the imagenet1k label space."""

    @property
    def imagenet_class_indices(self) -> list[int]:
        return [10, 20, 30, 40]


@pytest.mark.slow
def test_imagenet1k_label_space_end_to_end(tiny_synthetic_root, tmp_path):
    clip = save_tiny_clip(tmp_path / "clip.pt")
    args = [
        *_args(tiny_synthetic_root, tmp_path, clip),
        "--data.init_args.dataset.class_path", f"{__name__}.ImagenetDigits",
        "--data.init_args.view", "[FULL]", "--data.init_args.test_splits", "[test_shift]",
        "--model.init_args.label_space", "imagenet1k",
    ]  # fmt: skip
    cli = main(["predict", *args])
    lf = LogitsFile.load(Path(cli.trainer.log_dir) / "logits" / "FULL" / "test_shift.npz")
    assert lf.logits.shape == (4 * TINY["test_per_class"], 1000) and len(lf.class_names) == 1000
    assert set(lf.labels.tolist()) == {10, 20, 30, 40}  # labels in the ImageNet label space
    args[args.index(f"{__name__}.ImagenetDigits")] = (
        "occam_l2r.data.datasets.synthetic.SyntheticSpurious"
    )
    with pytest.raises(UserError, match="imagenet_class_indices is None"):
        main(["test", *args])
