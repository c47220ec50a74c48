"""UrbanCars (Li et al., CVPR 2023), read from the layout facebookresearch/Whac-A-Mole generates.

UrbanCars is not downloaded: ``create_datasets/urbancars/gen_urbancars.py`` of the repo builds it
(``scripts/prepare_dataset_models/create_urbancars.sh``) into ``data/urbancars``; its reader is
``dataset/urbancars.py``. Layout under ``root`` (the ``urbancars`` folder, or its parent)::

    bg-0.95_co_occur_obj-0.95/train/<composition>/NNN.jpg           training split
    bg-0.5_co_occur_obj-0.5/{val,test}/<composition>/NNN.jpg        balanced val and test
    <composition> = obj-{urban,country}_bg-{urban,country}_co_occur_obj-{urban,country}
    .../<composition>/NNN_mask.png               the car's mask (white = car)
    .../<composition>/NNN_co_occur_obj_mask.png  the co-occurring object's mask

The label is the car type (``obj``: 0 urban, 1 country); background and co-occurring object
(0 urban, 1 country) are the two spurious attributes. Group = ``obj*4 + bg*2 + co_occur_obj``
(the reference's ``group_label="both"``), named by the composition folder; the worst-group
accuracy over these 8 groups on ``test`` is OCCAM's Table 2 metric. With the generator's defaults
(4,000 train, 500 val, 500 test images per car type) the splits hold 8,000 / 1,000 / 1,000
images; in train 95 % of backgrounds and of co-occurring objects match the car type.

Splits whose folder is missing are left out (OCCAM evaluates ``test`` only, zero-shot): without
``val`` the DataModule holds one out of train. :meth:`UrbanCars.gt_masks` returns the car's mask;
``metadata["co_occur_obj_mask"]`` names the co-occurring object's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from occam_l2r.data.datasets._layout import DatasetNotFoundError, require_dir, resize_mask
from occam_l2r.data.records import Record, RecordDataset

KINDS = ("urban", "country")
GROUP_NAMES = [f"obj-{o}_bg-{b}_co_occur_obj-{c}" for o in KINDS for b in KINDS for c in KINDS]
#: split -> the ratio folder it is generated into
SPLIT_FOLDERS = {
    "train": "bg-0.95_co_occur_obj-0.95",
    "val": "bg-0.5_co_occur_obj-0.5",
    "test": "bg-0.5_co_occur_obj-0.5",
}
DOWNLOAD_HINT = (
    "Generate UrbanCars with github.com/facebookresearch/Whac-A-Mole "
    "(scripts/prepare_dataset_models/create_urbancars.sh) and set root to the resulting "
    "urbancars folder (bg-0.95_co_occur_obj-0.95/train, bg-0.5_co_occur_obj-0.5/{val,test})."
)


class UrbanCars(RecordDataset):
    """UrbanCars: urban vs country cars; 8 groups of (car, background, co-occurring object).

    Args:
        root: the generated ``urbancars`` folder (or the folder holding it).
    """

    def __init__(self, root: str) -> None:
        super().__init__()
        path = Path(root)
        self.root = path / "urbancars" if (path / "urbancars").is_dir() else path
        require_dir(self.root, "UrbanCars", DOWNLOAD_HINT)
        present = [s for s, f in SPLIT_FOLDERS.items() if (self.root / f / s).is_dir()]
        if "test" not in present:
            raise DatasetNotFoundError(
                f"UrbanCars: folder not found: {self.root / SPLIT_FOLDERS['test'] / 'test'}. "
                f"{DOWNLOAD_HINT}"
            )
        self.class_names = [f"{kind} car" for kind in KINDS]
        self.group_names = list(GROUP_NAMES)
        self.train_split = "train" if "train" in present else None
        self.val_split = "val" if "val" in present else None
        self.test_splits = ["test"]
        self._splits = present

    @property
    def name(self) -> str:
        return "urbancars"

    def load_records(self) -> list[Record]:
        records = []
        for split in self._splits:
            folder = self.root / SPLIT_FOLDERS[split] / split
            for group, composition in enumerate(GROUP_NAMES):
                sub = folder / composition
                if not sub.is_dir():
                    raise DatasetNotFoundError(
                        f"UrbanCars: folder not found: {sub} (a split holds all 8 compositions "
                        f"obj-*_bg-*_co_occur_obj-*). {DOWNLOAD_HINT}"
                    )
                rel = sub.relative_to(self.root).as_posix()
                with os.scandir(sub) as entries:
                    names = sorted(e.name for e in entries if e.name.lower().endswith(".jpg"))
                for name in names:
                    stem = name[: -len(".jpg")]
                    records.append(
                        Record(
                            image_id=f"{rel}/{name}",
                            label=group // 4,
                            split=split,
                            group=composition,
                            metadata={
                                "bg": (group // 2) % 2,
                                "co_occur_obj": group % 2,
                                "co_occur_obj_mask": f"{rel}/{stem}_co_occur_obj_mask.png",
                            },
                            mask_path=f"{rel}/{stem}_mask.png",
                        )
                    )
        return records

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """The car's mask (``NNN_mask.png``, pixels >= 128), at the image's size."""
        assert record.mask_path is not None
        path = self.root / record.mask_path
        if not path.is_file():
            raise DatasetNotFoundError(f"UrbanCars: mask not found: {path}. {DOWNLOAD_HINT}")
        values = np.asarray(Image.open(path).convert("L"))
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        return [resize_mask(values >= 128, height, width)]
