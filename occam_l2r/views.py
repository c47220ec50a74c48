"""Views: pure functions ``(image, segmentation) -> image`` shared by every task.

L2R² views (appendix B.2, Fig. 9): ``FULL`` (the image), ``FG_C`` (the foreground cropped by the
*segmentation* bounding box and padded to a square with a constant, never distorting the aspect
ratio; ``fg_aspect="stretch"`` resizes the crop to a square instead, the "distorted" rows of
Table 15), ``FG_M`` (background pixels masked, then the same crop), ``BG_S`` (foreground pixels
masked, shape kept) and ``BG_B`` (the segmentation bounding box masked). OCCAM views (§3.2.1,
§C): ``crop_resize_gray`` (pixels outside the mask set to gray, cropped to the mask's box and
resized to the image size) and ``alpha`` (RGB plus the mask as a fourth channel, for AlphaCLIP).
``CENTERCROP`` (the centred square, no segmentation) is the zero-shot CenterCrop baseline (L2R²
Table 5; a list of views still needs ``data.segmentation`` when it holds a view other than FULL).

The crop box (``crop_box``): ``mask`` (default) is the tight box of the foreground mask, as the
paper defines FG_C and BG_B; ``detector`` is the detector's box (FG_M then drops mask pixels
outside it). A store without masks (a detector without SAM) always uses the detector's box.

Fallback (L2R² §3.1), one rule for every view: no segmentation, no detection, no detection
scoring at least ``score_threshold``, an empty foreground mask (in a store with masks) or an
empty crop box give the FULL image (``alpha``: RGB plus an all-foreground channel), with the
reason (:data:`FALLBACK_REASONS`) returned so callers can count fallbacks and, at fusion, use the
FULL prediction. A mask covering the whole image is no fallback: FG views are the image, BG views
a constant. The table with the reasons is in docs/views_and_data.md. Images are ``(H, W, C)``
uint8 numpy arrays; no torch, no Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from occam_l2r.segmentation import Segmentation, mask_to_box

View = Literal["FULL", "FG_C", "FG_M", "BG_S", "BG_B", "crop_resize_gray", "alpha", "CENTERCROP"]
VIEWS: tuple[str, ...] = (
    "FULL", "FG_C", "FG_M", "BG_S", "BG_B", "crop_resize_gray", "alpha", "CENTERCROP"
)  # fmt: skip
MASK_VIEWS = {"FG_M", "BG_S", "crop_resize_gray", "alpha"}
#: ``top1``: the detection of highest stored score (see :func:`top_scoring`); ``union``: all kept
Foreground = Literal["top1", "union"]
#: the box FG_C / FG_M crop and BG_B masks: the mask's tight box or the detector's box
CropBox = Literal["mask", "detector"]
#: FG_C / FG_M: ``pad`` the crop to a square (L2R²'s default) or ``stretch`` it to one (distorted)
FgAspect = Literal["pad", "stretch"]
#: why a view fell back to FULL, in the order the rule checks them
FALLBACK_REASONS = ("no_segmentation", "no_detection", "low_score", "empty_mask", "empty_box")
GRAY = 128

Box = tuple[int, int, int, int]


@dataclass
class ViewResult:
    """A view's image and, when the fallback rule applied, why (``None`` otherwise)."""

    image: np.ndarray
    fallback: str | None = None


@dataclass
class Decomposition:
    """The chosen foreground of one image: the integer crop ``box`` (xyxy, x1/y1 exclusive), the
    detector's ``detector_box`` and the boolean ``mask`` (``None`` for a store of boxes only)."""

    box: Box
    detector_box: Box
    mask: np.ndarray | None


def _int_box(box: np.ndarray, width: int, height: int) -> Box:
    """Round an xyxy float box outward to integer pixels and clip it to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    return x0, y0, x1, y1


def center_crop(image: np.ndarray) -> np.ndarray:
    """CENTERCROP: the centred square of the shorter side; resized to the input size, it is the
    standard CLIP preprocessing (resize the shorter side, crop the centre; L2R² Table 5)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def pad_to_square(image: np.ndarray, fill: int = 0) -> np.ndarray:
    """Pad an image to a square with a constant, centred (the extra pixel goes right/bottom)."""
    h, w = image.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    out = np.full((side, side, *image.shape[2:]), fill, dtype=image.dtype)
    out[top : top + h, left : left + w] = image
    return out


def stretch_to_square(image: np.ndarray) -> np.ndarray:
    """Resize (bilinear) an image to a square of its longer side: the aspect ratio is lost."""
    h, w = image.shape[:2]
    side = max(h, w)
    if h == w:
        return image
    return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))


def fg_crop(image: np.ndarray, box: Box, fill: int = 0, aspect: FgAspect = "pad") -> np.ndarray:
    """FG_C: crop the box and pad it to a square with ``fill`` (or stretch it to a square)."""
    x0, y0, x1, y1 = box
    crop = image[y0:y1, x0:x1]
    return stretch_to_square(crop) if aspect == "stretch" else pad_to_square(crop, fill)


def fg_masked(
    image: np.ndarray, box: Box, mask: np.ndarray, fill: int = 0, aspect: FgAspect = "pad"
) -> np.ndarray:
    """FG_M: set background pixels (mask False) to ``fill``, then crop the box to a square."""
    out = image.copy()
    out[~mask] = fill
    return fg_crop(out, box, fill, aspect)


