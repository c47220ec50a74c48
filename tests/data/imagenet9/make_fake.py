"""Write a tiny fake ImageNet-9 backgrounds-challenge release (MadryLab/backgrounds_challenge).

``<variation>/val/<NN_class>/*.JPEG`` for three variations and all nine classes,
``fg_mask/val/<NN_class>/<name>.npy`` for the originals, and ``in9l.tar.gz`` unpacked beside them
as its README links it: ``in9l/{train,val}``, with the unclean ``val/`` every training tarball
carries ("can be safely ignored"). :func:`write_training_tarball` writes another training tarball
(``mixed_rand.tar.gz`` ...: ``<variation>/{train,val}``) where it is unpacked: into a folder of its
own, or over the release, where its ``val/`` merges into the release's test images.
:func:`write_in_to_in9` writes an ``in_to_in9.json`` as the repository has it (all 1000 ImageNet
indices as string keys, ``-1`` for the unmapped ones).

    python tests/data/imagenet9/make_fake.py <root>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_FOLDERS = [
    "00_dog", "01_bird", "02_wheeled vehicle", "03_reptile", "04_carnivore", "05_insect",
    "06_musical instrument", "07_primate", "08_fish",
]  # fmt: skip
VARIATIONS = ["original", "mixed_rand", "only_fg"]
IMAGE_HW = (16, 16)
#: images per class in a training tarball's (unclean) val/
UNCLEAN_VAL_PER_CLASS = 2
#: a few ImageNet indices of the fake in_to_in9.json and their IN-9 class (the rest map to -1)
IN_TO_IN9 = {151: 0, 268: 0, 7: 1, 407: 2, 33: 3, 291: 4, 300: 5, 401: 6, 365: 7, 0: 8}


def make_fake(root: Path, per_class: int = 1) -> Path:
    """Write the release under ``root``; ``per_class`` images per class and variation."""
    rng = np.random.default_rng(0)
    for variation in VARIATIONS:
        for ci, cls in enumerate(CLASS_FOLDERS):
            folder = root / variation / "val" / cls
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                name = f"n0{ci}000000_{k}"
                pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}.JPEG", format="JPEG")
                if variation == "original":
                    mask = np.zeros(IMAGE_HW, dtype=np.uint8)
                    mask[4:10, 2:12] = 1
                    (root / "fg_mask" / "val" / cls).mkdir(parents=True, exist_ok=True)
                    np.save(root / "fg_mask" / "val" / cls / f"{name}.npy", mask)
    write_training_tarball(root, "in9l", per_class)
    return root


def write_training_tarball(where: Path, variation: str, per_class: int = 2) -> Path:
    """Write ``<variation>.tar.gz`` unpacked under ``where``: ``<variation>/train`` (``per_class``
    images per class) and the tarball's unclean ``<variation>/val`` (other file names than the
    release's); return ``where``."""
    rng = np.random.default_rng(1)
    for part, count, tag in (("train", per_class, 2), ("val", UNCLEAN_VAL_PER_CLASS, 3)):
        for ci, cls in enumerate(CLASS_FOLDERS):
            folder = where / variation / part / cls
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                name = f"n0{ci}{tag}00000_{k}.JPEG"
                Image.fromarray(pixels).save(folder / name, format="JPEG")
    return where


def write_in_to_in9(path: Path) -> Path:
    """Write a fake ``in_to_in9.json`` (keys "0"-"999", unmapped = -1) at ``path``."""
    path.write_text(json.dumps({str(i): IN_TO_IN9.get(i, -1) for i in range(1000)}))
    return path


if __name__ == "__main__":
    print(make_fake(Path(sys.argv[1] if len(sys.argv) > 1 else "fake_imagenet9")))
