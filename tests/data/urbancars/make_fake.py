"""Write a tiny fake UrbanCars as facebookresearch/Whac-A-Mole's gen_urbancars.py writes it.

``urbancars/bg-0.95_co_occur_obj-0.95/train/<composition>/NNN.jpg`` and
``urbancars/bg-0.5_co_occur_obj-0.5/{val,test}/<composition>/NNN.jpg`` with ``NNN_mask.png`` and
``NNN_co_occur_obj_mask.png`` beside each image (RGB PNGs, white = object, as torchvision's
``save_image`` writes them). Train is skewed like the real one (most images in the
compositions whose background and object match the car), val/test are balanced.

    python tests/data/urbancars/make_fake.py <root>
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("urban", "country")
IMAGE_HW = (24, 24)
#: images per composition: train by number of attributes matching the car, val/test flat
TRAIN_BY_MATCHES = {2: 3, 1: 1, 0: 1}
PER_COMPOSITION = {"val": 1, "test": 2}


def _count(split: str, obj: int, bg: int, co: int) -> int:
    if split == "train":
        return TRAIN_BY_MATCHES[(obj == bg) + (obj == co)]
    return PER_COMPOSITION[split]


def make_fake(root: Path) -> Path:
    """Write ``root/urbancars`` and return it."""
    rng = np.random.default_rng(0)
    base = root / "urbancars"
    for split in ("train", "val", "test"):
        ratio = "bg-0.95_co_occur_obj-0.95" if split == "train" else "bg-0.5_co_occur_obj-0.5"
        for obj, o in enumerate(KINDS):
            for bg, b in enumerate(KINDS):
                for co, c in enumerate(KINDS):
                    folder = base / ratio / split / f"obj-{o}_bg-{b}_co_occur_obj-{c}"
                    folder.mkdir(parents=True, exist_ok=True)
                    for i in range(_count(split, obj, bg, co)):
                        pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                        Image.fromarray(pixels).save(folder / f"{i:03d}.jpg")
                        car = np.zeros((*IMAGE_HW, 3), dtype=np.uint8)
                        car[6:18, 4:20] = 255
                        car[5, 4:20] = 100  # a soft edge: below half, background
                        Image.fromarray(car).save(folder / f"{i:03d}_mask.png")
                        other = np.zeros((*IMAGE_HW, 3), dtype=np.uint8)
                        other[18:22, 10:14] = 255
                        Image.fromarray(other).save(folder / f"{i:03d}_co_occur_obj_mask.png")
    return base


if __name__ == "__main__":
    print(make_fake(Path(sys.argv[1] if len(sys.argv) > 1 else "fake_urbancars")))
