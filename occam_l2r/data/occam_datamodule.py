"""OCCAM's data: every image with all of its masks, applied every way, from one or more stores.

:class:`OccamDataset` reads an image once and, for each mask source (a segmentation store of
class-agnostic masks: SAM automatic masks, imported CropFormer / FT-Dinosaur masks, scikit-image
regions, or ``gt``), applies every mask of the image with every apply mode
(:func:`occam_l2r.occam.apply.applied_inputs`, a pure data transform) as a square network input.
It scores nothing: the foreground scores and the IoU diagnostics are computed by
:class:`occam_l2r.occam.model.Occam`, called by the task. A sample holds:

- ``image`` (``(3, S, S)`` uint8, the whole image) and, with the ``alpha`` mode, ``image_alpha``
  (``(4, S, S)``, the whole image with a full α-channel);
- ``applied[source][mode]`` — ``(K, C, S, S)`` uint8, the K masks of the image applied (K may be
  0: the image then counts as having no masks and is classified on the whole image);
- ``masks[source]`` — the K masks themselves, a boolean ``(K, H, W)`` array;
- ``gt_box`` and ``gt_object`` — the image's ground-truth box (the union of the dataset's
  ``gt_boxes(record)`` when it has them, else the tight box of its ground-truth masks) and object
  mask, ``None`` without them (:func:`occam_l2r.occam.ground_truth.ground_truth`);
- ``label``, ``group``, ``index``, ``id``, ``group_name`` as in every DataModule of the toolkit.

:func:`collate_occam` concatenates the applied masks of a batch per (source, mode) so a task
encodes them together, keeps the masks and the ground truth as per-image lists, and gives
``owner[source]`` (the batch position of each mask) and ``num_masks[source]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

from occam_l2r.data.base import BaseDataModule
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.errors import UserError, option_flag
from occam_l2r.occam.apply import (
    ALL_APPLY_MODES,
    APPLY_MODES,
    ApplyMode,
    applied_inputs,
    whole_input,
)
from occam_l2r.occam.ground_truth import ground_truth
from occam_l2r.store import SegmentationStore
from occam_l2r.store_location import GT_STORE

log = logging.getLogger(__name__)

#: fields of a sample that :func:`collate_occam` does not stack with ``default_collate``
PER_IMAGE = ("applied", "masks", "gt_box", "gt_object")


class MissingMasksError(UserError, ValueError):
    """Images of a split are absent from a mask source's store (``on_missing: error``)."""


class DuplicateSourceError(UserError, ValueError):
    """Two mask sources name stores of the same folder name (one row name in the tables)."""


