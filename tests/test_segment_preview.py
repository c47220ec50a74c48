"""``python -m occam_l2r segment-preview``: the PNG grid and the TensorBoard image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _segment_tiny import SYNTH, detect_config, segment_config, shared, write_config
from PIL import Image

from occam_l2r.cli import main
from occam_l2r.commands.preview import HEADER, _fit, preview_row
from occam_l2r.commands.preview import main as preview_main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.store import Segmentation
from occam_l2r.views import apply_view


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return shared(tmp_path_factory)


def test_preview_png_and_tensorboard(paths: dict[str, Path], tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = tmp_path / "store"
    gt = {"class_path": "occam_l2r.segment.segmenters.GroundTruth"}
    cfg = segment_config(paths["synthetic"], gt, store, splits=["test_shift"])
    config = write_config(tmp_path / "gt.yaml", cfg)
    main(["segment", "--config", str(config)])
    main(
        [
            "segment-preview",
            "--config",
            str(config),
            "--preview.num_images",
            "3",
            "--preview.cell",
            "96",
        ]
    )
    out = {"png": store / "preview.png", "tensorboard": str(store / "tensorboard")}
    grid = np.asarray(Image.open(out["png"]))
    assert grid.shape == (3 * (96 + HEADER), 4 * 96, 3)
    events = EventAccumulator(out["tensorboard"])
    events.Reload()
    tags = events.Tags()["images"]
    assert tags == ["segment_preview/gt"]
    image = events.Images(tags[0])[0]
    assert (image.height, image.width) == grid.shape[:2]
    # the store must hold the previewed images
    with pytest.raises(ValueError, match="holds none"):
        main(["segment-preview", "--config", str(config), "--data.splits", "[val]"])


def test_preview_row_marks_the_full_fallback(paths: dict[str, Path], tmp_path: Path) -> None:
    ds = SyntheticSpurious(root=str(paths["synthetic"]), **SYNTH)
    rec = ds.records("val")[0]
    image = ds.read_image(rec)
    empty = Segmentation(image_id=rec.image_id, width=image.shape[1], height=image.shape[0])
    row = preview_row(image, empty, cell=64, score_threshold=0.0)
    assert row.shape == (64 + HEADER, 4 * 64, 3)
    fg_panel = row[HEADER:, 2 * 64 : 3 * 64]
    assert np.array_equal(fg_panel, _fit(image, 64)), "no detection: FG_C falls back to FULL"
    assert apply_view("FG_C", image, empty).fallback == "no_detection"
    seg = Segmentation.from_masks(rec.image_id, ds.gt_masks(rec), labels=["x"])
    row = preview_row(image, seg, cell=64, score_threshold=0.0)
    bg_panel = row[HEADER:, 3 * 64 :]
    assert np.array_equal(bg_panel, _fit(apply_view("BG_S", image, seg).image, 64))
    assert not np.array_equal(bg_panel, _fit(image, 64))


def test_preview_of_a_boxes_only_store_uses_bg_b(paths: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "boxes"
    config = write_config(
        tmp_path / "c.yaml",
        detect_config(paths, store, detector="owlv2", with_sam=False, splits=["val"], limit=2),
    )
    main(["segment", "--config", str(config)])
    out = preview_main(
        ["--config", str(config), "--preview.num_images", "2", "--preview.tensorboard", ""]
    )
    assert "tensorboard" not in out
    assert Image.open(out["png"]).size == (4 * 160, 2 * (160 + HEADER))
