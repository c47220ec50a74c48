"""Write a tiny fake ImageNet-9 backgrounds-challenge release (MadryLab/backgrounds_challenge).

``<variation>/val/<NN_class>/*.JPEG`` for three variations and all nine classes,
``fg_mask/val/<NN_class>/<name>.npy`` for the originals and an IN-9L-style ``in9l/train``;
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
#: a few ImageNet indices of the fake in_to_in9.json and their IN-9 class (the rest map to -1)
IN_TO_IN9 = {151: 0, 268: 0, 7: 1, 407: 2, 33: 3, 291: 4, 300: 5, 401: 6, 365: 7, 0: 8}


def make_fake(root: Path, per_class: int = 1) -> Path:
    """Write the release under ``root``; ``per_class`` images per class and variation."""
    rng = np.random.default_rng(0)
    folders = [(v, "val") for v in VARIATIONS] + [("in9l", "train")]
    for variation, part in folders:
        for ci, cls in enumerate(CLASS_FOLDERS):
            folder = root / variation / part / cls
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
    return root


def write_in_to_in9(path: Path) -> Path:
    """Write a fake ``in_to_in9.json`` (keys "0"-"999", unmapped = -1) at ``path``."""
    path.write_text(json.dumps({str(i): IN_TO_IN9.get(i, -1) for i in range(1000)}))
    return path


if __name__ == "__main__":
    print(make_fake(Path(sys.argv[1] if len(sys.argv) > 1 else "fake_imagenet9")))
