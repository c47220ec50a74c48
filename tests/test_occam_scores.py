"""OCCAM's plain functions: each foreground score on hand-made masks, the score registry, the
per-image choice, the apply modes and the Table-8 table (no model, no Lightning)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from occam_l2r.occam.apply import (
    apply_mask,
    crop_resize_original,
    fit_square,
    whole_image,
)
from occam_l2r.occam.ground_truth import mask_iou
from occam_l2r.occam.scores import (
    FOREGROUND_SCORES,
    Candidates,
    MissingGroundTruthError,
    bbox_iou,
    check_scores,
    choose,
    ens_entropy,
    max_prob,
    oracle,
)
from occam_l2r.occam.table import Variant, results_from_values, variants, write_table
from occam_l2r.views import GRAY, crop_resize_gray

# three applied masks of one image (3 classes): a confident wrong one, a hesitant right one
# (label 1), a flat one
LOGITS = torch.tensor([[9.0, 0.0, 0.0], [1.0, 3.0, 0.0], [0.5, 0.4, 0.6]])


def test_max_prob_picks_the_mask_the_classifier_is_most_confident_about():
    s = max_prob(LOGITS)
    assert torch.allclose(s, torch.softmax(LOGITS, -1).amax(-1))
    assert int(s.argmax()) == 0


def test_oracle_picks_the_mask_most_likely_of_the_true_class():
    s = oracle(LOGITS, torch.tensor([1, 1, 1]))
    assert torch.allclose(s, torch.softmax(LOGITS, -1)[:, 1])
    assert int(s.argmax()) == 1
    assert torch.equal(oracle(LOGITS, torch.tensor([-1, -1, -1])), torch.zeros(3))


def test_ens_entropy_is_one_minus_the_entropy_of_the_mean_prediction():
    p = torch.softmax(LOGITS, -1)
    single = ens_entropy(LOGITS)
    assert torch.allclose(single, 1 - (-(p * p.log()).sum(-1)))
    assert int(single.argmax()) == 0  # the one-hot-like mask
    # two members that disagree on mask 0 and agree on mask 1: the agreed mask wins
    members = torch.stack(
        [LOGITS, torch.tensor([[0.0, 0.0, 9.0], [1.0, 3.0, 0.0], [0.5, 0.4, 0.6]])], 1
    )
    ens = ens_entropy(members)
    mean = torch.softmax(members, -1).mean(1)
    assert torch.allclose(ens, 1 + (mean * mean.log()).sum(-1))
    assert int(ens.argmax()) == 1


def _candidates(ensemble: torch.Tensor | None = None, box=None) -> Candidates:
    """LOGITS as the three masks of one image of label 1, the masks three 4x4 quarters."""
    masks = np.zeros((3, 4, 4), bool)
    masks[0, :2, :2], masks[1, :2, 2:], masks[2, 2:, :2] = True, True, True
    owner = torch.zeros(3, dtype=torch.long)
    return Candidates(LOGITS, torch.ones(3, dtype=torch.long), owner, [masks], [box], ensemble)


def test_the_registry_holds_the_papers_scores_in_table_order():
    assert list(FOREGROUND_SCORES)[:4] == ["max_prob", "oracle", "ens_entropy", "bbox_iou"]
    assert [n for n, s in FOREGROUND_SCORES.items() if s.uses_ensemble] == ["ens_entropy"]
    members = torch.stack([LOGITS, LOGITS.flip(-1)], 1)
    c = _candidates(members, box=(2, 0, 4, 2))  # the box is mask 1
    assert torch.equal(FOREGROUND_SCORES["max_prob"].compute(c), max_prob(LOGITS))
    assert torch.equal(FOREGROUND_SCORES["oracle"].compute(c), oracle(LOGITS, torch.ones(3)))
    assert torch.equal(FOREGROUND_SCORES["ens_entropy"].compute(c), ens_entropy(members))
    no_ensemble = FOREGROUND_SCORES["ens_entropy"].compute(_candidates())
    assert torch.equal(no_ensemble, ens_entropy(LOGITS))
    assert FOREGROUND_SCORES["bbox_iou"].compute(c).argmax() == 1
    with pytest.raises(MissingGroundTruthError, match="drop bbox_iou"):
        FOREGROUND_SCORES["bbox_iou"].compute(_candidates())
    with pytest.raises(ValueError, match="model.scores=.*'blur'.*choose from.*max_prob"):
        check_scores(["max_prob", "blur"])
    with pytest.raises(ValueError, match="choose from"):
        check_scores([])


def test_bbox_iou_is_pixel_iou_of_mask_and_filled_box():
    h, w = 10, 12
    inside = np.zeros((h, w), bool)
    inside[2:6, 3:7] = True  # the box exactly
    half = np.zeros((h, w), bool)
    half[2:6, 3:5] = True  # half of it
    elsewhere = np.zeros((h, w), bool)
    elsewhere[7:9, 8:11] = True
    s = bbox_iou([half, inside, elsewhere], (3, 2, 7, 6))
    assert s[1] == pytest.approx(1.0)
    assert s[0] == pytest.approx((8 + 1e-6) / (16 + 1e-6))
    assert s[2] == pytest.approx(1e-6 / (16 + 6 + 1e-6))
    assert int(np.argmax(s)) == 1
    assert len(bbox_iou([], (0, 0, 1, 1))) == 0
    assert np.array_equal(bbox_iou(np.stack([half, inside, elsewhere]), (3, 2, 7, 6)), s)
    assert bbox_iou([inside], (3.5, 2.5, 6.2, 5.1))[0] == pytest.approx(1.0)  # rounded outward


def test_mask_iou_with_the_object():
    obj = np.zeros((6, 6), bool)
    obj[:3] = True
    top_left = np.zeros((6, 6), bool)
    top_left[:3, :3] = True
    iou = mask_iou([obj, top_left, ~obj], obj)
    assert iou.dtype == np.float32 and iou.tolist() == [1.0, 0.5, 0.0]
    assert np.isnan(mask_iou([obj], None)).all() and len(mask_iou([], obj)) == 0


def test_choose_takes_the_best_mask_per_image_first_on_ties_and_minus_one_without_masks():
    scores = torch.tensor([0.2, 0.9, 0.5, 0.7, 0.7, float("nan"), 0.1])
    owner = torch.tensor([0, 0, 0, 2, 2, 3, 3])  # image 1 has no masks
    assert choose(scores, owner, 4).tolist() == [1, -1, 3, 6]
    assert choose(torch.zeros(0), torch.zeros(0, dtype=torch.long), 2).tolist() == [-1, -1]


def _image() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[4:12, 6:20] = True
    mask[4:6, 6:9] = False  # not a rectangle: some pixels of the box are outside the mask
    return image, mask


def test_apply_modes_gray_original_and_alpha():
    image, mask = _image()
    gray = crop_resize_gray(image, mask)
    original = crop_resize_original(image, mask)
    assert gray.shape == original.shape == image.shape
    # the same square for both (it depends on the mask's box only): the filled box gives the
    # same original; pixels outside the mask are gray in one and the image's own in the other
    box = np.pad(np.ones((8, 14), bool), ((4, 8), (6, 10)))
    assert np.array_equal(crop_resize_original(image, box), original)
    assert (gray[0, 0] == GRAY).all() and not (original[0, 0] == GRAY).all()  # above the mask
    assert np.array_equal(gray[12, 20], original[12, 20])  # a pixel well inside the mask
    # the tight-box rule, kept as the *_tight modes: there the filled box as the mask is the
    # original crop
    tight = crop_resize_original(image, mask, geometry="tight")
    assert np.array_equal(crop_resize_gray(image, box, geometry="tight"), tight)
    assert np.array_equal(
        apply_mask("crop_resize_original_tight", image, mask, 16), fit_square(tight, 16)
    )
    assert apply_mask("crop_resize_gray", image, mask, 16).shape == (16, 16, 3)
    assert np.array_equal(apply_mask("crop_resize_gray", image, mask, 16), fit_square(gray, 16))
    rgba = apply_mask("alpha", image, mask, 16)
    assert rgba.shape == (16, 16, 4)
    assert np.array_equal(rgba[..., :3], fit_square(image, 16))  # RGB untouched by the α channel
    assert whole_image("alpha", image, 16)[..., 3].min() == 255
    assert whole_image("FULL", image, 16).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="unknown apply mode"):
        apply_mask("blur", image, mask, 16)
    with pytest.raises(ValueError, match="non-empty"):
        crop_resize_original(image, np.zeros_like(mask))


def test_fit_square_resizes_the_shortest_side_and_crops_the_centre():
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 10:30] = 200  # the centre half
    out = fit_square(image, 10)
    assert out.shape == (10, 10, 3) and out.min() >= 150


def test_table_rows_markdown_csv_json(tmp_path):
    rows = variants(["regions"], ["crop_resize_gray", "alpha"], ["max_prob", "oracle"])
    assert [v.key for v in rows[:2]] == ["FULL", "whole_image/alpha"]
    assert len(rows) == 2 + 4 and rows[2] == Variant("regions", "max_prob", "crop_resize_gray")
    assert rows[2].columns() == ("regions", "max_prob", "crop + resize", "gray")
    assert rows[1].columns() == ("-", "whole image", "α-channel", "original")
    values = {}
    for i, v in enumerate(rows):
        for split in ("test_id", "test_shift"):
            p = f"{split}/{v.key}/"
            values.update({p + "acc": 0.5 + i / 100, p + "num_samples": 10.0})
            values[p + "fallback_rate"] = 0.2 if v.source else 0.0
            values[p + "object_iou"] = math.nan if not v.source else 0.75
    results = results_from_values(values, rows, ["test_id", "test_shift"])
    assert results[rows[2]]["test_id"]["no_masks"] == 2
    paths = write_table(results, ["test_id", "test_shift"], tmp_path, meta={"model": "m"})
    md = paths["markdown"].read_text()
    assert "| regions | oracle | α-channel | original | 55.0 | 55.0 |" in md
    assert "| - | - | - | original | 50.0 | 50.0 |" in md
    assert "test_id 2/10" in md
    lines = paths["csv"].read_text().splitlines()
    assert len(lines) == 1 + 6 * 2 and lines[0].startswith("source,fg_det,apply_mask,bg,split,acc")
    body = json.loads(paths["json"].read_text())
    assert body["model"] == "m" and body["rows"][0]["object_iou"] is None
    assert body["rows"][-1]["object_iou"] == 0.75
