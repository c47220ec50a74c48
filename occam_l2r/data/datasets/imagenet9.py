"""ImageNet-9 and its background variations (MadryLab/backgrounds_challenge, in9_eval.py).

Layout under ``root`` (the extracted release; ImageFolder per variation)::

    <variation>/val/<NN_class>/*.JPEG     variation in original, mixed_same, mixed_rand,
                                          mixed_next, no_fg, only_bg_b, only_bg_t, only_fg
    fg_mask/val/<NN_class>/<name>.npy     foreground masks of original/val/<NN_class>/<name>.JPEG
    <train variation>/train/<NN_class>/*  optional training data (e.g. in9l.tar.gz -> in9l/train)

Classes ``00_dog, 01_bird, 02_wheeled vehicle, 03_reptile, 04_carnivore, 05_insect,
06_musical instrument, 07_primate, 08_fish``; label = the leading number. Every variation found
becomes a test split named after it (group = the variation). With ``train_variation`` set, its
``train/`` folder is the ``train`` split (no val split: the DataModule holds one out); without it
the dataset is evaluation only. Ground-truth masks (``fg_mask``) exist for ``original`` only.
Mapping ImageNet-1k predictions to IN-9 uses the repo's ``in_to_in9.json`` (not part of the data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from occam_l2r.data.datasets._layout import list_images, require_dir, resize_mask
from occam_l2r.data.records import Record, RecordDataset

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


class ImageNet9(RecordDataset):
    """ImageNet-9 (IN-9): 9 coarse classes; one test split per background variation.

    Args:
        root: the extracted release (``original/val``, ``mixed_rand/val``, ..., ``fg_mask/val``).
        train_variation: optional folder under root whose ``train/`` is the training split
            (``in9l``, ``original``, ``mixed_rand``, ...).
    """

    val_split = None
    train_split: str | None = None

    def __init__(self, root: str, train_variation: str | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.train_variation = train_variation
        self.class_names = [f.split("_", 1)[1] for f in CLASS_FOLDERS]
        require_dir(self.root, "ImageNet9", DOWNLOAD_HINT)
        self.test_splits = [v for v in VARIATIONS if (self.root / v / "val").is_dir()]
        if not self.test_splits:
            raise FileNotFoundError(
                f"ImageNet9: no variation folder (<variation>/val) in {self.root}. {DOWNLOAD_HINT}"
            )
        self.group_names = list(self.test_splits)
        if train_variation is not None:
            require_dir(
                self.root / train_variation / "train",
                "ImageNet9",
                f"train_variation={train_variation!r} needs <root>/{train_variation}/train "
                "(the training tarballs linked in the backgrounds_challenge README).",
            )
            self.train_split = "train"

    @property
    def name(self) -> str:
        return "imagenet9"

    def _folder_records(self, split: str, folder: Path, group: str) -> list[Record]:
        records = []
        for class_folder in sorted(p.name for p in folder.iterdir() if p.is_dir()):
            if class_folder not in CLASS_FOLDERS:
                raise ValueError(
                    f"ImageNet9: unexpected class folder {folder / class_folder}; expected {CLASS_FOLDERS}"
                )
            label = CLASS_FOLDERS.index(class_folder)
            prefix = folder.relative_to(self.root) / class_folder
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
            folder = self.root / self.train_variation / "train"
            records += self._folder_records("train", folder, self.train_variation)
        return records

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
            raise FileNotFoundError(
                f"ImageNet9: foreground mask not found: {path}. {DOWNLOAD_HINT}"
            )
        mask = np.asarray(np.load(path))
        if mask.ndim == 3:
            mask = mask[..., 0]
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        return [resize_mask(mask.astype(bool), height, width)]
