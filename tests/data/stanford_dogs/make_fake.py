"""Write a tiny fake Stanford Dogs in the original layout (vision.stanford.edu/aditya86/ImageNetDogs).

``Images/<wnid>-<Breed>/<wnid>_<n>.jpg``, ``Annotation/<wnid>-<Breed>/<wnid>_<n>`` (VOC XML, no
extension) and ``train_list.mat`` / ``test_list.mat`` / ``file_list.mat`` with the real keys
(``file_list``, ``annotation_list``, ``labels`` 1-based) written as MATLAB cell arrays.

    python tests/data/stanford_dogs/make_fake.py <root>
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

FOLDERS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog"]
PER_CLASS = {"train": 3, "test": 2}
IMAGE_HW = (20, 30)

XML = """<annotation>
\t<folder>{folder}</folder>
\t<filename>{stem}</filename>
\t<source>
\t\t<database>ImageNet database</database>
\t</source>
\t<size>
\t\t<width>{w}</width>
\t\t<height>{h}</height>
\t\t<depth>3</depth>
\t</size>
\t<segment>0</segment>
{objects}</annotation>
"""
OBJECT = """\t<object>
\t\t<name>{name}</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>{x0}</xmin>
\t\t\t<ymin>{y0}</ymin>
\t\t\t<xmax>{x1}</xmax>
\t\t\t<ymax>{y1}</ymax>
\t\t</bndbox>
\t</object>
"""


def _cells(values: list[str]) -> np.ndarray:
    out = np.empty((len(values), 1), dtype=object)
    for i, v in enumerate(values):
        out[i, 0] = v
    return out


def make_fake(root: Path, lists_subfolder: bool = False) -> dict[str, int]:
    """Write the fake dataset under ``root``; the lists go to ``root/lists`` if asked."""
    rng = np.random.default_rng(0)
    lists: dict[str, tuple[list[str], list[str], list[int]]] = {
        "train": ([], [], []),
        "test": ([], [], []),
    }
    n = 1000
    for label, folder in enumerate(FOLDERS, start=1):
        wnid, breed = folder.split("-", 1)
        (root / "Images" / folder).mkdir(parents=True, exist_ok=True)
        (root / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
        for split, count in PER_CLASS.items():
            for _ in range(count):
                n += 1
                stem = f"{wnid}_{n}"
                pixels = rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "Images" / folder / f"{stem}.jpg")
                boxes = [(2, 3, 12, 15)] + ([(15, 1, 28, 10)] if n % 2 else [])
                objects = "".join(
                    OBJECT.format(name=breed, x0=x0, y0=y0, x1=x1, y1=y1)
                    for x0, y0, x1, y1 in boxes
                )
                xml = XML.format(
                    folder=wnid[1:], stem=stem, w=IMAGE_HW[1], h=IMAGE_HW[0], objects=objects
                )
                (root / "Annotation" / folder / stem).write_text(xml)
                files, annotations, labels = lists[split]
                files.append(f"{folder}/{stem}.jpg")
                annotations.append(f"{folder}/{stem}")
                labels.append(label)
    list_dir = root / "lists" if lists_subfolder else root
    list_dir.mkdir(parents=True, exist_ok=True)
    everything: tuple[list[str], list[str], list[int]] = ([], [], [])
    for split, (files, annotations, labels) in lists.items():
        for acc, part in zip(everything, (files, annotations, labels), strict=True):
            acc.extend(part)
        scipy.io.savemat(
            list_dir / f"{split}_list.mat",
            {
                "file_list": _cells(files),
                "annotation_list": _cells(annotations),
                "labels": np.asarray(labels, dtype=np.uint8).reshape(-1, 1),
            },
        )
    scipy.io.savemat(
        list_dir / "file_list.mat",
        {
            "file_list": _cells(everything[0]),
            "annotation_list": _cells(everything[1]),
            "labels": np.asarray(everything[2], dtype=np.uint8).reshape(-1, 1),
        },
    )
    return {split: len(v[0]) for split, v in lists.items()}


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "fake_stanford_dogs")
    print(make_fake(out))
