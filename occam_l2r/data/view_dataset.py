"""A torch ``Dataset`` of views: records -> image -> segmentation -> view -> augmentation.

Every sample is a dict with ``image`` (uint8 ``(C, H, W)``; normalisation happens on the device
in the task, with the model's own mean/std), ``label``, ``group`` (index), ``index`` (position in
``items``), ``candidate`` (the prompted class of a top-k candidate view, -1 otherwise),
``fallback`` (1 when the view fell back to FULL), and the strings ``id`` (the image id, path
relative to the dataset root) and ``group_name``.

Several views of one image (``view=["FULL", "FG_C"]``, e.g. for zero-shot ⊕max fusion) read the
image once; the sample then also holds ``views`` (view name -> image) and ``fallbacks`` (view
name -> flag), and ``image`` / ``fallback`` are the first view's.

With ``per_candidate=True`` an image prompted with several candidate classes (the top-k prompts
of L2R² appendix C.1) yields one item per candidate, each made from that candidate's detections
only. The candidates are the image's prompted classes (``prompt_ids`` of the store row), so a
candidate the detector found nothing for still yields its item: the FULL image with
``fallback`` 1 (footnote of C.1). Rows of stores written before ``prompt_ids`` only name the
candidates that have a detection (re-segment to get the others). An image with no candidate
(meta-prompted store, or absent from the store) yields one item with ``candidate`` -1.

The transforms resize the views with one interpolation for training and evaluation
(:func:`resolve_interpolation`: the config's, else the model's own, else bilinear); evaluation
squashes a view to the square input, or applies timm's shorter-side resize + centre crop
(:func:`eval_transform`, :func:`center_crop_geometry`).

An image that cannot be read raises an error naming the file and ``data.on_unreadable``; the
DataModule checks every image beforehand and its ``skip`` policy removes the unusable ones and
lists them with :func:`write_unreadable_csv` (:func:`unreadable_message` is the error of its
``error`` policy).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from occam_l2r.data.records import ImageReadError, Record, RecordDataset
from occam_l2r.store import SegmentationStore
from occam_l2r.views import CropBox, FgAspect, Foreground, View, apply_view

log = logging.getLogger(__name__)


#: the resize interpolations of the views; training and evaluation use the same one
Interpolation = Literal["bilinear", "bicubic", "area", "nearest"]
#: OpenCV's flag of each interpolation (the resizes are OpenCV's, through albumentations)
CV2_INTERPOLATION: dict[str, int] = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
}
#: how evaluation brings a view to the square input: ``squash`` resizes the whole view to
#: S x S (no pixel lost, a non-square image distorted); ``center_crop`` is timm's evaluation
#: transform (the shorter side resized to floor(S / crop_pct), the central S x S kept)
EvalResize = Literal["squash", "center_crop"]
#: the interpolation when neither the config nor the model names one
DEFAULT_INTERPOLATION: Interpolation = "bilinear"
#: timm's ``DEFAULT_CROP_PCT``, the crop fraction when neither the config nor the model gives one
DEFAULT_CROP_PCT = 0.875


def resolve_interpolation(name: str | None, model_default: str | None = None) -> Interpolation:
    """The interpolation of the view resizes: ``name`` (the config's), else the model's own
    (timm's ``pretrained_cfg["interpolation"]``, open_clip's preprocessing) when it is one of
    :data:`Interpolation`, else ``bilinear``."""
    if name is not None and name not in CV2_INTERPOLATION:
        raise ValueError(f"interpolation {name!r} is not one of {list(CV2_INTERPOLATION)}")
    for candidate in (name, model_default):
        if candidate in CV2_INTERPOLATION:
            return candidate  # type: ignore[return-value]
    return DEFAULT_INTERPOLATION


def center_crop_geometry(
    height: int, width: int, size: int, crop_pct: float
) -> tuple[int, int, int, int]:
    """``(resized height, resized width, top, left)`` of timm's centre-crop evaluation transform
    (``timm.data.transforms_imagenet_eval``, crop mode ``center``) on a ``height x width``
    image: torchvision's ``Resize(floor(size / crop_pct))`` of the shorter side (the longer one
    truncated), then ``CenterCrop(size)`` (offsets rounded)."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct={crop_pct} must be in (0, 1]")
    scale = math.floor(size / crop_pct)
    short, long = sorted((height, width))
    new_short, new_long = scale, int(scale * long / short)
    new_h, new_w = (new_short, new_long) if height <= width else (new_long, new_short)
    return new_h, new_w, int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))


