"""Dataset records: the one description of a sample that every stage shares.

A dataset module (``occam_l2r/data/datasets/``) reads its original on-disk layout and yields
:class:`Record` objects. Nothing here knows about torch transforms, views or models.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(RuntimeError):
    """An image file exists in the records but cannot be decoded."""


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


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as an ``(H, W, 3)`` uint8 RGB array.

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: the file is corrupt or truncated; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}. Check the dataset root in the config.")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageReadError(
            f"cannot decode image {path} ({err}); the file is corrupt or truncated. "
            "Re-extract it from the dataset archive, or remove it from the dataset."
        ) from err


class RecordDataset(abc.ABC):
    """Base of every dataset module: an on-disk layout turned into records.

    Subclasses set ``root``, ``class_names`` and implement :meth:`load_records`. Splits are named;
    ``train_split``, ``val_split`` and ``test_splits`` say which role each plays. A dataset with
    no validation split sets ``val_split = None`` and the DataModule holds out a fraction of train.
    """

    root: Path
    class_names: list[str]
    group_names: list[str] = []
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
