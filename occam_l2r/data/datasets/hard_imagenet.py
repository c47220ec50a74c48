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

Splits: ``train`` (≈19k masks of ImageNet train) and ``test`` (the 750 masks of ImageNet val).
There is no validation split; L2R² holds out 10 % of train per class (the DataModule does).
L2R²'s Long-Tail (226 images) and Constant-background (99) test sets are not published with a
layout: give each as a folder of class folders (named by wnid, class name or ImageNet index)
via ``long_tail_root`` / ``constant_root``; they become splits ``test_lt`` / ``test_ct`` with
image ids ``long_tail/<class folder>/<file>`` / ``constant/<class folder>/<file>``.
``Record.mask_path`` is the absolute mask path (masks live outside ``root``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from occam_l2r.data.datasets._layout import list_images, require_dir, require_file, resize_mask
from occam_l2r.data.records import Record, RecordDataset

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


def _load_pickle(path: Path) -> object:
    with open(path, "rb") as fh:
        return pickle.load(fh)


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
        idx_to_wnid = _load_pickle(
            require_file(meta / "idx_to_wnid.pkl", "HardImageNet", MASK_HINT)
        )
        if isinstance(idx_to_wnid, (list, tuple)):
            idx_to_wnid = dict(enumerate(idx_to_wnid))
        self.imagenet_indices = [
            int(i)
            for i in _load_pickle(
                require_file(meta / "hard_imagenet_idx.pkl", "HardImageNet", MASK_HINT)
            )
        ]
        self.wnids = [str(idx_to_wnid[i]) for i in self.imagenet_indices]
        names_file = meta / "imagenet_classnames.pkl"
        all_names = _load_pickle(names_file) if names_file.is_file() else None
        self.class_names = [
            str(all_names[i]) if all_names is not None else HIN_CLASS_NAMES.get(i, self.wnids[k])
            for k, i in enumerate(self.imagenet_indices)
        ]

    @property
    def name(self) -> str:
        return "hard_imagenet"

    def _label_of_folder(self, folder: str) -> int:
        keys = {w: k for k, w in enumerate(self.wnids)}
        keys.update({_norm(n): k for k, n in enumerate(self.class_names)})
        keys.update({str(i): k for k, i in enumerate(self.imagenet_indices)})
        for key in (folder, _norm(folder), folder.split(" ", 1)[0]):
            if key in keys:
                return keys[key]
        raise ValueError(
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
                    raise ValueError(
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
            for folder in sorted(p.name for p in extra_root.iterdir() if p.is_dir()):
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
            raise FileNotFoundError(f"HardImageNet: mask not found: {path}. {MASK_HINT}")
        values = np.asarray(Image.open(path).convert("L"))
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        return [resize_mask(values > 0, height, width)]
