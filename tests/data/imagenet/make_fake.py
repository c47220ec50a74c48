"""Write a tiny fake ImageNet-1k (ILSVRC2012) in one of the layouts ImageNet reads.

``layout``: ``devkit`` (``train/<wnid>/``, flat ``val/`` and ``ILSVRC2012_devkit_t12/data/`` with
``ILSVRC2012_validation_ground_truth.txt`` and a ``meta.mat`` whose ILSVRC2012_IDs are not in
wnid order, as in the real devkit), ``devkit_tar`` (the same devkit as the downloaded .tar.gz),
``folders`` (torchvision's class-folder ``val/<wnid>/``) or ``kaggle``
(``ILSVRC/Data/CLS-LOC`` + ``LOC_val_solution.csv`` + ``LOC_synset_mapping.txt``). Also writes
the two clean-label files as published: ``clean_validation.csv`` (Kisel et al.) and ReaL's
``real.json``.

    python tests/data/imagenet/make_fake.py <root> [layout]
"""

from __future__ import annotations

import csv
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

#: (ILSVRC2012_ID, wnid, words): IDs in the devkit's order, which is not the wnid order
SYNSETS = [
    (1, "n02119789", "kit fox, Vulpes macrotis"),
    (2, "n01440764", "tench, Tinca tinca"),
    (3, "n09999999", "fake thing"),
    (4, "n01443537", "goldfish, Carassius auratus"),
]
WNIDS = sorted(w for _, w, _ in SYNSETS)  # class index order
TRAIN_PER_CLASS = 5
#: the wnid of val image i+1 (two per class, shuffled as the real val set is)
VAL_WNIDS = ["n02119789", "n01440764", "n01443537", "n09999999"] * 2
IMAGE_HW = (20, 24)
#: clean_validation.csv rows: (val index, proposed labels as the file writes them)
CLEAN_ROWS = [(1, "2"), (2, '"0, 3"'), (3, "2"), (5, "2"), (6, "0")]
#: real.json: labels of val image i+1 ([] = no label, left out)
REAL = [[2], [0, 3], [], [3], [2, 1], [0], [1], []]


def _save(path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*IMAGE_HW, 3), dtype=np.uint8)).save(path, "JPEG")


def _write_devkit(folder: Path) -> None:
    data = folder / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True, exist_ok=True)
    id_of = {w: i for i, w, _ in SYNSETS}
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{id_of[w]}\n" for w in VAL_WNIDS)
    )
    rows = [(i, w, words, 0) for i, w, words in SYNSETS] + [(5, "n00001740", "entity", 4)]
    synsets = np.array(
        rows,
        dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")],
    )
    scipy.io.savemat(data / "meta.mat", {"synsets": synsets})


def make_fake(root: Path, layout: str = "devkit") -> Path:
    """Write the fake under ``root`` and return the folder to pass as ``root``."""
    rng = np.random.default_rng(0)
    base = root / "ILSVRC/Data/CLS-LOC" if layout == "kaggle" else root
    for wnid in WNIDS:
        for k in range(TRAIN_PER_CLASS):
            _save(base / "train" / wnid / f"{wnid}_{k}.JPEG", rng)
    for i, wnid in enumerate(VAL_WNIDS, start=1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        _save(base / "val" / (f"{wnid}/{name}" if layout == "folders" else name), rng)
    if layout in ("devkit", "folders"):
        _write_devkit(root)
    elif layout == "devkit_tar":
        _write_devkit(root / "tmp_devkit")
        with tarfile.open(root / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tar:
            tar.add(root / "tmp_devkit" / "ILSVRC2012_devkit_t12", "ILSVRC2012_devkit_t12")
    elif layout == "kaggle":
        with open(root / "LOC_val_solution.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ImageId", "PredictionString"])
            for i, wnid in enumerate(VAL_WNIDS, start=1):
                writer.writerow([f"ILSVRC2012_val_{i:08d}", f"{wnid} 1 2 10 12 {wnid} 0 0 5 5"])
        names = {w: words for _, w, words in SYNSETS}
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {names[w]}\n" for w in WNIDS))
    else:
        raise ValueError(f"unknown layout {layout!r}")
    lines = ["id,original_label,proposed_labels,validation"]
    for i, proposed in CLEAN_ROWS:
        original = WNIDS.index(VAL_WNIDS[i - 1])
        lines.append(f"ILSVRC2012_val_{i:08d}.JPEG,{original},{proposed},*")
    (root / "clean_validation.csv").write_text("\n".join(lines) + "\n")
    (root / "real.json").write_text(json.dumps(REAL))
    return root


if __name__ == "__main__":
    args = sys.argv[1:]
    print(make_fake(Path(args[0] if args else "fake_imagenet"), *args[1:2]))