class OccamDataset(Dataset):
    """The images of one split with every mask of every source, applied every way.

    Args:
        dataset: the record dataset (reads images and ground truth).
        records: the split's records.
        stores: source name -> its store.
        modes: the apply modes.
        image_size: side S of the square network input.
        group_index: group name -> index.
        min_area: masks with fewer pixels are ignored.
        max_masks: at most this many masks per image and source, in the store's order.
        with_ground_truth: read the ground-truth box and object (the ``bbox_iou`` score, the
            ``object_iou`` diagnostic).
    """

    def __init__(
        self,
        dataset: RecordDataset,
        records: Sequence[Record],
        stores: dict[str, SegmentationStore],
        modes: Sequence[str],
        image_size: int,
        group_index: dict[str, int],
        min_area: int = 1,
        max_masks: int | None = None,
        with_ground_truth: bool = True,
    ) -> None:
        self.dataset = dataset
        self.records = list(records)
        self.stores = stores
        self.modes = list(modes)
        self.size = int(image_size)
        self.group_index = group_index
        self.min_area = min_area
        self.max_masks = max_masks
        self.with_ground_truth = with_ground_truth

    def __len__(self) -> int:
        return len(self.records)

    def masks_of(self, source: str, image_id: str, size: tuple[int, int]) -> list[np.ndarray]:
        """The usable masks of an image in a source (none if the store lacks the image)."""
        seg = self.stores[source].get(image_id)
        if seg is None or not seg.has_masks:
            return []
        if (seg.height, seg.width) != size:
            raise ValueError(
                f"the {source} masks of {image_id} are {seg.width}x{seg.height} but the image is "
                f"{size[1]}x{size[0]}; the store {self.stores[source].path} belongs to other "
                "images."
            )
        masks = [m for i in range(len(seg)) if int((m := seg.mask(i)).sum()) >= self.min_area]
        return masks[: self.max_masks] if self.max_masks is not None else masks

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        image = self.dataset.read_image(rec)
        hw = image.shape[:2]
        box, obj = ground_truth(self.dataset, rec, hw) if self.with_ground_truth else (None, None)
        sample: dict[str, Any] = {
            "id": rec.image_id,
            "group_name": rec.group,
            "label": torch.tensor(rec.label, dtype=torch.long),
            "group": torch.tensor(self.group_index.get(rec.group, 0), dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
            "image": whole_input("FULL", image, self.size),
            "applied": {},
            "masks": {},
            "gt_box": box,
            "gt_object": obj,
        }
        if "alpha" in self.modes:
            sample["image_alpha"] = whole_input("alpha", image, self.size)
        for source in self.stores:
            masks = self.masks_of(source, rec.image_id, hw)
            sample["applied"][source] = {
                mode: applied_inputs(mode, image, masks, self.size) for mode in self.modes
            }
            sample["masks"][source] = np.stack(masks) if masks else np.zeros((0, *hw), bool)
        return sample


def collate_occam(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch: per-image fields stacked, applied masks concatenated per (source, mode), masks
    and ground truth as per-image lists, with ``owner[source]`` (batch position of each mask)
    and ``num_masks[source]``."""
    batch = default_collate([{k: v for k, v in s.items() if k not in PER_IMAGE} for s in samples])
    sources = list(samples[0]["masks"])
    counts = {
        src: torch.tensor([len(s["masks"][src]) for s in samples], dtype=torch.long)
        for src in sources
    }
    batch["num_masks"] = counts
    batch["owner"] = {
        src: torch.repeat_interleave(torch.arange(len(samples)), counts[src]) for src in sources
    }
    batch["applied"] = {
        src: {mode: torch.cat([s["applied"][src][mode] for s in samples]) for mode in modes}
        for src, modes in samples[0]["applied"].items()
    }
    batch["masks"] = {src: [s["masks"][src] for s in samples] for src in sources}
    batch["gt_box"] = [s["gt_box"] for s in samples]
    batch["gt_object"] = [s["gt_object"] for s in samples]
    return batch


class OccamDataModule(BaseDataModule):
    """Test/predict loaders of OCCAM: every mask of every source, applied every way.

    Args:
        dataset: the dataset (``class_path`` + ``init_args`` in configs).
        mask_sources: segmentation stores of class-agnostic masks: a bare name is the store
            ``<dataset root>/segmentations/<name>`` (e.g. ``synthetic_regions``, written by
            ``python -m occam_l2r segment --config configs/segment/synthetic_regions.yaml``),
            ``gt`` the ground-truth masks (built on first use), a value with a ``/`` a store
            folder (:func:`occam_l2r.store_location.resolve_store`). A source's name in the
            tables is the folder's name.
        apply_modes: ``crop_resize_gray``, ``crop_resize_original``, ``alpha``.
        splits: the splits to evaluate; default every test split of the dataset.
        image_size: side of the square network input (the zero-shot model's resolution).
        min_area: masks with fewer pixels are ignored.
        max_masks: at most this many masks per image and source (the store's first ones).
        ground_truth: read each image's ground-truth box and object (the ``bbox_iou`` score and
            the chosen mask's IoU with the object).
        on_missing: an image absent from a store is an ``error``, or has no masks (``empty``:
            classified on the whole image and counted).
        gt_store_dir: where the ``gt`` source is written; default
            ``<dataset root>/segmentations/gt``.
        batch_size: images per batch (their masks are encoded together).
        num_workers: DataLoader workers (each applies the masks of its images).
    """

    def __init__(
        self,
        dataset: RecordDataset,
        mask_sources: list[str],
        apply_modes: list[ApplyMode] | None = None,
        splits: list[str] | None = None,
        image_size: PositiveInt = 224,
        min_area: PositiveInt = 1,
        max_masks: PositiveInt | None = None,
        ground_truth: bool = True,
        on_missing: Literal["error", "empty"] = "error",
        gt_store_dir: str | None = None,
        batch_size: PositiveInt = 16,
        num_workers: NonNegativeInt = 2,
    ) -> None:
        super().__init__()
        modes = list(apply_modes) if apply_modes is not None else list(APPLY_MODES)
        self.save_hyperparameters(ignore=["dataset"])
        if not mask_sources:
            raise ValueError("data.mask_sources: give at least one segmentation store")
        bad = [m for m in modes if m not in ALL_APPLY_MODES]
        if bad or not modes:
            raise ValueError(f"data.apply_modes={modes}: choose from {ALL_APPLY_MODES}")
        self.dataset = dataset
        self.apply_modes = modes
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.splits_asked = list(splits) if splits is not None else None
        self.stores: dict[str, SegmentationStore] = {}
        self.records: dict[str, list[Record]] = {}

    # ------------------------------------------------------------------ what the task reads
    @property
    def test_split_names(self) -> list[str]:
        return list(self.splits_asked or self.dataset.test_splits)

    val_split_names = test_split_names
    predict_split_names = test_split_names

    @property
    def source_names(self) -> list[str]:
        """The table name of each mask source (its store folder's name)."""
        sources = self.hparams.mask_sources
        return [GT_STORE if s == GT_STORE else self.store_folder(s).name for s in sources]

    # ------------------------------------------------------------------ lifecycle
    def _split_records(self) -> dict[str, list[Record]]:
        return {s: list(self.dataset.records(s)) for s in self.test_split_names}

    def prepare_data(self) -> None:
        """Create the dataset if it can; build the ``gt`` store when it is a source."""
        self.dataset.prepare()
        if GT_STORE in self.hparams.mask_sources:
            used = {r.image_id: r for recs in self._split_records().values() for r in recs}
            self.build_gt_store(used.values())

    def preflight(self) -> None:
        """Before the Trainer: the dataset's records can be listed and the mask sources' stores
        exist (:meth:`open_sources`; the ``gt`` source is built by ``prepare_data``, later)."""
        super().preflight()
        self.open_sources(built=False)

    def open_sources(self, built: bool = True) -> dict[str, SegmentationStore]:
        """The stores of the mask sources by table name, in the config's order, each opened once
        and kept; a store that is not there is one message naming it and the fix (the same from
        :meth:`preflight` and ``setup``). ``built=False``: leave out the ``gt`` source, which
        ``prepare_data`` builds."""
        names = self.source_names
        if len(set(names)) != len(names):
            raise DuplicateSourceError(
                f"{option_flag('data', 'mask_sources')} name two stores alike: {names}; give "
                "each source once (a store's name in the tables is its folder's name)"
            )
        stores: dict[str, SegmentationStore] = {}
        for source, name in zip(self.hparams.mask_sources, names, strict=True):
            if built or source != GT_STORE:
                stores[name] = self.stores[name] if name in self.stores else self.open_store(source)
        self.stores = stores
        return stores

    def setup(self, stage: str | None = None) -> None:
        if self.records and len(self.stores) == len(self.hparams.mask_sources):
            return
        self.check_dataset()
        self.records = self._split_records()
        for name, store in self.open_sources().items():
            for split, records in self.records.items():
                missing = [r.image_id for r in records if r.image_id not in store]
                if not missing:
                    continue
                msg = (
                    f"{len(missing)} of {len(records)} images of split {split!r} are not in the "
                    f"mask source {name} ({store.path}; first: {missing[:3]})."
                )
                if self.hparams.on_missing == "error":
                    raise MissingMasksError(
                        msg + " Run `python -m occam_l2r segment` for them (it resumes), or "
                        f"classify them on the whole image: {option_flag('data', 'on_missing')} "
                        "empty (data.on_missing: empty in the config)."
                    )
                log.warning("%s They have no masks (data.on_missing=empty).", msg)

    def _dataset(self, split: str) -> OccamDataset:
        hp = self.hparams
        groups = {g: i for i, g in enumerate(self.dataset.group_names)}
        return OccamDataset(
            self.dataset,
            self.records[split],
            self.stores,
            self.apply_modes,
            self.image_size,
            groups,
            min_area=hp.min_area,
            max_masks=hp.max_masks,
            with_ground_truth=hp.ground_truth,
        )

    def _loader(self, split: str) -> DataLoader:
        return self.eval_loader(
            self._dataset(split),
            self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_occam,
            persistent_workers=self.num_workers > 0,
        )

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(s) for s in self.test_split_names]

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(s) for s in self.val_split_names]

    def predict_dataloader(self) -> list[DataLoader]:
        return [self._loader(s) for s in self.predict_split_names]
