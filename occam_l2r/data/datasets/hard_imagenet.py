"""Hard ImageNet, read from the layout of mmoayeri/HardImageNet (datasets/hard_imagenet.py).

Hard ImageNet ships masks only (``hardImageNet.zip``); the RGB images come from the user's
ILSVRC2012. Two roots therefore:

- ``root``: the ImageNet folder the images are read from, ``<root>/{train,val}/<wnid>/<file>``
  (for Kaggle's copy: ``ILSVRC/Data/CLS-LOC``; a flat ``val/<file>`` is accepted too). Image ids
  are relative to it, e.g. ``train/n03218198/n03218198_1234.JPEG``.
- ``mask_root``: the extracted Hard ImageNet folder::

      meta/idx_to_wnid.pkl          {ImageNet index: wnid}
      meta/hard_imagenet_idx.pkl    the 15 ImageNet indices; label = position in this list
      meta/imagenet_classnames.pkl  (optional) the 1000 ImageNet class names
      {train,val}/<wnid>_<ImageNet file name>    mask, pixel > 0 = object

Labels are positions in ``hard_imagenet_idx.pkl``; :attr:`HardImageNet.imagenet_class_indices`
gives their ImageNet-1k indices (1000-way scoring through :attr:`HardImageNet.imagenet_to_class`).
Splits: ``train`` (≈19k masks of ImageNet train) and ``test`` (the 750 masks of ImageNet val).
There is no validation split; L2R² holds out 10 % of train per class (the DataModule does).
L2R²'s Long-Tail (226 images) and Constant-background (99) test sets are not published with a
layout: give each as a folder of class folders (named by wnid, class name or ImageNet index)
via ``long_tail_root`` / ``constant_root``; they become splits ``test_lt`` / ``test_ct`` with
image ids ``long_tail/<class folder>/<file>`` / ``constant/<class folder>/<file>``.
``Record.mask_path`` is the absolute mask path (masks live outside ``root``).

The ``meta/*.pkl`` files come from a download, so they are read by :func:`load_plain_pickle`, an
unpickler that builds plain containers (dict, list, tuple, set), strings, bytes and numbers only
(numpy numeric scalars too) and refuses anything else (:class:`UnsafePickleError`), so a pickle
that would call ``os.system`` or import any other callable never runs.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from occam_l2r.data.datasets._layout import (
    DatasetLayoutError,
    DatasetNotFoundError,
    list_folders,
    list_images,
    require_dir,
    require_file,
    resize_mask,
)
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.errors import UserError

#: names of the 15 classes by ImageNet index (used when meta/imagenet_classnames.pkl is absent)
HIN_CLASS_NAMES = {
    537: "dog sled", 379: "howler monkey", 785: "seat belt", 795: "ski", 837: "sunglasses",
    433: "swimming cap", 416: "balance beam", 602: "horizontal bar", 706: "patio",
    746: "hockey puck", 655: "miniskirt", 810: "space bar", 890: "volleyball",
    981: "baseball player", 801: "snorkel",
}  # fmt: skip
EXTRA_TESTS = {"test_lt": "long_tail", "test_ct": "constant"}
MASK_HINT = (
    "Download hardImageNet.zip (github.com/mmoayeri/HardImageNet) and set mask_root to the "
    "extracted folder that holds meta/, train/ and val/."
)
IMAGENET_HINT = (
    "Set root to your ILSVRC2012 folder with train/<wnid>/<file> and val/<wnid>/<file> "
    "(Kaggle: ILSVRC/Data/CLS-LOC); Hard ImageNet ships masks only."
)


class UnsafePickleError(UserError, pickle.UnpicklingError):
    """A metadata pickle holds something other than plain containers, strings and numbers."""


class _Refused(pickle.UnpicklingError):
    """Raised inside the unpickler for anything that is not plain data."""


#: the globals a plain-data pickle may name (protocols 0-2 spell sets, complex numbers and bytes
#: as calls, under Python 2's module name ``__builtin__``); everything else, e.g. ``os.system``
#: or ``builtins.eval``, is refused
_PLAIN_GLOBALS = {
    (module, name)
    for module in ("builtins", "__builtin__")
    for name in ("set", "frozenset", "complex")
} | {("collections", "OrderedDict")}
_NUMPY_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 of a str only."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() not in ("latin1", "ascii"):
        raise _Refused(f"it encodes bytes with {encoding!r}")
    return text.encode(encoding)


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> np.generic:
    """``numpy.core.multiarray.scalar`` for numeric dtypes only (no object scalars)."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise _Refused(f"it holds a numpy scalar of dtype {dtype!r}, not a number")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that resolves no global beyond :data:`_PLAIN_GLOBALS` and numpy scalars."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PLAIN_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in _NUMPY_SCALAR:
            return _numpy_scalar
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise _Refused(f"it names the global {module}.{name}")

    def persistent_load(self, pid: object) -> object:
        raise _Refused(f"it uses a persistent id ({pid!r})")