class ShorterSideCenterCrop(A.ImageOnlyTransform):
    """timm's evaluation geometry (:func:`center_crop_geometry`) with OpenCV's resize."""

    def __init__(self, size: int, crop_pct: float, interpolation: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        center_crop_geometry(size, size, size, crop_pct)  # checks crop_pct
        self.size, self.crop_pct, self.interpolation = int(size), float(crop_pct), interpolation

    def apply(self, img: np.ndarray, **params: object) -> np.ndarray:
        h, w, top, left = center_crop_geometry(*img.shape[:2], self.size, self.crop_pct)
        img = cv2.resize(img, (w, h), interpolation=self.interpolation)
        return img[top : top + self.size, left : left + self.size]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "crop_pct", "interpolation")


def train_transform(
    image_size: int,
    scale: tuple[float, float] = (0.6, 1.0),
    hflip: bool = True,
    interpolation: Interpolation = DEFAULT_INTERPOLATION,
) -> A.Compose:
    """Training augmentation: random resized crop (with ``interpolation``), optional
    horizontal flip."""
    ops: list[A.BasicTransform] = [
        A.RandomResizedCrop(
            size=(image_size, image_size),
            scale=scale,
            interpolation=CV2_INTERPOLATION[interpolation],
        )
    ]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    return A.Compose(ops)


def eval_transform(
    image_size: int,
    interpolation: Interpolation = DEFAULT_INTERPOLATION,
    resize: EvalResize = "squash",
    crop_pct: float | None = None,
) -> A.Compose:
    """Deterministic evaluation transform with the training's ``interpolation``: the view
    resized to a square (``squash``; FG views are square already), or timm's shorter side +
    centre crop (``center_crop``, ``crop_pct`` default :data:`DEFAULT_CROP_PCT`)."""
    flag = CV2_INTERPOLATION[interpolation]
    if resize == "center_crop":
        pct = DEFAULT_CROP_PCT if crop_pct is None else crop_pct
        return A.Compose([ShorterSideCenterCrop(image_size, pct, flag)])
    if resize != "squash":
        raise ValueError(f"resize {resize!r} is not one of ['squash', 'center_crop']")
    return A.Compose([A.Resize(image_size, image_size, interpolation=flag)])


