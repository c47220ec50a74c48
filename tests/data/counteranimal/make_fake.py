"""Write a tiny fake CounterAnimal in the ``LAION-final`` layout.

``LAION-final/<ImageNet index> <name>/{common-<bg>,counter-<bg>}/*.jpg`` for three classes, plus
the ``imagenet_names.txt`` some copies carry (ignored by the loader).

    python tests/data/counteranimal/make_fake.py <root>
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: (ImageNet index, name, common background, counter background, common count, counter count)
CLASSES = [
    (100, "black swan", "water", "grass", 3, 2),
    (10, "brambling", "grass", "sky", 2, 1),
    (291, "lion", "grass", "snow", 2, 2),
]
IMAGE_HW = (12, 16)


def make_fake(root: Path) -> Path:
    """Write ``root/LAION-final``; return it."""
    rng = np.random.default_rng(0)
    base = root / "LAION-final"
    for index, name, common, counter, n_common, n_counter in CLASSES:
        for sub, count in ((f"common-{common}", n_common), (f"counter-{counter}", n_counter)):
            folder = base / f"{index} {name}" / sub
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{k:03d}.jpg")
    (base / "imagenet_names.txt").write_text("0\ttench, Tinca tinca\n")
    return base


if __name__ == "__main__":
    print(make_fake(Path(sys.argv[1] if len(sys.argv) > 1 else "fake_counteranimal")))
