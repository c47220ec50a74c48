"""FungiTastic-Mini, read from the layout of BohemianVRA/FungiTastic (dataset/download.py, fungi.py).

Layout under ``root`` (the ``FungiTastic`` folder that ``dataset/download.py`` fills)::

    metadata/FungiTastic-Mini/FungiTastic-Mini-Train.csv
    metadata/FungiTastic-Mini/FungiTastic-Mini-ClosedSet-{Val,Test}.csv
        (the names the authors' code reads; FungiTastic-Mini-{Val,Test}.csv are accepted too)
    metadata/FungiTastic/FungiTastic-test-DEV.csv   the test labels (see below)
    FungiTastic-Mini/{train,val,test}/{300p,500p,720p,fullsize}/<filename>
    masks/FungiTastic-Mini-{Train,Validation}Masks.parquet      (optional, masks.zip)

Splits follow the observation year: train (up to 2021), val (2022), test (2023); 215 classes
(``category_id``), some of them absent from val/test. Every CSV column except ``filename`` and
``category_id`` becomes record metadata (``habitat``, ``substrate``, ``month``, ... as the metadata
prior needs them); ``group`` is empty.

Test labels: the released test CSV has no ``category_id`` (the authors' ``dataset/fungi.py``
returns no class for test). Their evaluation code (``baselines/vlm_fusion/vlm_utils.py``,
``load_split_df``) takes the labels from ``metadata/FungiTastic/FungiTastic-test-DEV.csv``, left
out its ``category_id == -1`` rows and merges it on ``filename``; this reader does the same (with
every column the test CSV lacks, ``species`` included), and says which file to get when the DEV
file is not there. A test CSV that has ``category_id`` is read as it is.

Image size: the configs (``configs/fungitastic/``, the segment and zero-shot configs) and this
class read the ``500p`` images, as the authors' evaluation code does; download them with
``dataset/download.py --images --subset m --size 500``, or read the size you have with
``--data.init_args.dataset.init_args.image_size_folder 300p`` (:data:`SIZE_FLAG`).

Masks: one parquet row per part (``cap``, ``gills``, ``pores``, ``ring``, ``stem``, sometimes
``fruiting_body``), columns ``file_name, label, width, height, rle``. ``rle`` follows the repo's
decoder (``dataset/mask_fungi.py``), not the docs' pycocotools snippet: it may be a string (read
with ``ast.literal_eval``), its last four values are a bounding box, the runs alternate starting
with background and fill a row-major ``(height, width)`` array.
"""

from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image

from occam_l2r.data.datasets._layout import (
    DatasetLayoutError,
    DatasetNotFoundError,
    first_existing,
    list_folders,
    require_dir,
    resize_mask,
)
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.errors import option_flag

SUBSET = "FungiTastic-Mini"
#: split -> (image folder, accepted CSV names in order of preference)
SPLIT_FILES = {
    "train": ("train", [f"{SUBSET}-Train.csv", f"{SUBSET}-ClosedSet-Train.csv"]),
    "val": ("val", [f"{SUBSET}-ClosedSet-Val.csv", f"{SUBSET}-Val.csv"]),
    "test": ("test", [f"{SUBSET}-ClosedSet-Test.csv", f"{SUBSET}-Test.csv"]),
}
#: where the test labels are when the test CSV has none (relative to root; the authors' code)
TEST_LABELS = "metadata/FungiTastic/FungiTastic-test-DEV.csv"
#: the image resolution the configs and this class read (the authors' evaluation code: 500p)
DEFAULT_SIZE = "500p"
#: the command-line flag that picks the resolution in fit, test, predict, validate, check (the
#: messages spell it as the running verb does: ``--data.dataset.init_args.image_size_folder``
#: in segment and occam, :func:`occam_l2r.errors.option_flag`)
SIZE_FLAG = "--data.init_args.dataset.init_args.image_size_folder"
#: split -> mask parquet file name (masks exist for train and val only)
MASK_FILES = {"train": f"{SUBSET}-TrainMasks.parquet", "val": f"{SUBSET}-ValidationMasks.parquet"}
DOWNLOAD_HINT = (
    "Download FungiTastic-Mini with BohemianVRA/FungiTastic dataset/download.py "
    "(--metadata, --images --subset m --size 500, optionally --masks) and set root to the "
    "'FungiTastic' folder it creates."
)


