"""ImageNet-1k (ILSVRC2012): class-folder train, the official val set as test, "clean labels".

Sources: image-net.org (``ILSVRC2012_img_{train,val}.tar``, ``ILSVRC2012_devkit_t12.tar.gz``),
Kaggle's ``imagenet-object-localization-challenge``, torchvision's ``ImageNet`` root::

    # class folders (torchvision's ImageNet root, or val sorted by valprep.sh)
    train/<wnid>/<wnid>_<n>.JPEG    val/<wnid>/ILSVRC2012_val_<8 digits>.JPEG
    # the tarballs: flat val labelled by the devkit (folder or .tar.gz, in root or at ``devkit``)
    train/<wnid>/...                val/ILSVRC2012_val_00000001.JPEG ... _00050000.JPEG
    ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt  line i: ILSVRC2012_ID of image i
    ILSVRC2012_devkit_t12/data/meta.mat   synsets: ILSVRC2012_ID -> WNID, words (leaves 1-1000,
                                          NOT in wnid order)
    # Kaggle
    ILSVRC/Data/CLS-LOC/{train/<wnid>/..., val/ILSVRC2012_val_<8 digits>.JPEG}
    LOC_val_solution.csv      ImageId, PredictionString (its first token is the wnid)
    LOC_synset_mapping.txt    "<wnid> <names>" per class, in class-index order

Class index = rank of the wnid in sorted order (torchvision's ImageFolder, timm and
``LOC_synset_mapping.txt`` agree); class name = the first synonym from ``LOC_synset_mapping.txt``
or ``meta.mat`` (the wnid when neither is there). Splits: ``train``; no val split (the DataModule
holds out ``val_fraction`` of train per class, deterministic for a seed; L2R² does not give the
fraction); ``test`` = the official val set (L2R² §4.1); ``test_clean`` with ``clean_labels``.

Clean labels (L2R² §4.1: "images where previous works correcting the dataset agree on the label",
from the unification of Kisel et al. 2024, "Flaws of ImageNet"), read as published:

- ``clean_validation.csv`` (github.com/klarajanouskova/ImageNet,
  ``eval_corrections/verify_images/results/``): columns ``id`` (``ILSVRC2012_val_<8 digits>.JPEG``),
  ``original_label``, ``proposed_labels`` (``26`` or a quoted list ``"689, 601"``), ``validation``.
  Every row is an image of the clean subset; its accepted labels are ``proposed_labels``.
- ReaL's ``real.json`` (github.com/google-research/reassessed-imagenet): a list whose item ``i``
  holds the labels of ``ILSVRC2012_val_{i+1:08d}.JPEG``; images with no label are left out.

Labels in both are ImageNet-1k indices. A ``test_clean`` record keeps the accepted labels in
``metadata["clean_labels"]``; its ``label`` is the original one when accepted, else the first
accepted one: ``test_clean/acc`` is single-label. The works count any accepted label as right:
:func:`accepted_label_accuracy` on the ``test_clean`` logits (compare with L2R² Table 13).

:func:`map_imagenet_predictions` and :func:`imagenet_mapped_accuracy` score 1000-way predictions
on a dataset whose ``imagenet_to_class`` maps ImageNet-1k indices to its classes (ImageNet-9,
ImageNet-D, CounterAnimal, Hard ImageNet): an unmapped prediction is wrong.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import scipy.io

from occam_l2r.data.datasets._layout import (
    DatasetLayoutError,
    DatasetNotFoundError,
    list_folders,
    list_images,
    read_json,
    require_dir,
    require_file,
)
from occam_l2r.data.datasets.imagenet_scoring import (  # re-exported: scoring on ImageNet labels
    accepted_label_accuracy,
    imagenet_mapped_accuracy,
    map_imagenet_predictions,
)
from occam_l2r.data.records import Record, RecordDataset

__all__ = [
    "ImageNet",
    "accepted_label_accuracy",
    "imagenet_mapped_accuracy",
    "map_imagenet_predictions",
    "read_clean_labels",
    "val_name",
]

KAGGLE_IMAGES = "ILSVRC/Data/CLS-LOC"
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"
WNID = re.compile(r"^n\d{8}$")
HINT = (
    "Set root to an ILSVRC2012 folder with train/<wnid>/ and val/ (class folders, or flat val "
    "with the devkit ILSVRC2012_devkit_t12[.tar.gz] or Kaggle's LOC_val_solution.csv)."
)
CLEAN_HINT = (
    "Give clean_labels as clean_validation.csv (github.com/klarajanouskova/ImageNet) or ReaL's "
    "real.json (github.com/google-research/reassessed-imagenet)."
)


def val_name(index: int) -> str:
    """File name of the 1-based ``index``-th ILSVRC2012 val image."""
    return f"ILSVRC2012_val_{index:08d}.JPEG"


def _devkit_member(devkit: Path, member: str) -> bytes | None:
    """A devkit file's bytes, from the extracted folder or the downloaded ``.tar.gz``."""
    if devkit.is_dir():
        path = devkit / member
        return path.read_bytes() if path.is_file() else None
    if devkit.is_file():
        try:
            with tarfile.open(devkit) as tar:
                handle = tar.extractfile(f"{DEVKIT}/{member}")
                return handle.read() if handle is not None else None
        except (KeyError, tarfile.TarError, OSError):
            return None
    return None


