"""SAM 2 as a segmenter (issue 21, item 6): box-prompted masks for L2R² views and automatic
masks for OCCAM, through ``python -m occam_l2r segment`` with a tiny random SAM 2
(:func:`occam_l2r.segment.tiny.tiny_sam2`), and missing SAM 2 weights as one message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from _segment_tiny import SYNTH, check_store, detect_config, segment_config, shared, write_config

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.segment.sam2 import Sam2Automatic, Sam2BoxPrompter
from occam_l2r.segment.tiny import tiny_sam2
from occam_l2r.segmentation import score_kind
from occam_l2r.views import apply_view
from tests.test_config_errors import cli_in_process
from tests.test_errors import assert_one_message

BOX = "occam_l2r.segment.sam2.Sam2BoxPrompter"
AUTO = "occam_l2r.segment.sam2.Sam2Automatic"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    found = shared(tmp_path_factory)
    sam2 = tmp_path_factory.getbasetemp() / "segment_shared" / "sam2"
    if not (sam2 / "config.json").is_file():
        tiny_sam2(sam2)
    return {**found, "sam2": sam2}


@pytest.fixture(scope="module")
def dataset(paths: dict[str, Path]) -> SyntheticSpurious:
    return SyntheticSpurious(root=str(paths["synthetic"]), **SYNTH)


def _box_config(paths: dict[str, Path], store: Path, model: str, **data) -> dict:
    cfg = detect_config(paths, store, keep="all", **data)
    cfg["model"]["segmenter"]["init_args"]["sam"] = {
        "class_path": BOX,
        "init_args": {"model": model},
    }
    return cfg


def test_box_prompted_sam2_through_segment(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    store = tmp_path / "gdino_sam2"
    cfg = _box_config(paths, store, str(paths["sam2"]), splits=["val"], limit=4)
    main(["segment", "--config", str(write_config(tmp_path / "c.yaml", cfg))])
    recs = dataset.records("val")[:4]
    reader = check_store(store, dataset, [r.image_id for r in recs])
    assert reader.segmenter == "gdino+sam2"
    assert reader.manifest["config"]["sam"] == {
        "model": str(paths["sam2"]),
        "multimask_output": False,
    }
    assert sum(len(reader[r.image_id]) for r in recs) > 0, "the tiny detector finds boxes"
    for rec in recs:
        seg = reader[rec.image_id]
        assert len(seg.masks_rle) == len(seg), "one SAM 2 mask per kept box"
        if len(seg):
            view = apply_view("BG_S", dataset.read_image(rec), seg)
            assert view.image.shape == dataset.read_image(rec).shape


def test_sam2_masks_match_one_image_at_a_time(paths: dict[str, Path]) -> None:
    """The batched box decoder (each box gathers its own image's features) gives the masks of
    transformers' own per-image forward pass."""
    sam2 = Sam2BoxPrompter(str(paths["sam2"]))
    sam2.load()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(2)]
    images.append(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    sizes = [im.shape[:2] for im in images]
    boxes = [torch.tensor([[2.0, 3, 40, 30], [10, 5, 75, 45]]), torch.zeros(0, 4)]
    boxes.append(torch.tensor([[0.0, 0, 64, 64]]))
    pre = sam2.preprocessor()
    resized = [pre(im)["sam_image"] for im in images]
    batched = sam2.masks(resized, sizes, boxes)
    for im, size, b, got in zip(resized, sizes, boxes, batched, strict=True):
        assert got.shape == (len(b), *size) and got.dtype == torch.bool
        if not len(b):
            continue
        with torch.no_grad():
            pixels = (im[None].float() - sam2.model.occam_pixel_mean) / sam2.model.occam_pixel_std
            scale = torch.tensor([64 / size[1], 64 / size[0]] * 2)
            out = sam2.model(
                pixel_values=pixels, input_boxes=(b * scale)[None], multimask_output=False
            )
        ref = torch.nn.functional.interpolate(
            out.pred_masks[0, :, :1], size=size, mode="bilinear", align_corners=False
        )
        assert torch.equal(got, ref[:, 0] > 0)


def test_sam2_automatic_masks_for_occam(
    paths: dict[str, Path], dataset: SyntheticSpurious, tmp_path: Path
) -> None:
    auto = {
        "class_path": "occam_l2r.segment.segmenters.AutomaticMasks",
        "init_args": {
            "sam": {
                "class_path": AUTO,
                "init_args": {
                    "model": str(paths["sam2"]),
                    "points_per_side": 4,
                    "pred_iou_thresh": 0.0,
                    "stability_score_thresh": 0.0,
                    "max_masks": 4,
                },
            }
        },
    }
    store = tmp_path / "auto2"
    cfg = segment_config(paths["synthetic"], auto, store, splits=["test_id"], batch_size=2)
    main(["segment", "--config", str(write_config(tmp_path / "auto.yaml", cfg))])
    ids = [r.image_id for r in dataset.records("test_id")]
    reader = check_store(store, dataset, ids)
    assert reader.segmenter == "sam2_auto" and score_kind(reader.segmenter) == "sam_predicted_iou"
    assert reader.manifest["config"]["sam"]["pred_iou_thresh"] == 0.0
    for image_id in ids:
        seg = reader[image_id]
        assert 1 <= len(seg) <= 4 and seg.has_masks and set(seg.label_ids.tolist()) == {-1}
        for i in range(len(seg)):
            ys, xs = np.nonzero(seg.mask(i))
            assert seg.boxes[i].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # the crop layers encode each crop themselves: same generator, no precomputed features
    crops = Sam2Automatic(str(paths["sam2"]), points_per_side=2, pred_iou_thresh=0.0,
                          stability_score_thresh=0.0, crop_n_layers=1)  # fmt: skip
    crops.load()
    image = dataset.read_image(dataset.records("test_id")[0])
    masks, scores = crops.generate([image], [crops.preprocessor()(image)["sam_image"]])[0]
    assert masks and all(m.shape == image.shape[:2] for m in masks)
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("kind", ["box", "auto"])
def test_missing_sam2_weights_are_one_message(
    kind: str, paths: dict[str, Path], tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = "facebook/sam2.1-hiera-large"
    cache = tmp_path / "empty_hub"
    if kind == "box":
        cfg = _box_config(paths, tmp_path / "store", model)
        cfg["model"]["segmenter"]["init_args"]["sam"]["init_args"]["cache_dir"] = str(cache)
    else:
        sam = {"class_path": AUTO, "init_args": {"model": model, "cache_dir": str(cache)}}
        section = {
            "class_path": "occam_l2r.segment.segmenters.AutomaticMasks",
            "init_args": {"sam": sam},
        }
        cfg = segment_config(paths["synthetic"], section, tmp_path / "store")
    conf = write_config(tmp_path / "c.yaml", cfg)
    proc = cli_in_process(["segment", "--config", conf], tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "segment", model, "hf download", "save_pretrained")
    assert not (tmp_path / "store").exists(), "nothing written before the weights check"