def decode_fungitastic_rle(rle: Any, height: int, width: int) -> np.ndarray:
    """Decode one FungiTastic mask RLE into a boolean ``(height, width)`` array.

    Args:
        rle: the ``rle`` cell: a list/array of ints, or its string form ``"[a, b, ...]"``. The
            last four values are the part's bounding box and are ignored.
        height: mask height (the parquet ``height`` column).
        width: mask width (the parquet ``width`` column).
    """
    if isinstance(rle, str):
        rle = ast.literal_eval(rle)
    counts = np.asarray(rle, dtype=np.int64)[:-4]
    if (counts < 0).any():
        raise ValueError("FungiTastic RLE has a negative run length; the parquet file is corrupt")
    values = (np.arange(counts.size) % 2).astype(bool)
    flat = np.repeat(values, counts)[: height * width]
    if flat.size < height * width:
        flat = np.concatenate([flat, np.zeros(height * width - flat.size, dtype=bool)])
    return flat.reshape(height, width)


def _clean(value: Any) -> Any:
    """CSV cell -> plain Python value (NaN -> None, numpy scalars -> int/float/str)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


class FungiTasticMini(RecordDataset):
    """FungiTastic-Mini (closed set): 215 fungi species, splits train/val/test by year.

    Args:
        root: the ``FungiTastic`` folder holding ``metadata/``, ``FungiTastic-Mini/`` and
            (optionally) ``masks/``.
        image_size_folder: which downloaded resolution to read (``FungiTastic-Mini/<split>/<this>``;
            ``500p`` as the configs, the download command of docs/datasets.md and the authors'
            evaluation code; :data:`SIZE_FLAG` on the command line).
        mask_mode: what :meth:`gt_masks` returns: ``union`` = one foreground mask (all parts
            merged, the whole fungus), ``parts`` = one mask per annotated part row.
    """

    val_split = "val"
    #: highly imbalanced, some classes absent from val/test: macro accuracy (L2R² §4.2, C.1)
    headline_metric = "macro_acc"

    def __init__(
        self,
        root: str,
        image_size_folder: Literal["300p", "500p", "720p", "fullsize"] = DEFAULT_SIZE,
        mask_mode: Literal["union", "parts"] = "union",
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.image_size_folder = image_size_folder
        self.mask_mode = mask_mode
        self.train_split = "train"
        self.test_splits = ["test"]
        self.group_names = []
        self._frames = {split: self._read_csv(split) for split in SPLIT_FILES}
        self.class_names = self._class_names()
        self._masks: dict[str, dict[str, list[tuple[str, Any, int, int]]]] = {}

    @property
    def name(self) -> str:
        return "fungitastic_mini"

    # ------------------------------------------------------------------ index files
    def _read_csv(self, split: str) -> pd.DataFrame:
        require_dir(self.root, "FungiTastic-Mini", DOWNLOAD_HINT)
        meta_dir = require_dir(self.root / "metadata" / SUBSET, "FungiTastic-Mini", DOWNLOAD_HINT)
        _, names = SPLIT_FILES[split]
        path = first_existing([meta_dir / n for n in names], "FungiTastic-Mini", DOWNLOAD_HINT)
        df = pd.read_csv(path, low_memory=False)
        source = str(path)
        if split == "test" and "category_id" not in df.columns:
            df, source = self._with_test_labels(df, path)
        missing = {"filename", "category_id", "species"} - set(df.columns)
        if missing:
            raise DatasetLayoutError(
                f"FungiTastic-Mini: {source} lacks the columns {sorted(missing)}; is it a "
                f"FungiTastic CSV? {DOWNLOAD_HINT}"
            )
        unknown = df["category_id"].isna() | (df["category_id"] < 0)
        if unknown.any():
            warnings.warn(
                f"{source}: {int(unknown.sum())} rows have no category_id (unknown species); "
                "they are left out of the closed-set records.",
                stacklevel=3,
            )
            df = df[~unknown]
        return df.assign(category_id=df["category_id"].astype(int))

    def _with_test_labels(self, df: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, str]:
        """The unlabelled test CSV ``df`` with the labels of :data:`TEST_LABELS` merged on
        ``filename`` (its ``category_id == -1`` rows left out first, as the authors' code does);
        the columns ``df`` lacks come from the DEV file. Returns the frame and its source."""
        dev_path = self.root / TEST_LABELS
        if not dev_path.is_file():
            raise DatasetNotFoundError(
                f"FungiTastic-Mini: the test CSV {path} has no labels (no category_id column) and "
                f"the file that holds them, {dev_path}, is not there. Get it with the metadata "
                "(BohemianVRA/FungiTastic dataset/download.py --metadata) and put it at that path "
                "(the test labels come from it, merged on filename, as the authors' "
                "baselines/vlm_fusion/vlm_utils.py does)."
            )
        dev = pd.read_csv(dev_path, low_memory=False)
        if not {"filename", "category_id"} <= set(dev.columns):
            raise DatasetLayoutError(
                f"FungiTastic-Mini: {dev_path} lacks the columns filename / category_id; it should "
                f"be the FungiTastic test DEV file (the test labels). {DOWNLOAD_HINT}"
            )
        dev = dev[dev["category_id"] != -1].drop_duplicates("filename")
        extra = [c for c in dev.columns if c not in df.columns]
        merged = df.merge(dev[["filename", *extra]], how="left", on="filename")
        return merged, f"{path} (labels from {dev_path})"

    def _class_names(self) -> list[str]:
        """``category_id`` -> species name, from every split (train first)."""
        names: dict[int, str] = {}
        for split in ("train", "val", "test"):
            pairs = self._frames[split][["category_id", "species"]].drop_duplicates("category_id")
            for cid, species in zip(pairs["category_id"], pairs["species"], strict=True):
                names.setdefault(int(cid), str(species))
        size = max(names) + 1
        return [names.get(i, f"category_{i}") for i in range(size)]

    def load_records(self) -> list[Record]:
        records = []
        for split, (folder, _) in SPLIT_FILES.items():
            df = self._frames[split]
            prefix = f"{SUBSET}/{folder}/{self.image_size_folder}"
            require_dir(self.root / prefix, "FungiTastic-Mini", self._size_hint(split, folder))
            extra = [c for c in df.columns if c not in ("filename", "category_id")]
            for row in df.to_dict("records"):
                records.append(
                    Record(
                        image_id=f"{prefix}/{row['filename']}",
                        label=int(row["category_id"]),
                        split=split,
                        group="",
                        metadata={k: _clean(row[k]) for k in extra},
                    )
                )
        return records

    def _size_hint(self, split: str, folder: str) -> str:
        """What to do when the images of ``split`` are not there at ``image_size_folder``: read
        a size that is there (the flag that sets it), or download this one."""
        split_dir = self.root / SUBSET / folder
        sizes = list_folders(split_dir) if split_dir.is_dir() else []
        size = self.image_size_folder
        size_arg = size.removesuffix("p") if size in ("300p", "500p") else size  # download.py's
        download = (
            "download them with BohemianVRA/FungiTastic dataset/download.py --images --subset m "
            f"--size {size_arg} (it fills {size}/)"
        )
        if not sizes:
            return f"The images of split '{split}' at size {size} are missing: {download}."
        there = ", ".join(sizes)
        flag = option_flag("data", "dataset.init_args.image_size_folder")
        return (
            f"The images of split '{split}' are there at {there}, not at {size}: read them with "
            f"{flag} {sizes[0]} (image_size_folder: {sizes[0]} in the dataset's init_args of "
            "the config; a segmentation store holds the size in its image ids, so segment and "
            f"train with the same one), or {download}."
        )

    # ------------------------------------------------------------------ masks
    def _mask_index(self, split: str) -> dict[str, list[tuple[str, Any, int, int]]]:
        if split not in self._masks:
            if split not in MASK_FILES:
                raise ValueError(
                    f"FungiTastic-Mini has ground-truth masks for train and val only, not '{split}'; "
                    "use a detector segmenter for this split."
                )
            path = self.root / "masks" / MASK_FILES[split]
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"FungiTastic-Mini: mask file not found: {path}. Download masks.zip "
                    "(dataset/download.py --masks) and extract it under root."
                )
            df = pd.read_parquet(path, columns=["file_name", "label", "width", "height", "rle"])
            index: dict[str, list[tuple[str, Any, int, int]]] = {}
            for fname, label, w, h, rle in df.itertuples(index=False, name=None):
                key = Path(str(fname)).name
                index.setdefault(key, []).append((str(label), rle, int(h), int(w)))
            self._masks[split] = index
        return self._masks[split]

    def has_gt_mask(self, record: Record) -> bool:
        """Whether the mask parquet of the record's split annotates this image."""
        if record.split not in MASK_FILES:
            return False
        return Path(record.image_id).name in self._mask_index(record.split)

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        """Ground-truth masks resized (nearest) to the size of the image read for ``record``.

        ``mask_mode='union'`` gives one mask (every part merged); ``'parts'`` one per part row, in
        parquet order (labels from :meth:`gt_mask_labels`).
        """
        parts = self._mask_index(record.split).get(Path(record.image_id).name)
        if not parts:
            raise ValueError(
                f"FungiTastic-Mini has no ground-truth mask for {record.image_id} "
                f"(masks/{MASK_FILES[record.split]} does not list it); use a detector segmenter."
            )
        with Image.open(self.image_path(record)) as im:
            width, height = im.size
        masks = [decode_fungitastic_rle(rle, h, w) for _, rle, h, w in parts]
        if self.mask_mode == "union":
            masks = [np.logical_or.reduce(masks)]
        return [resize_mask(m, height, width) for m in masks]

    def gt_mask_labels(self, record: Record) -> list[str]:
        """Part names of the masks :meth:`gt_masks` returns (``['fungus']`` in union mode)."""
        if self.mask_mode == "union":
            return ["fungus"]
        parts = self._mask_index(record.split).get(Path(record.image_id).name, [])
        return [label for label, *_ in parts]
