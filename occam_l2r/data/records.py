"""Dataset records: the one description of a sample that every stage shares, and image reading.

A dataset module (``occam_l2r/data/datasets/``) reads its original on-disk layout and yields
:class:`Record` objects. Nothing here knows about torch transforms, views or models.

:func:`read_image` is the one image reader of every stage (fully decoded, EXIF orientation
honoured, 16-bit images scaled to 8 bits); :func:`unreadable_reason` says why a file cannot be
read. Checking many files at once (in parallel, cached) is :mod:`occam_l2r.data.image_checks`.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from occam_l2r.errors import UserError

log = logging.getLogger(__name__)


class ImageReadError(UserError, RuntimeError):
    """An image file exists in the records but cannot be decoded (the message names it)."""


class NoGroundTruthError(UserError, ValueError):
    """``segmentation: gt`` on a dataset without ground-truth masks for the images in use."""


@dataclass(frozen=True)
class Record:
    """One sample of a dataset.

    Attributes:
        image_id: path of the image relative to the dataset root (also the key in stores).
        label: class index in ``[0, num_classes)``.
        split: split name (``train``, ``val``, ``test_shift``, ...).
        group: group or subset name (background kind, ``common``/``counter``, ...).
        metadata: optional extra columns (habitat, month, ...).
        mask_path: optional ground-truth mask, relative to the dataset root.
    """

    image_id: str
    label: int
    split: str
    group: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    mask_path: str | None = None


#: PIL modes of 16-bit (and 32-bit integer) images, scaled to 8 bits by :func:`read_image`
WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: EXIF tag of the orientation (1 = upright; 2-8 = flipped and/or rotated)
EXIF_ORIENTATION = 0x0112


def to_uint8_rgb(im: Image.Image) -> np.ndarray:
    """An image's pixels as an ``(H, W, 3)`` uint8 RGB array.

    16-bit images (PIL modes ``I;16*``, and ``I``, the mode some readers give them) are mapped
    from the full 16-bit range to 8 bits: ``v -> round(v / 257)`` (0 -> 0, 65535 -> 255), the
    exact inverse of the usual 8-to-16-bit expansion ``v * 257``. The image's own range is not
    stretched, so two images keep their relative brightness (a 12-bit image stored in 16 bits
    stays dark, as it would in any viewer). Every other mode goes through PIL's ``convert("RGB")``
    (PIL already reduces 16-bit RGB PNGs to 8 bits correctly).
    """
    if im.mode in WIDE_INT_MODES:
        wide = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        gray = ((wide + 128) // 257).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation tag says (a no-op without the tag)."""
    try:
        orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):  # a broken EXIF block: ignore it
        return im
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im)
    return im


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` uint8 RGB array, fully decoded and upright.

    The EXIF orientation tag is honoured (a photo taken sideways comes out as it was shot), and
    16-bit images are scaled to 8 bits (:func:`to_uint8_rgb`).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is empty, not an image, corrupt or truncated; the message names
            the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}. Check the dataset root in the config.")
    try:
        with Image.open(path) as im:
            im.load()
            return to_uint8_rgb(upright(im))
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        Image.DecompressionBombError,
    ) as err:
        raise ImageReadError(
            f"cannot decode image {path} ({err}); the file is corrupt, truncated or not an image. "
            "Re-extract it from the dataset archive, or remove it from the dataset."
        ) from err


def unreadable_reason(path: str | Path) -> str | None:
    """Decode ``path`` as :func:`read_image` does; ``None`` if it reads, else why not (one line)."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == 0:
            return "empty file (0 bytes)"
        read_image(path)
    except FileNotFoundError:
        return "file not found"
    except (ImageReadError, OSError) as err:
        cause = err.__cause__ or err
        return " ".join(f"{type(cause).__name__}: {cause}".split())
    return None


def gt_mask_problem(dataset: RecordDataset, records: list[Record], probes: int = 8) -> str | None:
    """Why ``dataset`` has no ground-truth masks for ``records``, or ``None`` if it has some.

    A dataset with a ``has_gt_mask(record)`` method is asked for every record; otherwise
    :meth:`RecordDataset.gt_masks` is called on up to ``probes`` records spread over the list:
    masks are missing when every probe raises ``ValueError`` (the "no mask for this image" error
    of the dataset modules). A probe that fails otherwise (an unreadable file) proves nothing.
    """
    if not records:
        return None
    has = getattr(dataset, "has_gt_mask", None)
    if callable(has):
        if any(has(r) for r in records):
            return None
        return f"none of its {len(records)} images has a ground-truth mask"
    step = max(1, len(records) // probes)
    reason = None
    for record in records[::step][:probes]:
        try:
            dataset.gt_masks(record)
            return None
        except ValueError as err:
            reason = str(err)
        except (OSError, SyntaxError):
            continue
    return reason


class RecordDataset(abc.ABC):
    """Base of every dataset module: an on-disk layout turned into records.

    Subclasses set ``root``, ``class_names`` and implement :meth:`load_records`. Splits are named;
    ``train_split``, ``val_split`` and ``test_splits`` say which role each plays. A dataset with
    no validation split sets ``val_split = None`` and the DataModule holds out a fraction of train.

    ``headline_metric`` is the metric the dataset's paper reports first (``acc``, or ``macro_acc``
    for FungiTastic); model selection on val follows it. ``imagenet_class_indices`` gives, for a
    dataset whose classes are ImageNet-1k classes, each class's ImageNet-1k index (``None``
    otherwise), so it can be scored in the 1000-way label space.
    """

    root: Path
    class_names: list[str]
    group_names: list[str] = []
    headline_metric: str = "acc"
    train_split: str | None = "train"
    val_split: str | None = "val"
    test_splits: list[str] = ["test"]

    def __init__(self) -> None:
        self._records: dict[str, list[Record]] | None = None

    @abc.abstractmethod
    def load_records(self) -> list[Record]:
        """Read the dataset's own index files and return all records of all splits."""

    def prepare(self) -> None:  # noqa: B027 - optional hook, a no-op for real data
        """Create the data on disk if the dataset can (synthetic data); a no-op for real data."""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    @property
    def imagenet_class_indices(self) -> list[int] | None:
        """The ImageNet-1k index of each class, or ``None`` if the classes are not ImageNet's."""
        return None

    @property
    def imagenet_to_class(self) -> dict[int, int] | None:
        """ImageNet-1k index -> class, for scoring 1000-way predictions (other indices are wrong);
        the inverse of :attr:`imagenet_class_indices` unless a dataset maps several ImageNet
        classes to one of its own (ImageNet-9, ImageNet-D override it)."""
        indices = self.imagenet_class_indices
        return None if indices is None else {index: k for k, index in enumerate(indices)}

    def _by_split(self) -> dict[str, list[Record]]:
        if self._records is None:
            by_split: dict[str, list[Record]] = {}
            for rec in self.load_records():
                by_split.setdefault(rec.split, []).append(rec)
            self._records = by_split
        return self._records

    def records(self, split: str) -> list[Record]:
        """All records of ``split``; raises a clear error for an unknown split."""
        by_split = self._by_split()
        if split not in by_split:
            raise KeyError(
                f"split {split!r} not in {type(self).__name__} at {self.root}; known: {sorted(by_split)}"
            )
        return by_split[split]

    def all_records(self) -> list[Record]:
        """Every record of every split, in a stable order."""
        by_split = self._by_split()
        return [r for split in sorted(by_split) for r in by_split[split]]

    def image_path(self, record: Record) -> Path:
        return self.root / record.image_id

    def read_image(self, record: Record) -> np.ndarray:
        return read_image(self.image_path(record))

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """Ground-truth instance masks of ``record`` as boolean ``(H, W)`` arrays.

        The default reads ``record.mask_path`` (a PNG; every non-zero value is one instance id).
        Datasets with another mask format override this.
        """
        if record.mask_path is None:
            raise ValueError(
                f"{type(self).__name__} has no ground-truth mask for {record.image_id}; "
                "use a detector segmenter (python -m occam_l2r segment) instead of 'gt'."
            )
        path = self.root / record.mask_path
        if not path.is_file():
            raise FileNotFoundError(f"ground-truth mask not found: {path}")
        ids = np.asarray(Image.open(path))
        if ids.ndim == 3:
            ids = ids[..., 0]
        return [ids == v for v in np.unique(ids) if v != 0]
