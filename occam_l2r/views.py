"""Views: pure functions ``(image, segmentation) -> image`` shared by every task.

L2R² views (appendix B.2, Fig. 9): ``FULL`` (the image), ``FG_C`` (the foreground cropped by the
*segmentation* bounding box and padded to a square with a constant, never distorting the aspect
ratio; ``fg_aspect="stretch"`` resizes the crop to a square instead, the "distorted" rows of
Table 15), ``FG_M`` (background pixels masked, then the same crop), ``BG_S`` (foreground pixels
masked, shape kept) and ``BG_B`` (the segmentation bounding box masked). OCCAM views (§3.2.1,
§C): ``crop_resize_gray`` (the authors' geometry: a square of side max(h, w) around the mask's
box, zero-padded past the border, image and mask resized to the image size, then blended with
gray; see :func:`crop_resize`) and ``alpha`` (RGB plus the mask as a fourth channel, for
AlphaCLIP). L2R² has no crop + resize view. ``CENTERCROP`` (the centred square, no
segmentation) is the zero-shot CenterCrop baseline (L2R² Table 5; a list of views still needs
``data.segmentation`` when it holds a view other than FULL).

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

**The registry.** :data:`VIEWS` maps each view's name to a :class:`ViewSpec`: its function of
the image and its chosen foreground, whether it needs the mask, its role (:data:`Role`: ``full``,
``crop``, ``foreground``, ``background`` or ``occam``) and the image it falls back to where
that is not the FULL image (``alpha``'s). :func:`apply_view`, the DataModules' ``data.view`` check (:func:`check_views`), the
pipeline, the captions (what a ``foreground`` view shows) and the default fused pairs
(:func:`role_of`) all read it. Adding a view is one function decorated with
:func:`register_view` (docs/extending.md, "Add a view")::

    @register_view("FG_G", role="foreground", needs_mask=True)
    def fg_gray(image: np.ndarray, fg: Decomposition | None, options: ViewOptions) -> np.ndarray:
        assert fg is not None and fg.mask is not None  # needs_mask: the mask is always there
        out = np.full_like(image, GRAY)  # the object on a uniform gray background
        out[fg.mask] = image[fg.mask]
        return out

Register it in this module (or in one imported before the run: a DataLoader worker started by
``spawn``/``forkserver`` imports this module again, not the caller's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

import numpy as np
from PIL import Image

from occam_l2r.errors import UserError
from occam_l2r.segmentation import Segmentation, mask_to_box

#: a view's name: a key of :data:`VIEWS` (checked by :func:`check_views`, so that a view
#: registered at run time is accepted wherever a view is configured)
View: TypeAlias = str
#: what a view shows: ``full`` the image; ``crop`` a fixed crop of it (no segmentation);
#: ``foreground`` the object, its background cropped away or masked (FG_C, FG_M: captions name no
#: background for them); ``background`` the image with the object hidden (BG_S, BG_B: the default
#: fused pairs put the foreground view with FULL, then with each of them); ``occam`` an OCCAM
#: applied mask (crop_resize_gray, alpha)
Role = Literal["full", "crop", "foreground", "background", "occam"]
#: the roles whose views are made without a segmentation (no fallback either)
NO_SEGMENTATION_ROLES = ("full", "crop")
#: ``top1``: the detection of highest stored score (see :func:`top_scoring`); ``union``: all kept
Foreground = Literal["top1", "union"]
#: the box FG_C / FG_M crop and BG_B masks: the mask's tight box or the detector's box
CropBox = Literal["mask", "detector"]
#: FG_C / FG_M: ``pad`` the crop to a square (L2R²'s default) or ``stretch`` it to one (distorted)
FgAspect = Literal["pad", "stretch"]
#: OCCAM's crop + resize: the authors' ``square`` around the mask's box or the ``tight`` box
CropGeometry = Literal["square", "tight"]
#: OCCAM's crop + resize: pixels outside the mask ``gray`` or as in the image (``original``)
CropBackground = Literal["gray", "original"]
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


@dataclass(frozen=True)
class ViewOptions:
    """The settings of :func:`apply_view` a view's function may read.

    Attributes:
        fill: constant (0-255) for padding and masking.
        fg_aspect: FG_C / FG_M crop ``pad``-ded or ``stretch``-ed to a square.
    """

    fill: int = 0
    fg_aspect: FgAspect = "pad"


#: a view's function: ``(image, foreground, options) -> view``; the foreground is ``None`` for
#: the roles of :data:`NO_SEGMENTATION_ROLES`, else a valid one (the fallback rule has run)
MakeView = Callable[[np.ndarray, Decomposition | None, ViewOptions], np.ndarray]


@dataclass(frozen=True)
class ViewSpec:
    """A registered view.

    Attributes:
        name: its name (``data.view``, run folders, logits files, pairs such as ``FG_C+BG_S``).
        make: its function (:data:`MakeView`).
        role: what it shows (:data:`Role`).
        needs_mask: it reads the mask (a store of boxes only is then an error).
        fallback: the image it falls back to (``None``: the FULL image).
    """

    name: str
    make: MakeView
    role: Role
    needs_mask: bool = False
    fallback: Callable[[np.ndarray], np.ndarray] | None = None

    @property
    def uses_segmentation(self) -> bool:
        """Whether the view is made from a segmentation (and so can fall back)."""
        return self.role not in NO_SEGMENTATION_ROLES


#: every registered view by name, in the order of registration
VIEWS: dict[str, ViewSpec] = {}


class UnknownViewError(UserError, ValueError):
    """A configured view is not registered (the message lists the registered ones)."""


def register_view(
    name: str,
    *,
    role: Role,
    needs_mask: bool = False,
    fallback: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Callable[[MakeView], MakeView]:
    """Register the decorated function as the view ``name`` (see :class:`ViewSpec`).

    Raises:
        ValueError: ``name`` is registered already, is empty or holds ``+`` or ``/`` (pairs and
            run folders are named by views), or ``role`` is not a :data:`Role`.
    """
    if not name or "+" in name or "/" in name:
        raise ValueError(f"view name {name!r}: give a non-empty name without '+' or '/'")
    if role not in get_args(Role):
        raise ValueError(f"view {name!r}: role={role!r}; choose from {get_args(Role)}")

    def register(make: MakeView) -> MakeView:
        if name in VIEWS:
            raise ValueError(f"the view {name!r} is registered already")
        VIEWS[name] = ViewSpec(name, make, role, needs_mask, fallback)
        return make

    return register


def check_views(names: Iterable[str], setting: str = "view") -> list[str]:
    """``names`` as a list, after checking that each one is a registered view.

    Args:
        names: view names.
        setting: the configuration key named in the error (``data.view``).

    Raises:
        UnknownViewError: a name that is not registered (the message lists the views).
    """
    names = [str(n) for n in names]
    for name in names:
        if name not in VIEWS:
            raise UnknownViewError(
                f"{setting}: unknown view {name!r}; the registered views are "
                f"{', '.join(VIEWS)} (a new one is registered in occam_l2r/views.py with "
                "@register_view)"
            )
    return names


def role_of(name: str) -> Role | None:
    """The :data:`Role` of the view ``name``, ``None`` for a name that is not registered."""
    spec = VIEWS.get(str(name))
    return spec.role if spec is not None else None


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


def keep_where(image: np.ndarray, keep: np.ndarray, fill: int = 0) -> np.ndarray:
    """A new array: ``image`` where ``keep`` (boolean ``(H, W)``) is True, ``fill`` elsewhere.

    The same pixels as ``out = image.copy(); out[~keep] = fill``, ~40x faster on a uint8 image
    (OpenCV's masked copy instead of numpy's boolean indexing, which dominated FG_M and BG_S).
    """
    out = np.full_like(image, fill)
    if (
        image.dtype == np.uint8
        and image.size
        and (image.ndim == 2 or image.ndim == 3 and image.shape[2] <= 4)
    ):
        import cv2  # imported here: this module stays light for the command line

        cv2.copyTo(image, np.ascontiguousarray(keep).view(np.uint8), out)
        return out
    out[keep] = image[keep]
    return out


def fg_masked(
    image: np.ndarray, box: Box, mask: np.ndarray, fill: int = 0, aspect: FgAspect = "pad"
) -> np.ndarray:
    """FG_M: set background pixels (mask False) to ``fill``, then crop the box to a square.

    Only the box is masked (the pixels outside it are cropped away anyway)."""
    x0, y0, x1, y1 = box
    crop = keep_where(image[y0:y1, x0:x1], mask[y0:y1, x0:x1], fill)
    return fg_crop(crop, (0, 0, crop.shape[1], crop.shape[0]), fill, aspect)


def bg_shape(image: np.ndarray, mask: np.ndarray, fill: int = 0) -> np.ndarray:
    """BG_S: set foreground pixels (mask True) to ``fill``; the object's shape stays visible."""
    return keep_where(image, ~np.asarray(mask, bool), fill)