def _leaf_synsets(data: bytes, where: str) -> dict[int, tuple[str, str]]:
    """``{ILSVRC2012_ID: (wnid, words)}`` of the leaf synsets of the devkit's ``meta.mat``."""
    try:
        synsets = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True)["synsets"]
        return {
            int(s["ILSVRC2012_ID"]): (str(s["WNID"]), str(s["words"]))
            for s in np.atleast_1d(synsets)
            if int(s["num_children"]) == 0
        }
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise DatasetLayoutError(
            f"ImageNet: cannot read the synsets of {where} ({type(err).__name__}: {err}). {HINT}"
        ) from err


def _first_synonym(words: str) -> str:
    return words.split(",")[0].strip()


def read_clean_labels(path: Path) -> dict[str, list[int]]:
    """``{val file name: accepted ImageNet-1k labels}`` of a clean-label file (CSV or ReaL JSON)."""
    if path.suffix.lower() == ".json":
        data = read_json(path, "ImageNet", CLEAN_HINT)
        if not isinstance(data, list) or not all(isinstance(x, list) for x in data):
            raise DatasetLayoutError(
                f"ImageNet: {path} is not a list of label lists (ReaL's real.json). {CLEAN_HINT}"
            )
        return {
            val_name(i + 1): [int(v) for v in labels] for i, labels in enumerate(data) if labels
        }
    require_file(path, "ImageNet", CLEAN_HINT)
    if path.suffix.lower() != ".csv":
        raise DatasetLayoutError(
            f"ImageNet: clean_labels {path} is neither .csv nor .json. {CLEAN_HINT}"
        )
    out: dict[str, list[int]] = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"id", "proposed_labels"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetLayoutError(
                f"ImageNet: {path} lacks the columns {sorted(missing)}; is it clean_validation.csv? "
                f"{CLEAN_HINT}"
            )
        for row in reader:
            name = row["id"].strip()
            name = name if name.upper().endswith(".JPEG") else f"{name}.JPEG"
            try:
                labels = [int(v) for v in (row["proposed_labels"] or "").split(",") if v.strip()]
            except ValueError as err:
                raise DatasetLayoutError(
                    f"ImageNet: {path}: proposed_labels {row['proposed_labels']!r} of {name} are "
                    f"not integers. {CLEAN_HINT}"
                ) from err
            if labels:
                out[name] = labels
    return out


