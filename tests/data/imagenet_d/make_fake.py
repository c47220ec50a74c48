"""Write a tiny fake ImageNet-D (chenshuang-zhang/imagenet_d) release.

``ImageNet-D/<subset>/<class folder>/*.png`` for three of the 113 classes (the real folder names)
in the ``background`` and ``texture`` subsets, plus the ``questions/`` folder the release carries.

    python tests/data/imagenet_d/make_fake.py <root>
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: class folder -> images per subset
CLASSES = {"alarm_clock": 2, "chair": 3, "wok": 1}
SUBSETS = ["background", "texture"]
IMAGE_HW = (16, 16)


def make_fake(root: Path) -> Path:
    """Write ``root/ImageNet-D`` and return it."""
    rng = np.random.default_rng(0)
    base = root / "ImageNet-D"
    for subset in SUBSETS:
        for folder, count in CLASSES.items():
            (base / subset / folder).mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(base / subset / folder / f"{subset}_{k}.png")
    (base / "questions").mkdir(exist_ok=True)
    (base / "questions" / "background.csv").write_text("image,question\n")
    return base


if __name__ == "__main__":
    print(make_fake(Path(sys.argv[1] if len(sys.argv) > 1 else "fake_imagenet_d")))