class ViewDataset(Dataset):
    """Records of one split rendered as one view.

    Args:
        dataset: the record dataset (reads images).
        records: the split's records.
        view: the view to produce, or several views of each image (the first is ``image``).
        store: the segmentation store, or ``None`` (only FULL is possible then).
        transform: albumentations pipeline applied to the view.
        group_index: group name -> index.
        score_threshold: detections scoring below fall back to FULL.
        foreground: ``top1`` or ``union`` of the kept detections.
        fill: constant for padding and masking.
        per_candidate: one item per (image, candidate class) instead of one per image.
        crop_box: ``mask`` (the segmentation's box) or ``detector`` box for FG_C, FG_M, BG_B.
        fg_aspect: FG_C / FG_M crops ``pad``-ded or ``stretch``-ed to a square.
    """

    def __init__(
        self,
        dataset: RecordDataset,
        records: Sequence[Record],
        view: View | Sequence[View],
        store: SegmentationStore | None,
        transform: A.Compose,
        group_index: dict[str, int],
        score_threshold: float = 0.0,
        foreground: Foreground = "top1",
        fill: int = 0,
        per_candidate: bool = False,
        crop_box: CropBox = "mask",
        fg_aspect: FgAspect = "pad",
    ) -> None:
        self.views: list[View] = [view] if isinstance(view, str) else list(view)
        if not self.views:
            raise ValueError("ViewDataset needs at least one view")
        if store is None and (needs := [v for v in self.views if v != "FULL"]):
            raise ValueError(
                f"view {needs[0]} needs a segmentation store; set data.segmentation (e.g. 'gt' or a store path)"
            )
        self.dataset = dataset
        self.records = list(records)
        self.view = self.views[0]
        self.store = store
        self.transform = transform
        self.group_index = group_index
        self.score_threshold = score_threshold
        self.foreground = foreground
        self.fill = fill
        self.crop_box: CropBox = crop_box
        self.fg_aspect: FgAspect = fg_aspect
        self.items: list[tuple[int, int]] = [(i, -1) for i in range(len(self.records))]
        if per_candidate:
            if store is None:
                raise ValueError(
                    "per_candidate views need a segmentation store with candidate-prompted detections"
                )
            self.items, old = [], 0
            for i, rec in enumerate(self.records):
                seg = store.get(rec.image_id)
                cands = seg.candidates() if seg is not None else []
                old += seg is not None and bool(seg.prompts) and not seg.prompt_ids
                self.items.extend((i, c) for c in cands) if cands else self.items.append((i, -1))
            if old:
                log.warning(
                    "%d image(s) of store %s were segmented before prompt_ids were stored: their "
                    "candidates without a detection get no view (re-segment to include them)",
                    old, store.path,
                )  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def render(self, index: int) -> tuple[np.ndarray, str | None]:
        """The (first) view of item ``index`` before augmentation, and the fallback reason if any."""
        return self.render_views(index)[self.view]

    def render_views(self, index: int) -> dict[str, tuple[np.ndarray, str | None]]:
        """Every view of item ``index`` before augmentation, with its fallback reason if any."""
        rec_index, candidate = self.items[index]
        rec = self.records[rec_index]
        try:
            image = self.dataset.read_image(rec)
        except (ImageReadError, FileNotFoundError) as err:
            raise type(err)(
                f"{err} (split {rec.split!r}). Set data.on_unreadable: skip to leave unreadable "
                "images out, or list them all with `python -m occam_l2r check --config <config>`."
            ) from err
        seg = self.store.get(rec.image_id) if self.store is not None else None
        if seg is not None and candidate >= 0:
            seg = seg.subset(np.nonzero(seg.label_ids == candidate)[0])
        out = {}
        for view in self.views:
            result = apply_view(
                view, image, seg, self.score_threshold, self.foreground, self.fill,
                self.crop_box, self.fg_aspect,
            )  # fmt: skip
            out[view] = (result.image, result.fallback)
        return out

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        image = self.transform(image=image)["image"]
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rec_index, candidate = self.items[index]
        rec = self.records[rec_index]
        rendered = self.render_views(index)
        image, fallback = rendered[self.view]
        sample = {
            "id": rec.image_id,
            "group_name": rec.group,
            "image": self._tensor(image),
            "label": torch.tensor(rec.label, dtype=torch.long),
            "group": torch.tensor(self.group_index.get(rec.group, 0), dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
            "candidate": torch.tensor(candidate, dtype=torch.long),
            "fallback": torch.tensor(fallback is not None, dtype=torch.float32),
        }
        if len(self.views) > 1:
            sample["views"] = {v: self._tensor(im) for v, (im, _) in rendered.items()}
            sample["fallbacks"] = {
                v: torch.tensor(why is not None, dtype=torch.float32)
                for v, (_, why) in rendered.items()
            }
        return sample


#: file listing the images left out by ``on_unreadable: skip`` (in the run folder)
UNREADABLE_FILE = "unreadable_images.csv"
UNREADABLE_COLUMNS = ("split", "image_id", "path", "reason")


def unreadable_rows(
    dataset: RecordDataset, unreadable: dict[str, list[tuple[Record, str]]]
) -> list[dict[str, str]]:
    """One row per (split, unreadable image): ``split``, ``image_id``, ``path``, ``reason``."""
    return [
        {"split": split, "image_id": r.image_id, "path": str(dataset.image_path(r)), "reason": why}
        for split, items in unreadable.items()
        for r, why in items
    ]


def write_unreadable_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write the rows of :func:`unreadable_rows` as CSV (atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=UNREADABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def unreadable_message(
    dataset: RecordDataset, splits: dict[str, list[Record]], bad: dict[str, str], shown: int = 20
) -> str:
    """The error of ``data.on_unreadable: error``: the files (the first ``shown``), why each cannot
    be used, and the ways out."""
    records = {r.image_id: r for recs in splits.values() for r in recs}
    named = [f"{dataset.image_path(records[i])} ({why})" for i, why in bad.items()]
    if len(bad) == len(records) and all(w == "file not found" for w in bad.values()):
        named[0] = f"none of the images exists (is the dataset root right?): {named[0]}"
    more = f"; ... and {len(named) - shown} more" if len(named) > shown else ""
    sized = sum(why.startswith("the image is ") for why in bad.values())
    fix = (
        f" {sized} of them do(es) not fit its ground-truth mask or stored segmentation: give the "
        "image its own mask, or recompute the segmentation (`python -m occam_l2r segment`; for "
        "data.segmentation: gt delete the gt store folder, it is rebuilt)."
        if sized
        else ""
    )
    return (
        f"{len(bad)} image(s) cannot be used: {'; '.join(named[:shown])}{more}.{fix} Re-extract "
        "or remove damaged files, or set data.on_unreadable: skip to leave unusable images out "
        "(counted and listed per split); `python -m occam_l2r check --config <your config>` "
        "lists them all."
    )