def load_plain_pickle(path: Path) -> object:
    """Unpickle ``path`` admitting only plain data (containers, strings, bytes, numbers).

    Raises:
        UnsafePickleError: the pickle names any other class or function (it would run code).
        DatasetLayoutError: the file is empty, truncated or not a pickle.
    """
    with open(path, "rb") as fh:
        try:
            return _PlainUnpickler(fh).load()
        except _Refused as err:
            raise UnsafePickleError(
                f"HardImageNet: refused to unpickle {path}: {err}, but Hard ImageNet's metadata "
                "holds only plain lists, dicts, strings and numbers. The file is not the one "
                f"from hardImageNet.zip (or was tampered with); do not load it. {MASK_HINT}"
            ) from err
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
                KeyError, AttributeError) as err:  # fmt: skip
            raise DatasetLayoutError(
                f"HardImageNet: cannot read {path} ({type(err).__name__}: {err}); the file is "
                f"empty, truncated or not a pickle. {MASK_HINT}"
            ) from err


def _checked(value: Any, kind: type | tuple[type, ...], path: Path, what: str) -> Any:
    """``value`` if it is a ``kind``, else a DatasetLayoutError naming ``path``."""
    if not isinstance(value, kind):
        raise DatasetLayoutError(
            f"HardImageNet: {path} holds a {type(value).__name__}, not {what}. {MASK_HINT}"
        )
    return value


def _read_meta(meta: Path) -> tuple[list[int], list[str], list[str]]:
    """The 15 ImageNet indices, their wnids and class names, from ``meta/*.pkl``."""
    wnid_file = require_file(meta / "idx_to_wnid.pkl", "HardImageNet", MASK_HINT)
    idx_to_wnid = _checked(
        load_plain_pickle(wnid_file), (dict, list, tuple), wnid_file, "ImageNet index -> wnid"
    )
    if not isinstance(idx_to_wnid, dict):
        idx_to_wnid = dict(enumerate(idx_to_wnid))
    idx_file = require_file(meta / "hard_imagenet_idx.pkl", "HardImageNet", MASK_HINT)
    indices = [
        int(i)
        for i in _checked(load_plain_pickle(idx_file), (list, tuple), idx_file, "a list of indices")
    ]
    unknown = [i for i in indices if i not in idx_to_wnid]
    if unknown:
        raise DatasetLayoutError(
            f"HardImageNet: {wnid_file} has no wnid for the indices {unknown} of {idx_file}. "
            f"{MASK_HINT}"
        )
    wnids = [str(idx_to_wnid[i]) for i in indices]
    names_file = meta / "imagenet_classnames.pkl"
    names = load_plain_pickle(names_file) if names_file.is_file() else None
    class_names = [
        str(names[i]) if names is not None else HIN_CLASS_NAMES.get(i, wnids[k])
        for k, i in enumerate(indices)
    ]
    return indices, wnids, class_names


def _norm(name: str) -> str:
    return name.lower().replace("_", " ").replace("-", " ").strip()


