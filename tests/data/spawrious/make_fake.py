"""Write a tiny fake Spawrious in the original layout (aengusl/spawrious, spawrious224/...).

``spawrious224/{0,1}/<location>/<breed>/*.png`` for all six locations and four breeds, plus one
image per folder in ``domain_adaptation_ds/``. Images are 8x8 PNGs whose red channel encodes the
location index, so a test can check that a record points at the right folder. File names are
written in reverse-sorted creation order so that a loader relying on creation order would fail.

    python tests/data/spawrious/make_fake.py <root> [per_folder]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

LOCATIONS = ["beach", "desert", "dirt", "jungle", "mountain", "snow"]
BREEDS = ["bulldog", "corgi", "dachshund", "labrador"]


def make_fake(root: Path, per_folder: int = 20) -> Path:
    """Write ``root/spawrious224`` with ``per_folder`` images per (env, location, breed)."""
    base = root / "spawrious224"
    for env, count in (("0", per_folder), ("1", per_folder), ("domain_adaptation_ds", 1)):
        for li, location in enumerate(LOCATIONS):
            for bi, breed in enumerate(BREEDS):
                folder = base / env / location / breed
                folder.mkdir(parents=True, exist_ok=True)
                for k in reversed(range(count)):
                    pixels = np.full((8, 8, 3), (40 * li, 50 * bi, k), dtype=np.uint8)
                    Image.fromarray(pixels).save(folder / f"{location}_{breed}_{k:04d}.png")
    return base


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fake_spawrious")
    make_fake(out, int(sys.argv[2]) if len(sys.argv) > 2 else 20)
    print(out)
