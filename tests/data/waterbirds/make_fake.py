"""Write a tiny fake Waterbirds in the original layout (kohpangwei/group_DRO).

``metadata.csv`` with the real columns (img_id, img_filename, y, split, place, place_filename)
and JPEGs under CUB-style class folders; every (split, y, place) combination is present. Also
writes CUB-style soft segmentations under ``<root>/../segmentations`` when asked.

    python tests/data/waterbirds/make_fake.py <root>
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

#: (class folder, y)
BIRDS = [("001.Black_footed_Albatross", 1), ("026.Bronzed_Cowbird", 0)]
PLACES = ["b/bamboo_forest", "o/ocean"]  # place 0 = land, 1 = water
#: split code -> images per (bird, place)
PER_GROUP = {0: 2, 1: 1, 2: 1}
IMAGE_HW = (16, 20)


def make_fake(root: Path, segmentations: Path | None = None) -> dict[int, int]:
    """Write the dataset under ``root``; return rows per split code."""
    rng = np.random.default_rng(0)
    rows = []
    counts = {}
    img_id = 0
    for split, per_group in PER_GROUP.items():
        counts[split] = 0
        for folder, y in BIRDS:
            for place, place_dir in enumerate(PLACES):
                for _ in range(per_group):
                    img_id += 1
                    name = f"{folder.split('.')[1]}_{img_id:04d}_{img_id}.jpg"
                    (root / folder).mkdir(parents=True, exist_ok=True)
                    pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(root / folder / name)
                    rows.append(
                        [img_id, f"{folder}/{name}", y, split, place, f"/{place_dir}/x.jpg"]
                    )
                    counts[split] += 1
                    if segmentations is not None:
                        soft = np.zeros(IMAGE_HW, dtype=np.uint8)
                        soft[4:12, 5:15] = 255
                        soft[3, 5:15] = 100  # below half agreement: background
                        (segmentations / folder).mkdir(parents=True, exist_ok=True)
                        Image.fromarray(soft).save(
                            segmentations / folder / name.replace(".jpg", ".png")
                        )
    with open(root / "metadata.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["img_id", "img_filename", "y", "split", "place", "place_filename"])
        writer.writerows(rows)
    return counts


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "waterbird_complete95_forest2water2")
    print(make_fake(out))
