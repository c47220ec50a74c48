"""Dataset records: the one description of a sample that every stage shares, and image reading.

A dataset module (``occam_l2r/data/datasets/``) reads its original on-disk layout and yields
:class:`Record` objects. Nothing here knows about torch transforms, views or models.

:func:`read_image` is the one image reader of every stage (fully decoded, EXIF orientation
honoured, 16-bit images reduced to 8 bits by their own bit depth, :func:`wide_to_uint8`);
:func:`unreadable_reason` says why a file cannot be read, and :func:`size_mismatch` why a readable
image cannot be used with its ground-truth mask or stored segmentation. Checking many files at
once (in parallel, cached) is :mod:`occam_l2r.data.image_checks`.
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


#: PIL modes of 16-bit (and 32-bit integer) grayscale images, scaled to 8 bits by :func:`wide_to_uint8`
WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: PIL modes whose 16-bit files PIL itself reduces to 8 bits by keeping the high byte (PNG, TIFF)
WIDE_COLOUR_MODES = ("RGB", "RGBA", "LA")
#: EXIF tag of the orientation (1 = upright; 2-8 = flipped and/or rotated)
EXIF_ORIENTATION = 0x0112
#: the largest value of 8-bit data stored in a 16-bit image (kept as it is)
EIGHT_BIT_MAX = 255
#: 16-bit images whose values all lie in (255, 4095] are refused: 9- to 12-bit data stored
#: unscaled, or an almost black picture; either way ``v / 257`` would read black
AMBIGUOUS_MAX = 4095


class WideImageError(ValueError):
    """A 16-bit image whose bit depth cannot be told from its values (see :func:`wide_to_uint8`)."""


def wide_to_uint8(values: np.ndarray) -> np.ndarray:
    """The 8-bit picture of 16-bit pixel values (any shape): the one rule for 16-bit images.

    The bit depth is read from the image's own values (PNG's ``sBIT`` chunk is not needed: the
    PNG standard stores every sample scaled to the full 16 bits):

    - every value <= 255: 8-bit data stored in 16 bits (some tools write PNGs so); the values
      are kept as they are, so the picture equals its 8-bit original;
    - the largest value > 4095: 16-bit data over the full range; ``v -> round(v / 257)``
      (0 -> 0, 65535 -> 255), the exact inverse of the usual 8-to-16-bit expansion ``v * 257``;
      the image's range is not stretched (a dark photo stays dark);
    - otherwise (largest value in 256..4095): refused with :class:`WideImageError` -- 9- to
      12-bit data stored unscaled, or an almost black photo; ``v / 257`` would read it black.
      Rescale such files to 8 or 16 bits.

    Values outside ``[0, 65535]`` (32-bit integer images) are clipped first.
    """
    wide = np.clip(np.asarray(values).astype(np.int64), 0, 65535)
    top = int(wide.max()) if wide.size else 0
    if top <= EIGHT_BIT_MAX:
        return wide.astype(np.uint8)
    if top <= AMBIGUOUS_MAX:
        raise WideImageError(
            f"16-bit image whose values reach only {top} of 65535: it holds 9- to 12-bit data "
            "stored unscaled, or is almost black, and would read as a black picture. Rescale it "
            "to 8 bits (or to the full 16-bit range)"
        )
    return ((wide + 128) // 257).astype(np.uint8)


def to_uint8_rgb(im: Image.Image) -> np.ndarray:
    """An image's pixels as an ``(H, W, 3)`` uint8 RGB array.

    16-bit grayscale images (PIL modes ``I;16*``, and ``I``, the mode some readers give them)
    follow :func:`wide_to_uint8`; every other mode goes through PIL's ``convert("RGB")``.
    16-bit colour files are read by :func:`read_image` (PIL keeps only their high byte).
    """
    if im.mode in WIDE_INT_MODES:
        gray = wide_to_uint8(np.asarray(im))
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _is_wide_colour(im: Image.Image) -> bool:
    """Whether PIL will reduce ``im`` (not loaded yet) from 16 bits per sample by truncation."""
    if im.mode not in WIDE_COLOUR_MODES:
        return False
    for tile in getattr(im, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _wide_colour_pixels(path: Path) -> np.ndarray:
    """The 16-bit RGB samples of a 16-bit colour file (alpha dropped), decoded by OpenCV."""
    import cv2  # only for 16-bit colour files

    data = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise OSError("OpenCV cannot decode its 16-bit samples")
    if data.ndim == 2:
        return np.repeat(data[..., None], 3, axis=2)
    if data.shape[2] < 3:  # gray + alpha
        return np.repeat(data[..., :1], 3, axis=2)
    return data[..., [2, 1, 0]]  # OpenCV's BGR(A) -> RGB


def orientation(im: Image.Image) -> int:
    """The EXIF orientation of ``im`` (1, upright, without the tag or with a broken EXIF block)."""
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (ValueError, TypeError, OSError, SyntaxError):  # a broken EXIF block: ignore it
        return 1
    return value if value in range(1, 9) else 1


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation tag says (a no-op without the tag)."""
    if orientation(im) != 1:
        return ImageOps.exif_transpose(im)
    return im