class ImageNet(RecordDataset):
    """ImageNet-1k: ``train`` from class folders, ``test`` = official val, ``test_clean``.

    Args:
        root: the ILSVRC2012 folder (any of the three layouts of the module docstring).
        clean_labels: optional clean-label file (``clean_validation.csv`` or ReaL's
            ``real.json``); adds the ``test_clean`` split.
        devkit: the devkit folder or ``.tar.gz`` when it is not ``root/ILSVRC2012_devkit_t12``.
    """

    val_split = None

    def __init__(
        self, root: str, clean_labels: str | None = None, devkit: str | None = None
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.clean_labels = Path(clean_labels) if clean_labels else None
        require_dir(self.root, "ImageNet", HINT)
        kaggle = (self.root / KAGGLE_IMAGES).is_dir()
        self._prefix = f"{KAGGLE_IMAGES}/" if kaggle else ""
        base = self.root / self._prefix
        self._train_dir, self._val_dir = base / "train", base / "val"
        if not self._train_dir.is_dir() and not self._val_dir.is_dir():
            raise DatasetNotFoundError(
                f"ImageNet: neither {self._train_dir} nor {self._val_dir} exists. {HINT}"
            )
        if devkit is not None:
            self._devkit = Path(devkit)
        else:
            folder = self.root / DEVKIT
            self._devkit = folder if folder.is_dir() else self.root / f"{DEVKIT}.tar.gz"
        self._id_to_wnid: dict[int, str] = {}
        names = self._synset_names()
        if self._train_dir.is_dir():
            self.wnids = list_folders(self._train_dir)
        elif names:
            self.wnids = sorted(names)
        else:
            self.wnids = list_folders(self._val_dir)
        bad = [w for w in self.wnids if not WNID.match(w)]
        if not self.wnids or bad:
            raise DatasetLayoutError(
                f"ImageNet: the class folders of {self._train_dir} must be wnids (n01440764, ...); "
                f"found {bad[:3] or 'none'}. {HINT}"
            )
        self._full = sorted(names) if names else None
        self.class_names = [_first_synonym(names.get(w, w)) for w in self.wnids]
        self.train_split = "train" if self._train_dir.is_dir() else None
        self.test_splits = ["test", "test_clean"] if self.clean_labels else ["test"]
        self.group_names = []

    def _synset_names(self) -> dict[str, str]:
        """``{wnid: words}`` from LOC_synset_mapping.txt or the devkit's meta.mat (may be empty)."""
        names: dict[str, str] = {}
        data = _devkit_member(self._devkit, META)
        if data is not None:
            leaves = _leaf_synsets(data, f"{self._devkit}/{META}")
            self._id_to_wnid = {i: wnid for i, (wnid, _) in leaves.items()}
            names = dict(leaves.values())
        mapping = self.root / "LOC_synset_mapping.txt"
        if mapping.is_file():
            lines = [ln.split(" ", 1) for ln in mapping.read_text().splitlines() if ln.strip()]
            names = {p[0]: (p[1] if len(p) > 1 else p[0]) for p in lines}
        return names

    @property
    def imagenet_class_indices(self) -> list[int] | None:
        """Each class's ImageNet-1k index: its rank among the synsets of the devkit or Kaggle's
        mapping, or among the class folders when there are exactly 1000 of them; else None."""
        if self._full is not None and set(self.wnids) <= set(self._full):
            rank = {w: i for i, w in enumerate(self._full)}
            return [rank[w] for w in self.wnids]
        return list(range(1000)) if len(self.wnids) == 1000 else None

    def _val_ground_truth(self) -> dict[str, str]:
        """``{val file name: wnid}`` of a flat val folder."""
        solution = self.root / "LOC_val_solution.csv"
        if solution.is_file():
            with open(solution, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and not {"ImageId", "PredictionString"} <= set(rows[0]):
                raise DatasetLayoutError(
                    f"ImageNet: {solution} lacks the columns ImageId, PredictionString. {HINT}"
                )
            return {f"{r['ImageId']}.JPEG": r["PredictionString"].split()[0] for r in rows}
        truth = _devkit_member(self._devkit, GROUND_TRUTH)
        if truth is None:
            raise DatasetNotFoundError(
                f"ImageNet: {self._val_dir} is a flat folder, and neither {solution} nor "
                f"{self._devkit}/{GROUND_TRUTH} exists to label it. {HINT}"
            )
        if not self._id_to_wnid:
            raise DatasetNotFoundError(
                f"ImageNet: {self._devkit}/{META} is needed to read {GROUND_TRUTH} "
                f"(its ILSVRC2012_IDs are not in wnid order). {HINT}"
            )
        ids = [int(x) for x in truth.decode().split()]
        unknown = sorted({i for i in ids if i not in self._id_to_wnid})
        if unknown:
            raise DatasetLayoutError(
                f"ImageNet: {GROUND_TRUTH} holds ILSVRC2012_IDs {unknown[:5]} that are not leaf "
                f"synsets of {META}. {HINT}"
            )
        return {val_name(k + 1): self._id_to_wnid[i] for k, i in enumerate(ids)}

    def _test_records(self) -> list[Record]:
        val = require_dir(self._val_dir, "ImageNet", HINT)
        label_of = {w: k for k, w in enumerate(self.wnids)}
        folders = list_folders(val)
        if folders:
            pairs = [(f"{w}/{f}", w) for w in folders for f in list_images(val / w)]
        else:
            truth = self._val_ground_truth()
            present = set(list_images(val))
            absent = sorted(set(truth) - present)
            if absent:
                raise DatasetNotFoundError(
                    f"ImageNet: {len(absent)} of the {len(truth)} labelled val images are not in "
                    f"{val}, e.g. {absent[:3]}. Extract ILSVRC2012_img_val.tar completely."
                )
            pairs = sorted(truth.items())
        unknown = sorted({w for _, w in pairs if w not in label_of})
        if unknown:
            raise DatasetLayoutError(
                f"ImageNet: val images of the wnids {unknown[:3]} whose class is not a folder of "
                f"{self._train_dir}. {HINT}"
            )
        prefix = f"{self._prefix}val/"
        return [Record(prefix + name, label_of[w], "test") for name, w in pairs]

    def _clean_records(self, test: list[Record]) -> list[Record]:
        assert self.clean_labels is not None
        accepted = read_clean_labels(self.clean_labels)
        indices = self.imagenet_class_indices
        if indices is None:
            raise DatasetLayoutError(
                "ImageNet: clean labels are ImageNet-1k indices, but the classes' indices are "
                "unknown (no devkit/LOC_synset_mapping.txt and not 1000 class folders)."
            )
        to_class = {i: k for k, i in enumerate(indices)}
        by_name = {Path(r.image_id).name: r for r in test}
        foreign = sorted(n for n in accepted if n not in by_name)
        if foreign:
            raise DatasetLayoutError(
                f"ImageNet: {self.clean_labels} labels {len(foreign)} images that are not in the "
                f"val set, e.g. {foreign[:3]}; is the val set complete? {CLEAN_HINT}"
            )
        records = []
        for name in sorted(accepted):
            labels = [to_class[i] for i in accepted[name] if i in to_class]
            if not labels:
                continue
            rec = by_name[name]
            label = rec.label if rec.label in labels else labels[0]
            meta = {"clean_labels": labels, "original_label": rec.label}
            records.append(Record(rec.image_id, label, "test_clean", metadata=meta))
        return records

    def load_records(self) -> list[Record]:
        records: list[Record] = []
        if self.train_split is not None:
            for label, wnid in enumerate(self.wnids):
                prefix = f"{self._prefix}train/{wnid}/"
                records += [
                    Record(prefix + f, label, "train") for f in list_images(self._train_dir / wnid)
                ]
        test = self._test_records()
        records += test
        if self.clean_labels is not None:
            records += self._clean_records(test)
        return records

    def accepted_labels(self, split: str = "test_clean") -> dict[str, list[int]]:
        """``{image id: accepted class indices}`` of ``split`` (for :func:`accepted_label_accuracy`)."""
        return {
            r.image_id: list(r.metadata.get("clean_labels", [r.label])) for r in self.records(split)
        }
