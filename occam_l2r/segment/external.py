"""Masks computed elsewhere (CropFormer, FT-Dinosaur, ...) imported into a segmentation store.

OCCAM's main mask sources, CropFormer (Lu et al., 2023) and FT-Dinosaur (Didolkar et al., 2025),
are not pip-installable; run them with their own code and save one instance-id PNG per image:

    <folder>/<image id with its extension replaced by .png>

(the image id is the path relative to the dataset root, e.g. ``images/test/one/000123.png``).
Each pixel holds the id of the mask it belongs to (OCCAM §3.2.1: every pixel is assigned to one of
the K masks). ``background`` is the id of pixels of no mask, or ``null`` when every id is a mask;
its default depends on the source (:data:`BACKGROUND_BY_SOURCE`, the OCCAM authors' rule, who
make every value of an id map a candidate mask: ``np.unique`` over the map in
``occam/datasets/utils.py`` ``make_source_df``):

- ``cropformer``: ``null`` — id 0 is the area no CropFormer mask covers
  (``EntityNetV2.run`` paints the masks into zeros), a candidate like the others;
- ``ft_dinosaur``: ``null`` — the slots' argmax map holds slots 0..K-1, slot 0 an object like
  the others;
- any other source: ``0`` (the format :func:`write_instance_png` writes).

Set ``background: 0`` to drop id 0 anyway (e.g. a CropFormer store for OCCAM Table 1, where the
authors' fork scores CropFormer's predicted masks only). 8-bit (``L``/``P``) and 16-bit
(``I;16``) PNGs hold the id directly; an RGB PNG is read as ``R * 65536 + G * 256 + B``.
:func:`write_instance_png` writes this format from boolean masks (e.g. to convert the authors'
``.pt`` id maps).

:class:`ExternalMasks` is the segmenter that reads them, so the ``segment`` verb imports a folder
into a store with the store's usual guarantees (resumable, atomic, failures listed: a missing PNG
or one whose size differs from the image's is a failure of that image)::

    python -m occam_l2r segment --config configs/segment/<dataset>_cropformer.yaml

with ``segmenter: {class_path: occam_l2r.segment.external.ExternalMasks, init_args: {folder: ...,
source: cropformer}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from occam_l2r.errors import UserError
from occam_l2r.segment.segmenters import Item, Segmenter
from occam_l2r.segmentation import Segmentation

#: the id of "no mask" of each source when ``background`` is not set: ``None`` = every id is a
#: mask (see the module docstring); a source not listed gets :data:`DEFAULT_BACKGROUND`
BACKGROUND_BY_SOURCE: dict[str, int | None] = {"cropformer": None, "ft_dinosaur": None}
DEFAULT_BACKGROUND = 0


def default_background(source: str) -> int | None:
    """The ``background`` id of ``source`` when the config does not set it."""
    return BACKGROUND_BY_SOURCE.get(source.lower(), DEFAULT_BACKGROUND)


class MaskFolderNotFoundError(UserError, FileNotFoundError):
    """The folder of external masks does not exist (the message names it and the setting)."""


def read_instance_ids(path: str | Path) -> np.ndarray:
    """The ``(H, W)`` int64 instance-id map of a PNG (see the module docstring for the modes)."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGB", "RGBA"):
            rgb = np.asarray(im.convert("RGB")).astype(np.int64)
            return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        if im.mode not in ("L", "P", "I", "I;16", "I;16L", "I;16B", "1"):
            raise ValueError(f"{path} is a {im.mode} PNG, not an instance-id map")
        return np.asarray(im).astype(np.int64)


def write_instance_png(path: str | Path, masks: Sequence[np.ndarray], height: int, width: int):
    """Write non-overlapping boolean masks as an instance-id PNG (mask i -> id i + 1, 0 = none).

    8-bit up to 255 masks, 16-bit beyond. Raises ``ValueError`` if two masks share a pixel.
    """
    ids = np.zeros((height, width), np.int64)
    for i, mask in enumerate(masks):
        mask = np.asarray(mask, bool)
        if (ids[mask] != 0).any():
            raise ValueError(f"mask {i} overlaps an earlier mask: an id map holds one id per pixel")
        ids[mask] = i + 1
    dtype = np.uint8 if len(masks) < 256 else np.uint16
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(ids.astype(dtype)).save(tmp)
    tmp.replace(path)


class ExternalMasks(Segmenter):
    """Reads per-image instance-id PNGs (CropFormer / FT-Dinosaur outputs) as class-agnostic masks.

    Args:
        folder: the folder of PNGs, mirroring the dataset's image paths.
        source: the name of the mask source (recorded as the segmenter name; e.g.
            ``cropformer``, ``ft_dinosaur``).
        suffix: the mask files' extension, replacing the image's.
        background: the id of pixels of no mask, ``null``: every id is a mask; ``source``
            (default): the source's own rule (:func:`default_background`: ``null`` for
            ``cropformer`` and ``ft_dinosaur``, 0 otherwise).
        min_area: masks smaller than this many pixels are dropped.
    """

    def __init__(
        self,
        folder: str,
        source: str = "external",
        suffix: str = ".png",
        background: int | Literal["source"] | None = "source",
        min_area: int = 1,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.name = source
        self.suffix = suffix
        self.background = default_background(source) if background == "source" else background
        self.min_area = min_area

    def config(self) -> dict[str, Any]:
        return {
            "segmenter": self.name,
            "folder": str(self.folder.resolve()),
            "suffix": self.suffix,
            "background": self.background,
            "min_area": self.min_area,
        }

    def check_weights(self) -> None:
        """No weights, but the folder must exist (checked before any image is read)."""
        if not self.folder.is_dir():
            raise MaskFolderNotFoundError(
                f"mask folder {self.folder} (source {self.name}) does not exist; set "
                "`segmenter.init_args.folder` to the folder of instance-id PNGs."
            )

    def mask_path(self, image_id: str) -> Path:
        """The PNG of ``image_id``."""
        return self.folder / Path(image_id).with_suffix(self.suffix)

    def read(self, image_id: str, height: int, width: int) -> Segmentation:
        """The masks of one image; raises ``OSError``/``ValueError`` when unusable."""
        path = self.mask_path(image_id)
        if not path.is_file():
            raise FileNotFoundError(f"no mask file {path}")
        ids = read_instance_ids(path)
        if ids.shape != (height, width):
            raise ValueError(
                f"mask file {path} is {ids.shape[1]}x{ids.shape[0]}, the image {width}x{height}"
            )
        masks = [
            m
            for v in np.unique(ids)
            if v != self.background and int((m := ids == v).sum()) >= self.min_area
        ]
        return Segmentation.from_masks(image_id, masks, height=height, width=width, prompts=[])

    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        out: list[Segmentation | str] = []
        for it in items:
            try:
                out.append(self.read(it["image_id"], int(it["height"]), int(it["width"])))
            except (OSError, ValueError) as err:
                out.append(f"{self.name} masks of {it['image_id']}: {err}")
        return out