def bg_box(image: np.ndarray, box: Box, fill: int = 0) -> np.ndarray:
    """BG_B: set every pixel inside the box to ``fill``."""
    x0, y0, x1, y1 = box
    out = image.copy()
    out[y0:y1, x0:x1] = fill
    return out


def square_crop_box(mask: np.ndarray) -> tuple[int, int, int]:
    """The square OCCAM's authors crop around a mask: ``(top, left, side)``.

    ``side`` is the longer side of the mask's tight box (``max(h, w)``, inclusive pixel
    counts); the square is centred on the box's centre ``((first + last) // 2`` per axis, in
    integer pixels) and starts ``side // 2`` before it. It may reach past the image border
    (negative ``top``/``left`` or past the last row/column); :func:`crop_resize` zero-pads
    there (AlexanderRubinstein/OCCAM ``masking.py``: ``mask2chw`` and ``crop_resize_gray``).
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("crop + resize needs a non-empty mask")
    top, bottom, left, right = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    side = max(bottom - top + 1, right - left + 1)
    return (top + bottom) // 2 - side // 2, (left + right) // 2 - side // 2, side


def _crop_zero_padded(a: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """The ``side`` x ``side`` window of ``a`` at ``(top, left)``, zeros outside ``a``."""
    out = np.zeros((side, side, *a.shape[2:]), dtype=a.dtype)
    h, w = a.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, h), min(left + side, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = a[y0:y1, x0:x1]
    return out


def _resize_float(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float ``(H, W)`` or ``(H, W, C)`` array to ``size`` = (H, W), each
    channel in float32 (PIL ``F`` images: half-pixel centres, antialiased when shrinking, as
    torchvision's ``Resize(..., BILINEAR)``)."""
    oh, ow = size
    if a.shape[:2] == (oh, ow):
        return a.astype(np.float32)
    planes = a[..., None] if a.ndim == 2 else a
    out = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(planes[..., c], np.float32), mode="F").resize(
                (ow, oh), Image.BILINEAR
            )
        )
        for c in range(planes.shape[-1])
    ]
    stacked = np.stack(out, axis=-1)
    return stacked[..., 0] if a.ndim == 2 else stacked


