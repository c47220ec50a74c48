"""Views on small hand-made arrays: exact expected pixels (the FULL fallback rule is in
test_view_fallback.py); the view registry (what each view declares, an unknown view's error)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from occam_l2r.errors import EXIT_USER_ERROR
from occam_l2r.store import Segmentation
from occam_l2r.views import (
    VIEWS,
    UnknownViewError,
    apply_view,
    crop_resize_gray,
    pad_to_square,
    register_view,
    role_of,
    select_foreground,
)
from tests.conftest import TINY_FG


def _image(h: int = 4, w: int = 6) -> np.ndarray:
    """Pixel (y, x) has value 10*y + x + 1 in every channel."""
    v = (10 * np.arange(h)[:, None] + np.arange(w)[None, :] + 1).astype(np.uint8)
    return np.repeat(v[..., None], 3, axis=2)


def _seg(mask: np.ndarray, score: float = 0.9, box=None) -> Segmentation:
    return Segmentation.from_masks(
        "img.png", [mask], scores=[score], boxes=None if box is None else np.array([box])
    )


@pytest.fixture
def mask() -> np.ndarray:
    m = np.zeros((4, 6), bool)
    m[1, 2] = m[1, 3] = m[2, 3] = True  # box x 2..4, y 1..3 (2 wide, 2 tall)
    return m


def test_full_is_identity(mask):
    img = _image()
    assert np.array_equal(apply_view("FULL", img, _seg(mask)).image, img)


def test_fg_c_crops_box_exactly(mask):
    out = apply_view("FG_C", _image(), _seg(mask)).image
    assert out[..., 0].tolist() == [[13, 14], [23, 24]]


def test_fg_c_pads_to_square_without_distortion():
    img = _image()
    m = np.zeros((4, 6), bool)
    m[1, 1:4] = True  # box 3 wide, 1 tall -> pad 1 row above, 1 below
    out = apply_view("FG_C", img, _seg(m), fill=7).image
    assert out.shape == (3, 3, 3)
    assert out[..., 0].tolist() == [[7, 7, 7], [12, 13, 14], [7, 7, 7]]


def test_pad_to_square_puts_odd_pixel_right():
    out = pad_to_square(np.ones((1, 4), np.uint8)[..., None], fill=0)[..., 0]
    assert out.tolist() == [[0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_fg_m_masks_background_then_crops(mask):
    out = apply_view("FG_M", _image(), _seg(mask), fill=0).image
    assert out[..., 0].tolist() == [[13, 14], [0, 24]]


def test_bg_s_masks_foreground_keeps_shape(mask):
    out = apply_view("BG_S", _image(), _seg(mask), fill=0).image[..., 0]
    expected = _image()[..., 0].copy()
    expected[mask] = 0
    assert out.tolist() == expected.tolist()
    assert out[2, 2] == 23  # inside the box but outside the mask: kept


def test_bg_b_masks_the_box(mask):
    out = apply_view("BG_B", _image(), _seg(mask), fill=255).image[..., 0]
    assert out[1:3, 2:4].tolist() == [[255, 255], [255, 255]]
    assert out[0].tolist() == [1, 2, 3, 4, 5, 6]
    assert out[2, 1] == 22 and out[2, 4] == 25


def test_crop_resize_gray_exact():
    img = _image()
    m = np.zeros((4, 6), bool)
    m[1, 2] = m[2, 3] = True  # tight box 2x2, the two other pixels become gray
    # the toolkit's earlier tight box (geometry="tight"): the two other pixels become gray
    out = crop_resize_gray(img, m, gray=128, out_size=(2, 2), geometry="tight")
    assert out[..., 0].tolist() == [[13, 128], [128, 24]]
    # the authors' square (default): side 2 centred on the box's centre (1, 2) rounding down,
    # so rows 0-1, columns 1-2; only (1, 2) is in the mask
    out = crop_resize_gray(img, m, gray=128, out_size=(2, 2))
    assert out[..., 0].tolist() == [[128, 128], [128, 13]]
    assert apply_view("crop_resize_gray", img, _seg(m)).image.shape == img.shape


def test_alpha_channel(mask):
    out = apply_view("alpha", _image(), _seg(mask)).image
    assert out.shape == (4, 6, 4)
    assert np.array_equal(out[..., 3] > 0, mask)
    assert np.array_equal(out[..., :3], _image())


def test_float_box_rounds_outward():
    img = _image()
    seg = Segmentation("img.png", 6, 4, boxes=[[1.5, 0.2, 3.1, 1.9]], scores=[1.0])
    assert apply_view("FG_C", img, seg).image[..., 0].tolist() == [
        [2, 3, 4],
        [12, 13, 14],
        [0, 0, 0],
    ]


def test_top1_vs_union():
    a = np.zeros((4, 6), bool)
    a[0, 0] = True
    b = np.zeros((4, 6), bool)
    b[3, 5] = True
    seg = Segmentation.from_masks("img.png", [a, b], scores=[0.5, 0.9])
    assert apply_view("FG_C", _image(), seg, foreground="top1").image[..., 0].tolist() == [[36]]
    assert apply_view("FG_C", _image(), seg, foreground="union").image.shape == (6, 6, 3)


def test_errors_are_clear(mask):
    with pytest.raises(ValueError, match="unknown view"):
        apply_view("FG_X", _image(), _seg(mask))  # type: ignore[arg-type]
    boxes_only = Segmentation("img.png", 6, 4, boxes=[[0, 0, 2, 2]], scores=[1.0])
    with pytest.raises(ValueError, match="boxes only"):
        apply_view("BG_S", _image(), boxes_only)
    with pytest.raises(ValueError, match="belongs to other images"):
        apply_view("FG_C", _image(5, 6), _seg(mask))


def test_fg_c_crops_the_mask_box_past_the_detector_box():
    """L2R² Fig. 9: FG_C is cropped by the *segmentation* box; here SAM's mask extends one
    column right of the detector's box (x 2..3), so the crop is x 2..4 by default."""
    m = np.zeros((4, 6), bool)
    m[1, 2:5] = m[2, 2] = True  # mask box x 2..5, y 1..3
    seg = _seg(m, box=[2, 1, 4, 3])
    picked = select_foreground(seg)
    assert picked.box == (2, 1, 5, 3) and picked.detector_box == (2, 1, 4, 3)
    fg = apply_view("FG_C", _image(), seg, fill=0).image[..., 0]
    assert fg.tolist() == [[13, 14, 15], [23, 24, 25], [0, 0, 0]]  # odd extra row at the bottom
    fg_m = apply_view("FG_M", _image(), seg, fill=0).image[..., 0]
    assert fg_m.tolist() == [[13, 14, 15], [23, 0, 0], [0, 0, 0]]  # mask pixel x=4 kept
    bg_b = apply_view("BG_B", _image(), seg, fill=0).image[..., 0]
    assert bg_b[1:3, 2:5].sum() == 0 and bg_b[1, 5] == 16
    # the detector box stays an option: the crop (and FG_M's mask) then stop at x=4
    det = apply_view("FG_C", _image(), seg, crop_box="detector").image[..., 0]
    assert det.tolist() == [[13, 14], [23, 24]]
    det_m = apply_view("FG_M", _image(), seg, crop_box="detector").image[..., 0]
    assert det_m.tolist() == [[13, 14], [23, 0]]


