"""Views: pure functions ``(image, segmentation) -> image`` shared by every task.

L2R² views (appendix B.2): ``FULL`` (the image), ``FG_C`` (the foreground box cropped and padded
to a square with a constant, never distorting the aspect ratio), ``FG_M`` (background pixels
masked, then the same crop), ``BG_S`` (foreground pixels masked, shape kept) and ``BG_B`` (the
foreground box masked). OCCAM views (§3.2.1, §C): ``crop_resize_gray`` (pixels outside the mask
set to gray, cropped to the mask's box and resized to the image size) and ``alpha`` (RGB plus the
mask as a fourth channel, for AlphaCLIP).

Fallback (L2R² §3.1): no segmentation, no detection, or no detection scoring at least
``score_threshold`` gives the FULL image; so does an empty mask where a view needs the mask. The
reason is returned with the image so callers can count fallbacks. Images are ``(H, W, C)`` uint8
numpy arrays; no torch, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from occam_l2r.segmentation import Segmentation

View = Literal["FULL", "FG_C", "FG_M", "BG_S", "BG_B", "crop_resize_gray", "alpha"]
VIEWS: tuple[str, ...] = ("FULL", "FG_C", "FG_M", "BG_S", "BG_B", "crop_resize_gray", "alpha")
MASK_VIEWS = {"FG_M", "BG_S", "crop_resize_gray", "alpha"}
Foreground = Literal["top1", "union"]
GRAY = 128


@dataclass
class ViewResult:
    """A view's image and, when the fallback rule applied, why (``None`` otherwise)."""

    image: np.ndarray
    fallback: str | None = None


def _int_box(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Round an xyxy float box outward to integer pixels and clip it to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    return x0, y0, x1, y1


def pad_to_square(image: np.ndarray, fill: int = 0) -> np.ndarray:
    """Pad an image to a square with a constant, centred (the extra pixel goes right/bottom)."""
    h, w = image.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.full((side, side, *image.shape[2:]), fill, dtype=image.dtype)
    out[top : top + h, left : left + w] = image
    return out


def fg_crop(image: np.ndarray, box: tuple[int, int, int, int], fill: int = 0) -> np.ndarray:
    """FG_C: crop the box and pad it to a square with ``fill``."""
    x0, y0, x1, y1 = box
    return pad_to_square(image[y0:y1, x0:x1], fill)


def fg_masked(
    image: np.ndarray, box: tuple[int, int, int, int], mask: np.ndarray, fill: int = 0
) -> np.ndarray:
    """FG_M: set background pixels (mask False) to ``fill``, then crop the box to a square."""
    out = image.copy()
    out[~mask] = fill
    return fg_crop(out, box, fill)


def bg_shape(image: np.ndarray, mask: np.ndarray, fill: int = 0) -> np.ndarray:
    """BG_S: set foreground pixels (mask True) to ``fill``; the object's shape stays visible."""
    out = image.copy()
    out[mask] = fill
    return out


def bg_box(image: np.ndarray, box: tuple[int, int, int, int], fill: int = 0) -> np.ndarray:
    """BG_B: set every pixel inside the box to ``fill``."""
    x0, y0, x1, y1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = fill
    return out


def crop_resize_gray(
    image: np.ndarray, mask: np.ndarray, gray: int = GRAY, out_size: tuple[int, int] | None = None
) -> np.ndarray:
    """OCCAM's "crop + resize": pixels outside the mask set to ``gray``, crop to the mask's tight
    box, resize (bilinear) to ``out_size`` = (H, W), the image's own size by default."""
    h, w = image.shape[:2]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("crop_resize_gray needs a non-empty mask")
    out = image.copy()
    out[~mask] = gray
    crop = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    oh, ow = out_size or (h, w)
    if crop.shape[:2] == (oh, ow):
        return crop
    return np.asarray(Image.fromarray(crop).resize((ow, oh), Image.BILINEAR))


def alpha_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """OCCAM's "α-channel": RGB plus the mask (255 inside, 0 outside) as a fourth channel."""
    return np.concatenate([image[..., :3], (mask.astype(np.uint8) * 255)[..., None]], axis=-1)


def select_foreground(
    segmentation: Segmentation | None,
    score_threshold: float = 0.0,
    foreground: Foreground = "top1",
    need_mask: bool = False,
) -> tuple[tuple[int, int, int, int], np.ndarray | None] | str:
    """Pick the foreground: the top-scoring detection (``top1``) or the union of every detection
    scoring at least ``score_threshold`` (``union``).

    Returns:
        ``(box, mask)`` with an integer xyxy box and a boolean mask (``None`` unless
        ``need_mask``), or a string saying why the FULL fallback applies.
    """
    if segmentation is None:
        return "no_segmentation"
    if len(segmentation) == 0:
        return "no_detection"
    keep = np.nonzero(segmentation.scores >= score_threshold)[0]
    if len(keep) == 0:
        return "low_score"
    if foreground == "top1":
        keep = keep[[int(np.argmax(segmentation.scores[keep]))]]
    h, w = segmentation.height, segmentation.width
    boxes = segmentation.boxes[keep]
    box = _int_box(
        np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]), w, h
    )
    if box[2] <= box[0] or box[3] <= box[1]:
        return "empty_box"
    mask = None
    if need_mask:
        if not segmentation.has_masks:
            raise ValueError(
                f"this view needs masks but the segmentation of {segmentation.image_id} "
                f"({segmentation.segmenter}) has boxes only; segment with SAM or use FG_C / BG_B."
            )
        mask = np.zeros((h, w), bool)
        for i in keep:
            mask |= segmentation.mask(int(i))
        if not mask.any():
            return "empty_mask"
    return box, mask


def apply_view(
    view: View,
    image: np.ndarray,
    segmentation: Segmentation | None,
    score_threshold: float = 0.0,
    foreground: Foreground = "top1",
    fill: int = 0,
) -> ViewResult:
    """Make ``view`` of ``image`` from its segmentation, applying the FULL fallback rule."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")
    if view == "FULL":
        return ViewResult(image)
    if segmentation is not None and (segmentation.height, segmentation.width) != image.shape[:2]:
        raise ValueError(
            f"segmentation of {segmentation.image_id} is {segmentation.width}x{segmentation.height} "
            f"but the image is {image.shape[1]}x{image.shape[0]}; the store belongs to other images."
        )
    picked = select_foreground(
        segmentation, score_threshold, foreground, need_mask=view in MASK_VIEWS
    )
    if isinstance(picked, str):
        full = image if view != "alpha" else alpha_image(image, np.ones(image.shape[:2], bool))
        return ViewResult(full, fallback=picked)
    box, mask = picked
    if view == "FG_C":
        return ViewResult(fg_crop(image, box, fill))
    if view == "BG_B":
        return ViewResult(bg_box(image, box, fill))
    assert mask is not None
    if view == "FG_M":
        return ViewResult(fg_masked(image, box, mask, fill))
    if view == "BG_S":
        return ViewResult(bg_shape(image, mask, fill))
    if view == "crop_resize_gray":
        return ViewResult(crop_resize_gray(image, mask))
    return ViewResult(alpha_image(image, mask))
