"""ImageNet-9 and its background variations (MadryLab/backgrounds_challenge, in9_eval.py).

Layout under ``root`` (the extracted release ``backgrounds_challenge_data.tar.gz``; ImageFolder
per variation)::

    <variation>/val/<NN_class>/*.JPEG     variation in original, mixed_same, mixed_rand,
                                          mixed_next, no_fg, only_bg_b, only_bg_t, only_fg
    fg_mask/val/<NN_class>/<name>.npy     foreground masks of original/val/<NN_class>/<name>.JPEG

and, optionally, the training tarballs of the repository's README (``in9l.tar.gz``,
``mixed_rand.tar.gz``, ...) unpacked under ``train_root``::

    <train_root>/<train variation>/train/<NN_class>/*
    <train_root>/<train variation>/val/...   their unclean validation images: never read

Classes ``00_dog, 01_bird, 02_wheeled vehicle, 03_reptile, 04_carnivore, 05_insect,
06_musical instrument, 07_primate, 08_fish``; label = the leading number. Every variation found
becomes a test split named after it (group = the variation): exactly the release's
``<variation>/val`` folders. A training tarball unpacked into the release root would merge its
unclean ``val/`` into one of them (every tarball but ``in9l`` is named after a test variation), so
a ``<variation>/train`` folder beside a test variation in ``root`` is refused with one message
that says where to unpack it; ``train_root`` defaults to ``root``, where ``in9l/`` may stay. With
``train_variation`` set, ``<train_root>/<train_variation>/train`` is the ``train`` split (no val
split: the DataModule holds one out; image ids relative to ``train_root``); without it the dataset
is evaluation only. Ground-truth masks (``fg_mask``) exist for ``original`` only.

1000-way ImageNet classifiers are scored on IN-9 through the repo's ``in_to_in9.json`` (in the
repository, not in the data release; ``in9_eval.py`` reads it): a JSON object mapping every
ImageNet-1k index (as a string, ``"0"`` to ``"999"``) to an IN-9 class, ``-1`` for the ImageNet
classes of no IN-9 class. Give its path as ``in_to_in9`` (default ``<root>/in_to_in9.json``);
:attr:`ImageNet9.in_to_in9` holds the mapped indices, and
:func:`~occam_l2r.data.datasets.imagenet.imagenet_mapped_accuracy` scores logits as
``tools/model_utils.py::eval_model`` does: the argmax mapped through it must equal the label, an
unmapped argmax (``-1``) is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from occam_l2r.data.datasets._layout import (
    DatasetLayoutError,
    DatasetNotFoundError,
    list_images,
    read_json,
    require_dir,
    resize_mask,
)
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.errors import option_flag

VARIATIONS = [
    "original", "mixed_same", "mixed_rand", "mixed_next", "no_fg", "only_bg_b", "only_bg_t", "only_fg",
]  # fmt: skip
CLASS_FOLDERS = [
    "00_dog", "01_bird", "02_wheeled vehicle", "03_reptile", "04_carnivore", "05_insect",
    "06_musical instrument", "07_primate", "08_fish",
]  # fmt: skip
DOWNLOAD_HINT = (
    "Download the backgrounds_challenge release (github.com/MadryLab/backgrounds_challenge, "
    "backgrounds_challenge_data.tar.gz) and set root to the folder holding original/, mixed_rand/, ..."
)
MAP_HINT = (
    "Take in_to_in9.json from github.com/MadryLab/backgrounds_challenge (the repository root) "
    "and give its path as in_to_in9 (or put it in the dataset root)."
)


def _train_root_flag() -> str:
    """The command-line flag of the folder that holds the unpacked training tarballs, as the
    running verb spells it (:func:`occam_l2r.errors.option_flag`)."""
    return option_flag("data", "dataset.init_args.train_root")


def read_in_to_in9(path: Path) -> dict[int, int]:
    """``{ImageNet-1k index: IN-9 class}`` of ``in_to_in9.json`` (the ``-1`` entries left out)."""
    data = read_json(path, "ImageNet9", MAP_HINT)
    try:
        mapping = {int(k): int(v) for k, v in data.items()}
    except (AttributeError, TypeError, ValueError) as err:
        raise DatasetLayoutError(
            f"ImageNet9: {path} is not a JSON object of ImageNet index -> IN-9 index. {MAP_HINT}"
        ) from err
    bad = {k: v for k, v in mapping.items() if not (0 <= k < 1000 and -1 <= v < len(CLASS_FOLDERS))}
    if bad:
        raise DatasetLayoutError(
            f"ImageNet9: {path} maps {dict(list(bad.items())[:3])}: keys must be ImageNet indices "
            f"0-999 and values IN-9 classes 0-8 or -1. {MAP_HINT}"
        )
    return {k: v for k, v in mapping.items() if v >= 0}


class ImageNet9(RecordDataset):
    """ImageNet-9 (IN-9): 9 coarse classes; one test split per background variation.

    Args:
        root: the extracted release (``original/val``, ``mixed_rand/val``, ..., ``fg_mask/val``).
        train_variation: optional training tarball (``in9l``, ``original``, ``mixed_rand``,
            ...) whose ``train/`` under ``train_root`` is the training split.
        in_to_in9: the repo's ``in_to_in9.json`` (default ``<root>/in_to_in9.json``), for
            scoring 1000-way ImageNet classifiers (:attr:`in_to_in9`).
        train_root: the folder the training tarballs are unpacked in (default ``root``; a
            tarball named after a test variation must go elsewhere).
    """

    val_split = None
    train_split: str | None = None

    def __init__(
        self,
        root: str,
        train_variation: str | None = None,
        in_to_in9: str | None = None,
        train_root: str | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.train_variation = train_variation
        self.train_root = Path(train_root) if train_root else self.root
        self.in_to_in9_path = Path(in_to_in9) if in_to_in9 else self.root / "in_to_in9.json"
        self.class_names = [f.split("_", 1)[1] for f in CLASS_FOLDERS]
        require_dir(self.root, "ImageNet9", DOWNLOAD_HINT)
        self.test_splits = [v for v in VARIATIONS if (self.root / v / "val").is_dir()]
        if not self.test_splits:
            raise DatasetNotFoundError(
                f"ImageNet9: no variation folder (<variation>/val) in {self.root}. {DOWNLOAD_HINT}"
            )
        self.group_names = list(self.test_splits)
        for variation in self.test_splits:
            if (self.root / variation / "train").is_dir():
                raise DatasetLayoutError(
                    f"ImageNet9: {self.root / variation / 'train'} is there, so the training "
                    f"tarball {variation}.tar.gz was unpacked into the release root and its unclean "
                    f"val/ is merged into the test images of {self.root / variation / 'val'}. "
                    "Unpack the training tarballs into a folder of their own, give its path as "
                    f"train_root ({_train_root_flag()} DIR), and extract {variation}/val again from "
                    "backgrounds_challenge_data.tar.gz."
                )
        if train_variation is not None:
            require_dir(
                self.train_root / train_variation / "train",
                "ImageNet9",
                f"train_variation={train_variation!r} needs <train_root>/{train_variation}/train "
                "(the training tarballs linked in the backgrounds_challenge README, unpacked in "
                f"train_root: {_train_root_flag()}, default root).",
            )
            self.train_split = "train"

    @property
    def name(self) -> str:
        return "imagenet9"

    @property
    def in_to_in9(self) -> dict[int, int]:
        """ImageNet-1k index -> IN-9 class, from ``in_to_in9.json`` (unmapped indices absent)."""
        return read_in_to_in9(self.in_to_in9_path)

    @property
    def imagenet_to_class(self) -> dict[int, int]:
        """The same mapping under the name every ImageNet-derived dataset uses."""
        return self.in_to_in9

    def _folder_records(
        self, split: str, folder: Path, group: str, base: Path | None = None
    ) -> list[Record]:
        """The images of ``folder`` (one subfolder per class), ids relative to ``base``."""
        base = self.root if base is None else base
        records = []
        for class_folder in sorted(p.name for p in folder.iterdir() if p.is_dir()):
            if class_folder not in CLASS_FOLDERS:
                raise DatasetLayoutError(
                    f"ImageNet9: unexpected class folder {folder / class_folder}; expected {CLASS_FOLDERS}"
                )
            label = CLASS_FOLDERS.index(class_folder)
            prefix = folder.relative_to(base) / class_folder
            for fname in list_images(folder / class_folder):
                records.append(
                    Record(
                        image_id=f"{prefix.as_posix()}/{fname}",
                        label=label,
                        split=split,
                        group=group,
                    )
                )
        return records

    def load_records(self) -> list[Record]:
        records = []
        for variation in self.test_splits:
            records += self._folder_records(variation, self.root / variation / "val", variation)
        if self.train_variation is not None:
            folder = self.train_root / self.train_variation / "train"
            records += self._folder_records("train", folder, self.train_variation, self.train_root)
        return records

    def image_path(self, record: Record) -> Path:
        """Test images under ``root``, training images under ``train_root``."""
        return (self.train_root if record.split == "train" else self.root) / record.image_id

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """The foreground mask from ``fg_mask/val`` (``original`` split only)."""
        if record.split != "original":
            raise ValueError(
                f"ImageNet9 has ground-truth masks (fg_mask/val) for the 'original' split only, "
                f"not {record.split!r}; use a detector segmenter."
            )
        _, _, class_folder, fname = record.image_id.split("/")
        path = self.root / "fg_mask" / "val" / class_folder / f"{Path(fname).stem}.npy"
        if not path.is_file():
            raise DatasetNotFoundError(
                f"ImageNet9: foreground mask not found: {path}. {DOWNLOAD_HINT}"
            )
        mask = np.asarray(np.load(path))
        if mask.ndim == 3:
            mask = mask[..., 0]
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        return [resize_mask(mask.astype(bool), height, width)]