def test_boxes_only_store_uses_the_detector_box_in_both_modes():
    seg = Segmentation("img.png", 6, 4, boxes=[[1, 0, 3, 2]], scores=[1.0])
    for crop_box in ("mask", "detector"):
        fg = apply_view("FG_C", _image(), seg, crop_box=crop_box)
        assert fg.fallback is None and fg.image[..., 0].tolist() == [[2, 3], [12, 13]]
        bg = apply_view("BG_B", _image(), seg, crop_box=crop_box, fill=0).image[..., 0]
        assert bg[0:2, 1:3].sum() == 0 and bg[2].tolist() == [21, 22, 23, 24, 25, 26]


def test_fg_aspect_stretch_distorts_instead_of_padding():
    """Table 15's "distorted" FG: the 3x1 box crop resized to 3x3 instead of padded."""
    img = _image()
    m = np.zeros((4, 6), bool)
    m[1, 1:4] = True
    seg = _seg(m)
    out = apply_view("FG_C", img, seg, fg_aspect="stretch").image[..., 0]
    assert out.tolist() == [[12, 13, 14]] * 3  # one row stretched: every row the same
    padded = apply_view("FG_C", img, seg, fg_aspect="pad", fill=7).image[..., 0]
    assert padded.tolist() == [[7, 7, 7], [12, 13, 14], [7, 7, 7]]
    fg_m = apply_view("FG_M", img, seg, fg_aspect="stretch").image
    assert np.array_equal(fg_m, out[..., None].repeat(3, axis=2))  # the mask is the whole box


