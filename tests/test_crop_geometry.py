"""OCCAM's crop + resize follows the authors' geometry (issue 16, item 3).

The reference below is written from the definition in AlexanderRubinstein/OCCAM
``occam/robust_classification/masking.py`` (``mask2chw``, ``crop_resize_gray``), with
torchvision's own crop (zero padding past the border) and bilinear ``Resize``, in float [0, 1]:
the square of side max(h, w) of the mask's box centred on the box's centre, image and mask
cropped and resized to the image size, then ``image * m + 0.5 * (1 - m)``. It calls nothing of
the toolkit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from occam_l2r.occam.apply import ALL_APPLY_MODES, APPLY_MODES, apply_mask, crop_resize_original
from occam_l2r.segmentation import Segmentation
from occam_l2r.views import apply_view, crop_resize_gray, square_crop_box


def authors_crop_resize(image: np.ndarray, mask: np.ndarray, keep: np.ndarray | None = None):
    """The authors' crop + resize on gray, from its definition; float [0, 1], (H, W, 3).

    ``keep`` (default ``mask``) is the mask blended with the image (all ones: the original
    background), the square is always the one of ``mask``."""
    rows, cols = np.nonzero(mask)
    top_left = np.array([rows.min(), cols.min()])
    bottom_right = np.array([rows.max(), cols.max()])
    centre = (top_left + bottom_right) // 2
    height, width = bottom_right - top_left + 1
    side = int(max(height, width))
    top, left = int(centre[0] - side // 2), int(centre[1] - side // 2)
    h, w = mask.shape
    img = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)
    msk = torch.from_numpy((mask if keep is None else keep).astype(np.float32))[None]
    resize = lambda t: TF.resize(  # noqa: E731
        t, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    img = resize(TF.crop(img, top, left, side, side))
    msk = resize(TF.crop(msk, top, left, side, side))
    out = img * msk + 0.5 * (1 - msk)
    return out.permute(1, 2, 0).numpy()


def _ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _cases():
    astronaut, chelsea, coffee = data.astronaut(), data.chelsea(), data.coffee()
    elongated = _ellipse(chelsea.shape[:2], 150, 220, 18, 170)  # 37 x 341 on a 300 x 451 photo
    border = _ellipse(coffee.shape[:2], 360, 40, 120, 90)  # cut by the bottom and left borders
    tall = _ellipse(astronaut.shape[:2], 250, 480, 230, 25)  # tall, touching the right border
    return [
        ("chelsea_elongated", chelsea, elongated),
        ("coffee_border", coffee, border),
        ("astronaut_tall_border", astronaut, tall),
    ]


CASES = _cases()


@pytest.mark.parametrize("name,image,mask", CASES, ids=[c[0] for c in CASES])
def test_crop_resize_gray_is_the_authors_geometry(name, image, mask):
    ours = crop_resize_gray(image, mask).astype(np.float64) / 255.0
    ref = authors_crop_resize(image, mask)
    assert ours.shape == ref.shape == image.shape
    assert np.abs(ours - ref).mean() <= 0.02  # the acceptance bound
    assert np.abs(ours - ref).mean() <= 0.005  # in fact: uint8 rounding and PIL vs torch resize
    # the old rule (the tight box stretched, gray set before the resize) is far from it
    old = crop_resize_gray(image, mask, geometry="tight").astype(np.float64) / 255.0
    assert np.abs(old - ref).mean() > 0.05


@pytest.mark.parametrize("name,image,mask", CASES, ids=[c[0] for c in CASES])
def test_crop_resize_original_keeps_the_image_in_the_same_square(name, image, mask):
    ours = crop_resize_original(image, mask).astype(np.float64) / 255.0
    ref = authors_crop_resize(image, mask, keep=np.ones(mask.shape, bool))
    assert np.abs(ours - ref).mean() <= 0.005


def test_the_square_box_and_the_padding():
    mask = np.zeros((10, 12), bool)
    mask[0:3, 1:9] = True  # rows 0..2, cols 1..8: h 3, w 8, centre (1, 4)
    assert square_crop_box(mask) == (1 - 4, 4 - 4, 8)
    image = np.full((10, 12, 3), 200, np.uint8)
    out = crop_resize_gray(image, mask, out_size=(8, 8))
    # the square reaches 3 rows above the image: zero-padded, mask 0 there, so gray
    assert (out[0] == 128).all()
    assert (out[4:6, 1:7] == 200).all()  # inside the mask: the image


def test_the_views_and_the_apply_modes_use_it():
    image, mask = CASES[0][1], CASES[0][2]
    seg = Segmentation.from_masks("x", [mask])
    assert np.array_equal(
        apply_view("crop_resize_gray", image, seg).image, crop_resize_gray(image, mask)
    )
    assert (
        "crop_resize_gray_tight" in ALL_APPLY_MODES and "crop_resize_gray_tight" not in APPLY_MODES
    )
    tight = apply_mask("crop_resize_gray_tight", image, mask, 32)
    square = apply_mask("crop_resize_gray", image, mask, 32)
    assert tight.shape == square.shape == (32, 32, 3) and not np.array_equal(tight, square)
