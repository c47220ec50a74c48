"""Write a tiny fake CounterAnimal in the ``LAION-final`` layout.

``LAION-final/<ImageNet index> <name>/{common-<bg>,counter-<bg>}/*.jpg`` for three classes, plus
the ``imagenet_names.txt`` some copies carry (ignored by the loader). ``with_archive_debris`` adds
what real downloads unpacked on or from a Mac, or browsed on Windows, contain: a ``__MACOSX``
folder of AppleDouble files, ``._<name>.jpg`` files beside the images (not decodable), a
``.DS_Store`` in every folder, a ``Thumbs.db``.

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


def make_fake(root: Path, with_archive_debris: bool = False) -> Path:
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
    if with_archive_debris:
        _add_debris(base)
    return base


def _add_debris(base: Path) -> None:
    """Archive and OS leftovers beside the images (none of them is a decodable image)."""
    mac = base / "__MACOSX"
    for folder in sorted(p for p in base.rglob("*") if p.is_dir()):
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        for image in sorted(folder.glob("*.jpg")):
            apple = b"\x00\x05\x16\x07" + bytes(60)  # AppleDouble magic
            (folder / f"._{image.name}").write_bytes(apple)
            twin = mac / image.relative_to(base).parent / f"._{image.name}"
            twin.parent.mkdir(parents=True, exist_ok=True)
            twin.write_bytes(apple)
    index, name, *_ = CLASSES[0]
    (base / f"{index} {name}" / "Thumbs.db").write_bytes(b"x")


if __name__ == "__main__":
    print(make_fake(Path(sys.argv[1] if len(sys.argv) > 1 else "fake_counteranimal")))