def test_top1_of_a_sam_automatic_store_is_the_highest_predicted_iou():
    """SAM automatic stores keep SAM's predicted IoU as the score: ``top1`` picks that mask."""
    small = np.zeros((4, 6), bool)
    small[0, 0] = True
    big = np.zeros((4, 6), bool)
    big[1:, 1:] = True
    seg = Segmentation.from_masks("img.png", [small, big], scores=[0.97, 0.90])
    seg.segmenter = "sam_auto"
    assert seg.score_kind == "sam_predicted_iou"
    assert apply_view("FG_C", _image(), seg).image[..., 0].tolist() == [[1]]
    assert Segmentation("a", 1, 1, segmenter="owlv2+sam").score_kind == "detector_confidence"


# ---------------------------------------------------------------- the registry

SHIPPED = ["FULL", "FG_C", "FG_M", "BG_S", "BG_B", "crop_resize_gray", "alpha", "CENTERCROP"]


def test_the_registry_declares_what_each_view_needs(mask):
    """``needs_mask`` is what a store of boxes only refuses; the roles are what the captions and
    the default pairs ask (the shipped views keep their names, order and behaviour)."""
    assert list(VIEWS)[: len(SHIPPED)] == SHIPPED
    boxes_only = Segmentation("img.png", 6, 4, boxes=[[2, 1, 4, 3]], scores=[1.0])
    for name in SHIPPED:
        if VIEWS[name].needs_mask:
            with pytest.raises(ValueError, match="boxes only"):
                apply_view(name, _image(), boxes_only)
        else:
            assert apply_view(name, _image(), boxes_only).fallback is None
    assert [v for v in SHIPPED if VIEWS[v].needs_mask] == ["FG_M", "BG_S", "crop_resize_gray",
                                                            "alpha"]  # fmt: skip
    roles = {v: role_of(v) for v in SHIPPED}
    assert [v for v, r in roles.items() if r == "foreground"] == ["FG_C", "FG_M"]
    assert [v for v, r in roles.items() if r == "background"] == ["BG_S", "BG_B"]
    assert roles["FULL"] == "full" and role_of("not_a_view") is None


def test_register_view_refuses_a_taken_or_unusable_name():
    def same(image, fg, options):
        return image

    with pytest.raises(ValueError, match="registered already"):
        register_view("FG_C", role="foreground")(same)
    with pytest.raises(ValueError, match="without '\\+'"):
        register_view("A+B", role="foreground")
    with pytest.raises(ValueError, match="role='object'"):
        register_view("FG_Z", role="object")  # type: ignore[arg-type]
    assert "FG_Z" not in VIEWS and VIEWS["FG_C"].make is not same


def test_an_unknown_view_is_one_message_naming_the_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``data.view`` is checked against the registry when ``fit`` builds the DataModule: one
    message with the value and every registered view (as the CLI's own type errors)."""
    from occam_l2r.cli import main

    with pytest.raises(UnknownViewError, match="unknown view 'FG_X'"):
        apply_view("FG_X", _image(), None)
    argv = ["occam_l2r", "fit", "--config", str(TINY_FG), "--data.init_args.view", "[FULL, FG_X]",
            "--trainer.logger.init_args.save_dir", str(tmp_path)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert line.startswith("occam_l2r fit: error: data.view: unknown view 'FG_X'; the registered")
    assert ", ".join(SHIPPED) in line and "register_view" in line