def turned(pixels: np.ndarray, turn: int) -> np.ndarray:
    """``pixels`` turned as EXIF orientation ``turn`` says (PIL's transposes)."""
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(turn)
    return pixels if method is None else np.asarray(Image.fromarray(pixels).transpose(method))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` uint8 RGB array, fully decoded and upright.

    The EXIF orientation tag is honoured (a photo taken sideways comes out as it was shot), and
    16-bit images, grayscale or colour, are reduced to 8 bits by :func:`wide_to_uint8`.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is empty, not an image, corrupt or truncated, or a 16-bit image
            of ambiguous bit depth; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}. Check the dataset root in the config.")
    try:
        with Image.open(path) as im:
            wide_colour = _is_wide_colour(im)
            im.load()
            if not wide_colour:
                return to_uint8_rgb(upright(im))
            turn = orientation(im)
        return turned(wide_to_uint8(_wide_colour_pixels(path)), turn)
    except WideImageError as err:
        raise ImageReadError(f"cannot use image {path}: {err}.") from err
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


def image_check(path: str | Path) -> tuple[str | None, tuple[int, int] | None]:
    """Decode ``path`` as :func:`read_image` does: ``(None, (height, width))`` if it reads, else
    ``(why not, None)`` (one line)."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size == 0:
            return "empty file (0 bytes)", None
        image = read_image(path)
    except FileNotFoundError:
        return "file not found", None
    except (ImageReadError, OSError) as err:
        cause = err.__cause__ or err
        return " ".join(f"{type(cause).__name__}: {cause}".split()), None
    return None, (int(image.shape[0]), int(image.shape[1]))


def unreadable_reason(path: str | Path) -> str | None:
    """Decode ``path`` as :func:`read_image` does; ``None`` if it reads, else why not (one line)."""
    return image_check(path)[0]


def size_mismatch(
    image_size: tuple[int, int], other_size: tuple[int, int], what: str
) -> str | None:
    """The one size rule of a usable image: ``None`` when ``other_size`` (the ``(height, width)``
    of its ground-truth mask or stored segmentation, named ``what``) is the decoded image's
    ``image_size``, else why the image cannot be used with it (one line)."""
    (h, w), (oh, ow) = (int(v) for v in image_size), (int(v) for v in other_size)
    if (h, w) == (oh, ow):
        return None
    return f"the image is {w}x{h} but {what} is {ow}x{oh}"


def gt_mask_mismatch(
    dataset: RecordDataset, record: Record, image_size: tuple[int, int]
) -> str | None:
    """Why ``record``'s ground-truth masks do not fit its decoded image of ``image_size``
    (:func:`size_mismatch`), or ``None`` (they fit, or there is no readable mask: that is
    ``data.on_missing``'s business)."""
    try:
        masks = dataset.gt_masks(record)
    except (OSError, ValueError, SyntaxError):
        return None
    for mask in masks:
        if why := size_mismatch(image_size, mask.shape[:2], "its ground-truth mask"):
            return why
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