def crop_resize(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    background: CropBackground = "gray",
    geometry: CropGeometry = "square",
    gray: int = GRAY,
    out_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """OCCAM's "crop + resize" of a mask (§3.2.1, §E.1), ``background`` gray or original.

    ``geometry="square"`` (default; the authors' ``crop_resize_gray``, AlexanderRubinstein/OCCAM
    ``occam/robust_classification/masking.py``): the square of :func:`square_crop_box` is cut
    from the image *and* from the mask, zero-padded past the image border; both are resized
    with bilinear interpolation to ``out_size`` (the image's own ``(H, W)`` by default, so a
    non-square image stretches the square), and only then blended, in float:
    ``image * m + gray * (1 - m)`` with the resized (soft-edged) mask ``m``. Padding has
    ``m = 0`` and so turns gray. ``background="original"`` blends with the all-ones mask of the
    image instead (every pixel of the image kept, the padding past the border gray; the
    authors' tables have no "crop + resize / original" row, the paper's §E.1 names it).

    ``geometry="tight"`` (the toolkit's rule before; kept as the ``*_tight`` apply modes):
    pixels outside the mask set to ``gray`` first, the mask's tight box cropped and stretched
    (bilinear, uint8) to ``out_size``; ``original`` crops the same box with every pixel kept.

    Args:
        image: ``(H, W, 3)`` uint8.
        mask: boolean ``(H, W)``, not empty.
        background: ``gray`` or ``original``.
        geometry: ``square`` or ``tight``.
        gray: the gray (0-255; the authors' 0.5).
        out_size: ``(H, W)`` of the output; default the image's.

    Returns:
        ``(out_H, out_W, 3)`` uint8.
    """
    h, w = image.shape[:2]
    oh, ow = out_size or (h, w)
    mask = np.asarray(mask, bool)
    if geometry == "tight":
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            raise ValueError("crop + resize needs a non-empty mask")
        out = image.copy()
        if background == "gray":
            out[~mask] = gray
        crop = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        if crop.shape[:2] == (oh, ow):
            return crop
        return np.asarray(Image.fromarray(crop).resize((ow, oh), Image.BILINEAR))
    if geometry != "square":
        raise ValueError(f"crop geometry {geometry!r}: choose square or tight")
    top, left, side = square_crop_box(mask)
    keep = mask if background == "gray" else np.ones(mask.shape, bool)
    # the image resized in uint8 (one PIL call; within 0.5/255 of a float resize), the mask
    # in float, so that its soft edge is kept for the blend
    rgb = _crop_zero_padded(np.ascontiguousarray(image[..., :3]), top, left, side)
    if rgb.shape[:2] != (oh, ow):
        rgb = np.asarray(Image.fromarray(rgb).resize((ow, oh), Image.BILINEAR))
    m = _resize_float(_crop_zero_padded(keep.astype(np.float32), top, left, side), (oh, ow))
    m = np.clip(m, 0.0, 1.0)[..., None]
    blended = rgb.astype(np.float32) * m + float(gray) * (1.0 - m)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def crop_resize_gray(
    image: np.ndarray,
    mask: np.ndarray,
    gray: int = GRAY,
    out_size: tuple[int, int] | None = None,
    geometry: CropGeometry = "square",
) -> np.ndarray:
    """OCCAM's "crop + resize" with a gray background (:func:`crop_resize`): by default the
    authors' square around the mask's box, zero-padded, resized bilinearly to ``out_size`` (the
    image's size), then blended with ``gray``; ``geometry="tight"`` stretches the tight box."""
    return crop_resize(
        image, mask, background="gray", geometry=geometry, gray=gray, out_size=out_size
    )


def alpha_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """OCCAM's "α-channel": RGB plus the mask (255 inside, 0 outside) as a fourth channel."""
    return np.concatenate([image[..., :3], (mask.astype(np.uint8) * 255)[..., None]], axis=-1)


def alpha_fallback(image: np.ndarray) -> np.ndarray:
    """``alpha``'s fallback: RGB plus an all-foreground channel."""
    return alpha_image(image, np.ones(image.shape[:2], bool))


# ---------------------------------------------------------------- the registered views
# fg is None for the full/crop roles; the mask views always get a mask (select_foreground)


@register_view("FULL", role="full")
def full_view(image: np.ndarray, fg: Decomposition | None, options: ViewOptions) -> np.ndarray:
    """FULL: the image."""
    return image


@register_view("FG_C", role="foreground")
def fg_c_view(image: np.ndarray, fg: Decomposition | None, options: ViewOptions) -> np.ndarray:
    """FG_C: :func:`fg_crop` of the crop box."""
    assert fg is not None
    return fg_crop(image, fg.box, options.fill, options.fg_aspect)


@register_view("FG_M", role="foreground", needs_mask=True)
def fg_m_view(image: np.ndarray, fg: Decomposition | None, options: ViewOptions) -> np.ndarray:
    """FG_M: :func:`fg_masked` by the mask, cropped to the crop box."""
    assert fg is not None and fg.mask is not None
    return fg_masked(image, fg.box, fg.mask, options.fill, options.fg_aspect)


@register_view("BG_S", role="background", needs_mask=True)
def bg_s_view(image: np.ndarray, fg: Decomposition | None, options: ViewOptions) -> np.ndarray:
    """BG_S: :func:`bg_shape` of the mask."""
    assert fg is not None and fg.mask is not None
    return bg_shape(image, fg.mask, options.fill)


@register_view("BG_B", role="background")
def bg_b_view(image: np.ndarray, fg: Decomposition | None, options: ViewOptions) -> np.ndarray:
    """BG_B: :func:`bg_box` of the crop box."""
    assert fg is not None
    return bg_box(image, fg.box, options.fill)


@register_view("crop_resize_gray", role="occam", needs_mask=True)
def crop_resize_gray_view(
    image: np.ndarray, fg: Decomposition | None, options: ViewOptions
) -> np.ndarray:
    """OCCAM's :func:`crop_resize_gray` of the mask (its own gray, not ``fill``)."""
    assert fg is not None and fg.mask is not None
    return crop_resize_gray(image, fg.mask)


@register_view("alpha", role="occam", needs_mask=True, fallback=alpha_fallback)
def alpha_view(image: np.ndarray, fg: Decomposition | None, options: ViewOptions) -> np.ndarray:
    """OCCAM's :func:`alpha_image` of the mask."""
    assert fg is not None and fg.mask is not None
    return alpha_image(image, fg.mask)


@register_view("CENTERCROP", role="crop")
def centercrop_view(
    image: np.ndarray, fg: Decomposition | None, options: ViewOptions
) -> np.ndarray:
    """CENTERCROP: :func:`center_crop` (no segmentation involved, no fallback)."""
    return center_crop(image)


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
        mask = segmentation.mask(int(keep[0]))
        for i in keep[1:]:
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
    """The image a view falls back to: FULL, or the view's own fallback (``alpha``: RGB plus an
    all-foreground channel)."""
    fallback = VIEWS[view].fallback
    return image if fallback is None else fallback(image)


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
        view: a registered view (a key of :data:`VIEWS`).
        image: ``(H, W, C)`` uint8 image.
        segmentation: its segmentation (``None``: the ``no_segmentation`` fallback).
        score_threshold: detections scoring below it are dropped.
        foreground: ``top1`` or ``union`` of the kept detections.
        fill: constant (0-255) for padding and masking.
        crop_box: ``mask`` or ``detector`` box for FG_C, FG_M and BG_B (see the module).
        fg_aspect: FG_C / FG_M crop ``pad``-ded or ``stretch``-ed to a square.

    Raises:
        UnknownViewError: ``view`` is not registered.
    """
    (name,) = check_views([view])
    spec = VIEWS[name]
    options = ViewOptions(fill, fg_aspect)
    if not spec.uses_segmentation:
        return ViewResult(spec.make(image, None, options))
    if segmentation is not None and (segmentation.height, segmentation.width) != image.shape[:2]:
        raise ValueError(
            f"segmentation of {segmentation.image_id} is {segmentation.width}x{segmentation.height} "
            f"but the image is {image.shape[1]}x{image.shape[0]}; the store belongs to other images."
        )
    picked = select_foreground(segmentation, score_threshold, foreground, spec.needs_mask, crop_box)
    if isinstance(picked, str):
        return ViewResult(full_fallback(name, image), fallback=picked)
    return ViewResult(spec.make(image, picked, options))