def bg_shape(image: np.ndarray, mask: np.ndarray, fill: int = 0) -> np.ndarray:
    """BG_S: set foreground pixels (mask True) to ``fill``; the object's shape stays visible."""
    out = image.copy()
    out[mask] = fill
    return out


def bg_box(image: np.ndarray, box: Box, fill: int = 0) -> np.ndarray:
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


def top_scoring(segmentation: Segmentation, keep: np.ndarray) -> np.ndarray:
    """The ``top1`` rule: of the detections ``keep``, the one of highest stored score.

    What the score is depends on the store (:attr:`Segmentation.score_kind`): the detector's
    confidence for detector(+SAM) stores, SAM's *predicted IoU* for SAM automatic stores (the
    mask SAM is most sure of, whatever the object — not OCCAM's foreground score, which the
    OCCAM path computes itself), 1.0 for ground truth. Ties go to the first detection.
    """
    return keep[[int(np.argmax(segmentation.scores[keep]))]]


def select_foreground(
    segmentation: Segmentation | None,
    score_threshold: float = 0.0,
    foreground: Foreground = "top1",
    need_mask: bool = False,
    crop_box: CropBox = "mask",
) -> Decomposition | str:
    """Pick the foreground and apply the fallback rule (the same for every view).

    Args:
        segmentation: the image's segmentation, ``None`` when there is none.
        score_threshold: detections scoring below it are dropped.
        foreground: ``top1`` (:func:`top_scoring`) or the ``union`` of the kept detections.
        need_mask: the view needs a mask; a store of boxes only then raises ``ValueError``.
        crop_box: ``mask`` (the mask's tight box; a store of boxes only uses the detector's
            box) or ``detector`` (the detectors' enclosing box).

    Returns:
        The :class:`Decomposition`, or the reason (one of :data:`FALLBACK_REASONS`) why the
        FULL fallback applies.
    """
    if segmentation is None:
        return "no_segmentation"
    if len(segmentation) == 0:
        return "no_detection"
    keep = np.nonzero(segmentation.scores >= score_threshold)[0]
    if len(keep) == 0:
        return "low_score"
    if foreground == "top1":
        keep = top_scoring(segmentation, keep)
    h, w = segmentation.height, segmentation.width
    boxes = segmentation.boxes[keep]
    enclosing = [boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]
    detector_box = _int_box(np.array(enclosing), w, h)
    mask = None
    if segmentation.has_masks:
        mask = np.zeros((h, w), bool)
        for i in keep:
            mask |= segmentation.mask(int(i))
        if not mask.any():
            return "empty_mask"
    elif need_mask:
        raise ValueError(
            f"this view needs masks but the segmentation of {segmentation.image_id} "
            f"({segmentation.segmenter}) has boxes only; segment with SAM or use FG_C / BG_B."
        )
    box = detector_box
    if crop_box == "mask" and mask is not None:
        box = _int_box(mask_to_box(mask), w, h)
    if box[2] <= box[0] or box[3] <= box[1]:
        return "empty_box"
    return Decomposition(box, detector_box, mask)


def full_fallback(view: View, image: np.ndarray) -> np.ndarray:
    """The image a view falls back to: FULL (``alpha``: RGB plus an all-foreground channel)."""
    return image if view != "alpha" else alpha_image(image, np.ones(image.shape[:2], bool))


def apply_view(
    view: View,
    image: np.ndarray,
    segmentation: Segmentation | None,
    score_threshold: float = 0.0,
    foreground: Foreground = "top1",
    fill: int = 0,
    crop_box: CropBox = "mask",
    fg_aspect: FgAspect = "pad",
) -> ViewResult:
    """Make ``view`` of ``image`` from its segmentation, applying the FULL fallback rule.

    Args:
        view: one of :data:`VIEWS`.
        image: ``(H, W, C)`` uint8 image.
        segmentation: its segmentation (``None``: the ``no_segmentation`` fallback).
        score_threshold: detections scoring below it are dropped.
        foreground: ``top1`` or ``union`` of the kept detections.
        fill: constant (0-255) for padding and masking.
        crop_box: ``mask`` or ``detector`` box for FG_C, FG_M and BG_B (see the module).
        fg_aspect: FG_C / FG_M crop ``pad``-ded or ``stretch``-ed to a square.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {VIEWS}")
    if view == "FULL":
        return ViewResult(image)
    if view == "CENTERCROP":  # no segmentation involved, no fallback
        return ViewResult(center_crop(image))
    if segmentation is not None and (segmentation.height, segmentation.width) != image.shape[:2]:
        raise ValueError(
            f"segmentation of {segmentation.image_id} is {segmentation.width}x{segmentation.height} "
            f"but the image is {image.shape[1]}x{image.shape[0]}; the store belongs to other images."
        )
    picked = select_foreground(
        segmentation, score_threshold, foreground, view in MASK_VIEWS, crop_box
    )
    if isinstance(picked, str):
        return ViewResult(full_fallback(view, image), fallback=picked)
    box, mask = picked.box, picked.mask
    if view == "FG_C":
        return ViewResult(fg_crop(image, box, fill, fg_aspect))
    if view == "BG_B":
        return ViewResult(bg_box(image, box, fill))
    assert mask is not None
    if view == "FG_M":
        return ViewResult(fg_masked(image, box, mask, fill, fg_aspect))
    if view == "BG_S":
        return ViewResult(bg_shape(image, mask, fill))
    if view == "crop_resize_gray":
        return ViewResult(crop_resize_gray(image, mask))
    return ViewResult(alpha_image(image, mask))
