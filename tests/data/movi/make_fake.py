"""Write a tiny fake MOVi export in the layout of SlotDiffusion's exporter (download_movi.py).

``<root>/MOVi-<level>/<subset>/<video:08d>/<frame:06d>.jpg`` with ``<frame:06d>_mask.png``
(uint8 instance ids, 0 = background). Every frame shows ``objects`` axis-aligned rectangles
with ids 1..objects that move one pixel per frame; the frame's pixels are the object's colour
plus noise, so a segmenter could find them.

    python tests/data/movi/make_fake.py <root> [C|E]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (32, 32)
VIDEOS = 2
FRAMES = 3
OBJECTS = 3


def object_boxes(video: int, frame: int, objects: int = OBJECTS) -> list[tuple[int, int, int, int]]:
    """``(y0, x0, y1, x1)`` of every object in one frame (disjoint, inside the image)."""
    boxes = []
    for k in range(objects):
        y0 = 2 + 9 * k
        x0 = 2 + 3 * video + frame
        boxes.append((y0, x0, y0 + 6, x0 + 8 + 2 * k))
    return boxes


def instance_ids(video: int, frame: int, objects: int = OBJECTS) -> np.ndarray:
    """The ``(H, W)`` uint8 instance-id map of one frame (0 = background, 1..objects)."""
    ids = np.zeros(SIZE, dtype=np.uint8)
    for k, (y0, x0, y1, x1) in enumerate(object_boxes(video, frame, objects), start=1):
        ids[y0:y1, x0:x1] = k
    return ids


def make_fake(
    root: Path,
    level: str = "C",
    subset: str = "validation",
    videos: int = VIDEOS,
    frames: int = FRAMES,
    objects: int = OBJECTS,
) -> list[str]:
    """Write the export under ``root``; return the image ids (relative to ``root``) in order."""
    rng = np.random.default_rng(0)
    colours = rng.integers(30, 225, (objects + 1, 3))
    ids_out = []
    for v in range(videos):
        vdir = root / f"MOVi-{level}" / subset / f"{v:08d}"
        vdir.mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            ids = instance_ids(v, t, objects)
            noise = rng.integers(-10, 10, (*SIZE, 3))
            pixels = np.clip(colours[ids] + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(vdir / f"{t:06d}.jpg", quality=95)
            Image.fromarray(ids).save(vdir / f"{t:06d}_mask.png")
            ids_out.append(f"MOVi-{level}/{subset}/{v:08d}/{t:06d}.jpg")
    return ids_out


if __name__ == "__main__":
    make_fake(Path(sys.argv[1]), *(sys.argv[2:3] or ["C"]))
