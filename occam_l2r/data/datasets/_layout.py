"""Helpers shared by the dataset modules: clear errors for missing files, folder listings, boxes.

Every dataset module reads its authors' original layout; when a file the layout needs is not
there, the error (:class:`DatasetNotFoundError`) names the path, what it should hold and where to
get it; a file that is there but not in the layout raises :class:`DatasetLayoutError`. Both are
:class:`~occam_l2r.errors.UserError` subclasses: ``python -m occam_l2r`` prints them as one
message.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from occam_l2r.errors import UserError

#: image file extensions accepted when a layout is a folder of images (lower case)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetNotFoundError(UserError, FileNotFoundError):
    """A folder or file of a dataset's layout is missing (a :class:`FileNotFoundError`)."""


class DatasetLayoutError(UserError, ValueError):
    """A dataset file is there but does not follow the layout (a :class:`ValueError`)."""


def require_dir(path: Path, dataset: str, hint: str) -> Path:
    """Return ``path`` if it is a folder, else raise a DatasetNotFoundError naming it and ``hint``."""
    if not path.is_dir():
        raise DatasetNotFoundError(f"{dataset}: folder not found: {path}. {hint}")
    return path


def require_file(path: Path, dataset: str, hint: str) -> Path:
    """Return ``path`` if it is a file, else raise a DatasetNotFoundError naming it and ``hint``."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{dataset}: file not found: {path}. {hint}")
    return path


def first_existing(candidates: list[Path], dataset: str, hint: str) -> Path:
    """The first of ``candidates`` that is a file; the error lists every name that was tried."""
    for path in candidates:
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise DatasetNotFoundError(f"{dataset}: none of these files exists: {tried}. {hint}")


def list_images(folder: Path) -> list[str]:
    """Names of the image files directly inside ``folder``, sorted (deterministic on every OS).

    One ``os.scandir`` pass (the file type comes with the listing: no ``stat`` per file, which
    matters for ImageNet's 1.28M training images).
    """
    with os.scandir(folder) as entries:
        return sorted(
            e.name
            for e in entries
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
        )


def list_folders(folder: Path) -> list[str]:
    """Names of the subfolders directly inside ``folder``, sorted."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir())


def read_json(path: Path, dataset: str, hint: str) -> Any:
    """The JSON document in ``path``; a missing or malformed file raises a clear error naming it."""
    require_file(path, dataset, hint)
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError) as err:
        raise DatasetLayoutError(f"{dataset}: {path} is not valid JSON ({err}). {hint}") from err


def read_voc_boxes(path: Path) -> tuple[list[list[float]], list[str], tuple[int, int] | None]:
    """Boxes of a Pascal-VOC XML file.

    Returns:
        ``(boxes, names, size)``: boxes as ``[xmin, ymin, xmax, ymax]`` in pixels, one object name
        per box, and the annotated ``(height, width)`` (None when the file has no ``size``).
    """
    root = ET.parse(path).getroot()
    boxes: list[list[float]] = []
    names: list[str] = []
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            continue
        boxes.append([float(bnd.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax")])
        names.append(obj.findtext("name", ""))
    size = root.find("size")
    hw = None
    if size is not None:
        h, w = int(size.findtext("height", "0")), int(size.findtext("width", "0"))
        hw = (h, w) if h > 0 and w > 0 else None
    return boxes, names, hw


def box_mask(box: list[float], height: int, width: int) -> np.ndarray:
    """A boolean ``(height, width)`` mask that is True inside the xyxy pixel ``box`` (inclusive)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    mask = np.zeros((height, width), dtype=bool)
    mask[max(y0, 0) : min(y1 + 1, height), max(x0, 0) : min(x1 + 1, width)] = True
    return mask


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a boolean mask to ``(height, width)``."""
    if mask.shape == (height, width):
        return mask
    rows = (np.arange(height) * mask.shape[0] // height).clip(0, mask.shape[0] - 1)
    cols = (np.arange(width) * mask.shape[1] // width).clip(0, mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]
