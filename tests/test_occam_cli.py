"""``python -m occam_l2r occam`` end to end (in process) on the tiny embedded benchmark: a regions
store from ``configs/segment/synthetic_regions.yaml`` (several candidates per image, some images
left out of it), ``configs/synthetic/occam.yaml`` with a tiny random ViT CLIP and all three apply
modes, and the Table-8-like table it writes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.logits import LogitsFile
from occam_l2r.store import SegmentationStore
from tests._clip_tiny import save_tiny_clip
from tests.conftest import TINY, clean_copy

CONFIGS = Path(__file__).parents[1] / "configs"
QUIET = ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]
SPLITS = ["test_id", "test_shift", "test_random"]
STORED = 6  # images of each test split in the store (of 8); the other 2 have no masks


def _dataset_args(root: Path) -> list[str]:
    args = ["--data.dataset.init_args.root", str(root)]
    for key, value in TINY.items():
        args += [f"--data.dataset.init_args.{key}", str(value)]
    return args


@pytest.mark.slow
def test_occam_verb_writes_table_8(tiny_synthetic_root: Path, tmp_path: Path):
    root = tmp_path / "tiny"
    clean_copy(tiny_synthetic_root, root)
    segment = [
        "segment", "--config", str(CONFIGS / "segment" / "synthetic_regions.yaml"),
        *_dataset_args(root), "--data.splits", str(SPLITS), "--data.limit", str(STORED), *QUIET,
    ]  # fmt: skip
    main(segment)
    store = SegmentationStore(root / "segmentations" / "synthetic_regions")
    assert len(store) == STORED * len(SPLITS)
    assert min(len(store[i]) for i in store.ids()) >= 3, "several candidates per image"

    weights = save_tiny_clip(tmp_path / "tiny_vit.pt")
    out = tmp_path / "occam"
    result = main([
        "occam", "--config", str(CONFIGS / "synthetic" / "occam.yaml"), *_dataset_args(root),
        "--model.model_name", "occam-tiny-vit", "--model.pretrained", str(weights),
        "--model.prototype_cache", str(tmp_path / "prototypes"),
        "--data.apply_modes", "[crop_resize_gray, crop_resize_original, alpha]",
        "--data.on_missing", "empty", "--trainer.default_root_dir", str(out), *QUIET,
    ])  # fmt: skip

    table = out / "occam_table.md"
    assert result["table"]["markdown"] == str(table) and table.is_file()
    text = table.read_text()
    assert (
        "| Masks source | FG det | Apply Mask | BG | test_id | test_shift | test_random |" in text
    )
    assert "test_id 2/8, test_shift 2/8, test_random 2/8" in text
    rows = list(csv.DictReader(open(out / "occam_table.csv")))
    assert len(rows) == (2 + 3 * 4) * len(SPLITS)  # FULL, α whole image, 3 modes x 4 scores
    for row in rows:
        assert float(row["num_samples"]) == 8
        masked = row["source"] == "synthetic_regions"
        assert float(row["no_masks"]) == (2 if masked else 0)
        if masked and row["fg_det"] == "bbox_iou":
            assert float(row["object_iou"]) == pytest.approx(1.0), "bbox_iou finds the object"
    # zero α weights: the α-channel encoder is the RGB model on the whole image, so every
    # α-channel row equals the whole-image row
    for split in SPLITS:
        full = next(
            r for r in rows if r["split"] == split and r["source"] == "-" and r["fg_det"] == "-"
        )
        alpha = [r for r in rows if r["split"] == split and r["apply_mask"] == "α-channel"]
        assert len(alpha) == 1 + 4 and {r["acc"] for r in alpha} == {full["acc"]}
    metrics = result["metrics"]
    assert "test_shift/synthetic_regions/crop_resize_gray/oracle/acc" in metrics
    assert metrics["test_shift/fallback_rate"] == pytest.approx(2 / 8)


@pytest.mark.slow
def test_predict_writes_logits_per_row(tiny_synthetic_root: Path, tmp_path: Path):
    """The same classes under the Lightning ``predict`` verb: one folder of logits per row."""
    root = tmp_path / "tiny"
    clean_copy(tiny_synthetic_root, root)
    weights = save_tiny_clip(tmp_path / "tiny_vit.pt")
    dataset = {
        "class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
        "init_args": {"root": str(root), **TINY},
    }
    config = {
        "trainer": {"accelerator": "cpu", "logger": False, "enable_progress_bar": False},
        "model": {
            "class_path": "occam_l2r.tasks.occam.OccamTask",
            "init_args": {
                "model_name": "occam-tiny-vit", "pretrained": str(weights), "scores": ["oracle"],
                "prototype_cache": None, "logits_dir": str(tmp_path / "logits"),
            },
        },
        "data": {
            "class_path": "occam_l2r.data.occam_datamodule.OccamDataModule",
            "init_args": {
                "dataset": dataset, "mask_sources": ["gt"], "apply_modes": ["crop_resize_gray"],
                "splits": ["test_id"], "image_size": 64, "num_workers": 0,
            },
        },
    }  # fmt: skip
    cfg = tmp_path / "occam_predict.yaml"
    cfg.write_text(yaml.safe_dump(config))
    main(["predict", "--config", str(cfg)])
    for row in ("FULL", "gt/crop_resize_gray/oracle"):
        logits = LogitsFile.load(tmp_path / "logits" / row / "test_id.npz")
        assert logits.logits.shape == (8, 4) and logits.view == row
