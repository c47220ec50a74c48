"""Write a tiny fake Hard ImageNet (mmoayeri/HardImageNet) plus the ImageNet images it needs.

``<root>/hardImageNet/meta/{idx_to_wnid,hard_imagenet_idx}.pkl``, masks
``hardImageNet/{train,val}/<wnid>_<ImageNet file>`` (JPEG, 0 = background), the RGB images in an
ILSVRC2012-style ``<root>/imagenet/{train,val}/<wnid>/<file>`` (flat ``val/<file>`` if asked), and
L2R²-style extra test sets ``<root>/long_tail/<class>/`` and ``<root>/constant/<class>/``.
Only three of the 15 classes get images; the pickles hold all 15 indices as the real ones do.

    python tests/data/hard_imagenet/make_fake.py <root>
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HIN_IDX = [537, 379, 785, 795, 837, 433, 416, 602, 706, 746, 655, 810, 890, 981, 801]
#: the three classes that get images: (ImageNet index, wnid)
USED = [(537, "n03218198"), (795, "n04228054"), (890, "n04540053")]
PER_CLASS = {"train": 3, "val": 2}
IMAGE_HW = (18, 24)


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=95)


def make_fake(root: Path, flat_val: bool = False) -> dict[str, Path]:
    """Write the fake under ``root``; return the roots to pass to HardImageNet."""
    rng = np.random.default_rng(0)
    masks, imagenet = root / "hardImageNet", root / "imagenet"
    (masks / "meta").mkdir(parents=True, exist_ok=True)
    idx_to_wnid = {i: f"n{90000000 + i:08d}" for i in range(1000)}
    idx_to_wnid.update(dict(USED))
    with open(masks / "meta" / "idx_to_wnid.pkl", "wb") as fh:
        pickle.dump(idx_to_wnid, fh)
    with open(masks / "meta" / "hard_imagenet_idx.pkl", "wb") as fh:
        pickle.dump(HIN_IDX, fh)
    n = 100
    for split, count in PER_CLASS.items():
        for _, wnid in USED:
            for _ in range(count):
                n += 1
                fname = f"{wnid}_{n}.JPEG" if split == "train" else f"ILSVRC2012_val_{n:08d}.JPEG"
                sub = (
                    f"{split}/{fname}" if split == "val" and flat_val else f"{split}/{wnid}/{fname}"
                )
                _save(imagenet / sub, rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8))
                mask = np.zeros((2 * IMAGE_HW[0], 2 * IMAGE_HW[1]), dtype=np.uint8)
                mask[8:24, 10:30] = 255
                _save(masks / split / f"{wnid}_{fname}", mask)
    for folder, names in (("long_tail", ["volleyball", "n03218198"]), ("constant", ["537"])):
        for name in names:
            for k in range(2):
                _save(
                    root / folder / name / f"img{k}.jpg",
                    rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8),
                )
    return {
        "root": imagenet,
        "mask_root": masks,
        "long_tail_root": root / "long_tail",
        "constant_root": root / "constant",
    }


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fake_hard_imagenet")
    print(make_fake(out))
