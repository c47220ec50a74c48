"""Applying a mask to an image, a(x, m) (OCCAM §3.2.1, §C and §E.1), and the network's input.

Three apply modes, the rows of OCCAM's Table 8 ("Apply Mask" and "BG" columns):

- ``crop_resize_gray`` — "crop + resize", background gray, in the authors' geometry
  (AlexanderRubinstein/OCCAM ``occam/robust_classification/masking.py``, ``crop_resize_gray``):
  a square of side max(h, w) centred on the mask's box, zero-padded past the image border, image
  and mask resized (bilinear) to the image size, then blended with gray 0.5
  (:func:`occam_l2r.views.crop_resize`);
- ``crop_resize_original`` — "crop + resize", background original: the same square with every
  pixel as in the image (the padding past the border gray; §E.1 "Choosing background");
- ``alpha`` — "α-channel", background original: the whole image plus the mask as a fourth
  channel (:func:`occam_l2r.views.alpha_image`) for an AlphaCLIP encoder
  (:mod:`occam_l2r.models.alpha_clip`).

Every applied image becomes a square network input with :func:`fit_square` (shortest side
resized to the model's input size, centre crop), as the authors' evaluation transform does
(``Resize(224)`` + ``CenterCrop(224)`` after the mask is applied at the image's own size,
AlexanderRubinstein/OCCAM ``occam/robust_classification/eval.py``).

The toolkit's earlier crop, the mask's *tight* box stretched to the image size (gray set before
the resize), stays available as the modes ``crop_resize_gray_tight`` and
``crop_resize_original_tight`` (:data:`TIGHT_APPLY_MODES`; not run unless named in
``data.apply_modes``).

The whole-image baselines (Table 8's mask-free rows) go through the same square input:
:func:`whole_image` (RGB, or RGB with an all-ones α-channel, the "whole image" foreground
detector of §E.1).

:func:`applied_inputs` and :func:`whole_input` give the network's uint8 tensors of an image: the
OCCAM dataset (:class:`~occam_l2r.data.occam_datamodule.OccamDataset`) and
:meth:`occam_l2r.occam.model.Occam.predict` (one image) build them alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from PIL import Image

from occam_l2r.views import alpha_image, crop_resize

ApplyMode = Literal[
    "crop_resize_gray",
    "crop_resize_original",
    "alpha",
    "crop_resize_gray_tight",
    "crop_resize_original_tight",
]
#: the paper's apply modes, in the order of the tables (the default of ``data.apply_modes``)
APPLY_MODES: tuple[str, ...] = ("crop_resize_gray", "crop_resize_original", "alpha")
#: the toolkit's earlier tight-box crop + resize, on request only
TIGHT_APPLY_MODES: tuple[str, ...] = ("crop_resize_gray_tight", "crop_resize_original_tight")
#: every apply mode ``data.apply_modes`` accepts
ALL_APPLY_MODES: tuple[str, ...] = APPLY_MODES + TIGHT_APPLY_MODES
#: Table 8's "Apply Mask" and "BG" columns of each mode
TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    "crop_resize_gray": ("crop + resize", "gray"),
    "crop_resize_original": ("crop + resize", "original"),
    "alpha": ("α-channel", "original"),
    "crop_resize_gray_tight": ("crop + resize (tight box)", "gray"),
    "crop_resize_original_tight": ("crop + resize (tight box)", "original"),
}
#: the crop + resize modes: mode -> (background, geometry) of :func:`occam_l2r.views.crop_resize`
CROP_MODES: dict[str, tuple[str, str]] = {
    "crop_resize_gray": ("gray", "square"),
    "crop_resize_original": ("original", "square"),
    "crop_resize_gray_tight": ("gray", "tight"),
    "crop_resize_original_tight": ("original", "tight"),
}


def channels(mode: str) -> int:
    """Channels of the network input of ``mode`` (4 for ``alpha``, else 3)."""
    return 4 if mode == "alpha" else 3


def crop_resize_original(
    image: np.ndarray, mask: np.ndarray, geometry: str = "square"
) -> np.ndarray:
    """ "crop + resize" with the original background: the crop of
    :func:`~occam_l2r.views.crop_resize_gray` (the authors' square by default, ``tight`` for the
    mask's tight box) with every pixel of the image kept, resized to the image size."""
    return crop_resize(image, mask, background="original", geometry=geometry)  # type: ignore[arg-type]


def _resize(image: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), resample))


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the shortest side to ``size`` (bilinear) and crop the centre square.

    A fourth (α) channel is resized on its own, so the RGB values under a zero α stay as they
    are (PIL would premultiply an RGBA image).

    Args:
        image: ``(H, W, 3)`` or ``(H, W, 4)`` uint8.
        size: side of the square output.

    Returns:
        ``(size, size, C)`` uint8.
    """
    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    parts = [_resize(np.ascontiguousarray(image[..., :3]), (nh, nw), Image.BILINEAR)]
    if image.shape[-1] == 4:
        alpha = np.ascontiguousarray(image[..., 3])
        parts.append(_resize(alpha, (nh, nw), Image.BILINEAR)[..., None])
    out = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(out[top : top + size, left : left + size])


def apply_mask(mode: str, image: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """a(x, m) as a square network input.

    Args:
        mode: one of :data:`ALL_APPLY_MODES`.
        image: ``(H, W, 3)`` uint8.
        mask: boolean ``(H, W)``, not empty.
        size: side of the network input.

    Returns:
        ``(size, size, 3)`` uint8 (``(size, size, 4)`` for ``alpha``).
    """
    if mode in CROP_MODES:
        background, geometry = CROP_MODES[mode]
        applied = crop_resize(image, mask, background=background, geometry=geometry)  # type: ignore[arg-type]
    elif mode == "alpha":
        applied = alpha_image(image, mask)
    else:
        raise ValueError(f"unknown apply mode {mode!r}; choose one of {ALL_APPLY_MODES}")
    return fit_square(applied, size)


def whole_image(mode: str, image: np.ndarray, size: int) -> np.ndarray:
    """The whole image as the input of ``mode``'s encoder: RGB, or RGB plus a full α-channel."""
    if mode == "alpha":
        return fit_square(alpha_image(image, np.ones(image.shape[:2], bool)), size)
    return fit_square(image, size)


def stack_inputs(images: list[np.ndarray], mode: str, size: int) -> torch.Tensor:
    """Square ``(H, W, C)`` uint8 inputs of ``mode`` as one ``(K, C, size, size)`` uint8 tensor
    (``(0, C, size, size)`` for none)."""
    if not images:
        return torch.zeros((0, channels(mode), size, size), dtype=torch.uint8)
    # the transpose in numpy: a torch copy here would wake its thread pool for 100 kB
    return torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))


def applied_inputs(
    mode: str, image: np.ndarray, masks: Sequence[np.ndarray], size: int
) -> torch.Tensor:
    """Every mask of an image applied with ``mode``: ``(K, C, size, size)`` uint8.

    Args:
        mode: ``crop_resize_gray``, ``crop_resize_original`` or ``alpha``.
        image: ``(H, W, 3)`` uint8.
        masks: boolean ``(H, W)`` masks, none empty.
        size: side of the network input.
    """
    return stack_inputs([apply_mask(mode, image, m, size) for m in masks], mode, size)


def whole_input(mode: str, image: np.ndarray, size: int) -> torch.Tensor:
    """The whole image as ``mode``'s network input: ``(C, size, size)`` uint8 (see
    :func:`whole_image`)."""
    return stack_inputs([whole_image(mode, image, size)], mode, size)[0]