class HardImageNet(RecordDataset):
    """Hard ImageNet: 15 ImageNet classes with strong spurious cues, GT object masks.

    Args:
        root: ImageNet ILSVRC2012 folder the RGB images are read from (image ids relative to it).
        mask_root: the extracted Hard ImageNet folder (``meta/``, ``train/``, ``val/``).
        long_tail_root: optional folder of class folders: L2R²'s Long-Tail test set.
        constant_root: optional folder of class folders: L2R²'s Constant-background test set.
    """

    val_split = None

    def __init__(
        self,
        root: str,
        mask_root: str,
        long_tail_root: str | None = None,
        constant_root: str | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.mask_root = Path(mask_root)
        self.extra_roots = {
            split: Path(path)
            for split, path in (("test_lt", long_tail_root), ("test_ct", constant_root))
            if path is not None
        }
        self.train_split = "train"
        self.test_splits = ["test", *self.extra_roots]
        self.group_names = []
        meta = require_dir(self.mask_root / "meta", "HardImageNet", MASK_HINT)
        self.imagenet_indices, self.wnids, self.class_names = _read_meta(meta)

    @property
    def name(self) -> str:
        return "hard_imagenet"

    @property
    def imagenet_class_indices(self) -> list[int]:
        """The ImageNet-1k index of each of the 15 classes (``meta/hard_imagenet_idx.pkl``)."""
        return list(self.imagenet_indices)

    def _label_of_folder(self, folder: str) -> int:
        keys = {w: k for k, w in enumerate(self.wnids)}
        keys.update({_norm(n): k for k, n in enumerate(self.class_names)})
        keys.update({str(i): k for k, i in enumerate(self.imagenet_indices)})
        for key in (folder, _norm(folder), folder.split(" ", 1)[0]):
            if key in keys:
                return keys[key]
        raise DatasetLayoutError(
            f"HardImageNet: class folder {folder!r} of an extra test set is not one of the 15 classes; "
            f"name it by wnid ({self.wnids[0]}), class name ({self.class_names[0]!r}) or ImageNet index."
        )

    def load_records(self) -> list[Record]:
        require_dir(self.root, "HardImageNet", IMAGENET_HINT)
        label_of = {w: k for k, w in enumerate(self.wnids)}
        records: list[Record] = []
        for mask_split, split in (("train", "train"), ("val", "test")):
            mask_dir = require_dir(self.mask_root / mask_split, "HardImageNet", MASK_HINT)
            image_dir = require_dir(self.root / mask_split, "HardImageNet", IMAGENET_HINT)
            nested: dict[str, bool] = {}
            for mask_name in sorted(os.listdir(mask_dir)):
                wnid, _, fname = mask_name.partition("_")
                if wnid not in label_of or not fname:
                    raise DatasetLayoutError(
                        f"HardImageNet: mask {mask_dir / mask_name} is not named <wnid>_<ImageNet file> "
                        f"for one of the 15 wnids {self.wnids}"
                    )
                if wnid not in nested:
                    nested[wnid] = mask_split == "train" or (image_dir / wnid).is_dir()
                image_id = (
                    f"{mask_split}/{wnid}/{fname}" if nested[wnid] else f"{mask_split}/{fname}"
                )
                records.append(
                    Record(
                        image_id=image_id,
                        label=label_of[wnid],
                        split=split,
                        group="",
                        metadata={
                            "wnid": wnid,
                            "imagenet_index": self.imagenet_indices[label_of[wnid]],
                        },
                        mask_path=str((mask_dir / mask_name).absolute()),
                    )
                )
        for split, extra_root in self.extra_roots.items():
            require_dir(
                extra_root, "HardImageNet", f"The {EXTRA_TESTS[split]} test set of L2R² is missing."
            )
            before = len(records)
            for folder in list_folders(extra_root):
                label = self._label_of_folder(folder)
                for fname in list_images(extra_root / folder):
                    records.append(
                        Record(
                            image_id=f"{EXTRA_TESTS[split]}/{folder}/{fname}",
                            label=label,
                            split=split,
                            group="",
                            metadata={
                                "wnid": self.wnids[label],
                                "imagenet_index": self.imagenet_indices[label],
                            },
                        )
                    )
            if len(records) == before:
                raise DatasetLayoutError(
                    f"HardImageNet: {extra_root} holds no images in class folders; the "
                    f"{EXTRA_TESTS[split]} test set is read as <folder>/<class>/<image> with one "
                    f"folder per class named by wnid ({self.wnids[0]}), class name "
                    f"({self.class_names[0]!r}) or ImageNet index ({self.imagenet_indices[0]})."
                )
        return records

    def image_path(self, record: Record) -> Path:
        if record.split in self.extra_roots:
            return self.extra_roots[record.split] / record.image_id.split("/", 1)[1]
        return self.root / record.image_id

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """The object mask (pixel > 0, as the reference loader), resized to the image's size."""
        if record.mask_path is None:
            raise ValueError(
                f"HardImageNet has no ground-truth mask for {record.image_id} (split {record.split}); "
                "use a detector segmenter for the extra test sets."
            )
        path = Path(record.mask_path)
        if not path.is_file():
            raise DatasetNotFoundError(f"HardImageNet: mask not found: {path}. {MASK_HINT}")
        values = np.asarray(Image.open(path).convert("L"))
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        return [resize_mask(values > 0, height, width)]
