"""Stanford Dogs, read from the original archives of vision.stanford.edu/aditya86/ImageNetDogs.

Layout under ``root`` (images.tar, annotation.tar and lists.tar extracted side by side)::

    Images/<wnid>-<Breed>/<wnid>_<n>.jpg
    Annotation/<wnid>-<Breed>/<wnid>_<n>          Pascal-VOC XML without extension (boxes)
    train_list.mat, test_list.mat, file_list.mat  (also accepted under lists/)

The lists are MATLAB files with ``file_list`` (paths relative to ``Images/``), ``annotation_list``
(relative to ``Annotation/``) and ``labels`` (1-based, 1-120). Train 12,000 and test 8,580 images;
there is no validation split (the DataModule holds one out of train; L2R² uses 10-15 %).
Class names are the breed part of the folder names (``n02085620-Chihuahua`` -> ``Chihuahua``,
underscores as spaces). The dataset has no masks: :meth:`gt_masks` returns one filled box per
annotated dog (box-only ground truth), :meth:`gt_boxes` the boxes themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from occam_l2r.data.datasets._layout import box_mask, first_existing, read_voc_boxes, require_dir
from occam_l2r.data.records import Record, RecordDataset

DOWNLOAD_HINT = (
    "Download images.tar, annotation.tar and lists.tar from "
    "http://vision.stanford.edu/aditya86/ImageNetDogs/ and extract all three into root "
    "(root/Images, root/Annotation, root/train_list.mat)."
)


def _strings(cells: np.ndarray) -> list[str]:
    """A MATLAB cell array of strings (as scipy.io.loadmat returns it) -> list of str."""
    return [str(np.asarray(c).reshape(-1)[0]) for c in cells.reshape(-1)]


class StanfordDogs(RecordDataset):
    """Stanford Dogs: 120 breeds, splits train/test from the official lists.

    Args:
        root: folder holding ``Images/``, ``Annotation/`` and the ``*_list.mat`` files.
    """

    val_split = None

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = Path(root)
        self.train_split = "train"
        self.test_splits = ["test"]
        self.group_names = []
        self._lists = {split: self._read_list(split) for split in ("train", "test")}
        folders: dict[int, str] = {}
        for files, _, labels in self._lists.values():
            for path, label in zip(files, labels, strict=True):
                folders.setdefault(label, path.split("/")[0])
        if sorted(folders) != list(range(len(folders))):
            raise ValueError(
                f"{self.root}: the list labels are not 1..{len(folders)}; are the .mat files intact?"
            )
        self.wnids = [folders[i].split("-", 1)[0] for i in range(len(folders))]
        self.class_names = [
            folders[i].split("-", 1)[-1].replace("_", " ") for i in range(len(folders))
        ]

    @property
    def name(self) -> str:
        return "stanford_dogs"

    def _read_list(self, split: str) -> tuple[list[str], list[str], list[int]]:
        require_dir(self.root, "StanfordDogs", DOWNLOAD_HINT)
        name = f"{split}_list.mat"
        path = first_existing(
            [self.root / name, self.root / "lists" / name], "StanfordDogs", DOWNLOAD_HINT
        )
        try:
            mat = scipy.io.loadmat(str(path))
        except (scipy.io.matlab.MatReadError, ValueError, OSError) as err:
            raise ValueError(
                f"cannot read {path} ({err}); re-extract lists.tar. {DOWNLOAD_HINT}"
            ) from err
        missing = {"file_list", "labels"} - set(mat)
        if missing:
            raise ValueError(
                f"{path} lacks the keys {sorted(missing)}; is it a Stanford Dogs list?"
            )
        files = [f.replace("\\", "/") for f in _strings(mat["file_list"])]
        if "annotation_list" in mat:
            annotations = [a.replace("\\", "/") for a in _strings(mat["annotation_list"])]
        else:
            annotations = [f.rsplit(".", 1)[0] for f in files]
        labels = [int(v) - 1 for v in np.asarray(mat["labels"]).reshape(-1)]
        if not len(files) == len(annotations) == len(labels):
            raise ValueError(f"{path}: file_list, annotation_list and labels differ in length")
        return files, annotations, labels

    def load_records(self) -> list[Record]:
        require_dir(self.root / "Images", "StanfordDogs", DOWNLOAD_HINT)
        records = []
        for split, (files, annotation_paths, labels) in self._lists.items():
            for path, annotation, label in zip(files, annotation_paths, labels, strict=True):
                records.append(
                    Record(
                        image_id=f"Images/{path}",
                        label=label,
                        split=split,
                        group="",
                        metadata={
                            "wnid": self.wnids[label],
                            "annotation": f"Annotation/{annotation}",
                        },
                    )
                )
        return records

    def gt_boxes(self, record: Record) -> list[list[float]]:
        """The record's dog boxes, ``[xmin, ymin, xmax, ymax]`` pixels, from its VOC XML file."""
        path = self.root / record.metadata["annotation"]
        if not path.is_file():
            raise FileNotFoundError(
                f"StanfordDogs: annotation not found: {path}. Extract annotation.tar into root."
            )
        boxes, _, _ = read_voc_boxes(path)
        return boxes

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """Box-only ground truth: one filled box mask per annotated dog, at the image's size."""
        boxes = self.gt_boxes(record)
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        return [box_mask(box, height, width) for box in boxes]
