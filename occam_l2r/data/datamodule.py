"""The one typed DataModule: a dataset, a view of it, a segmentation source, loaders per split.

Several named test splits each get their own dataloader (their names are ``test_split_names``);
``predict`` iterates train, val and every test split in eval mode for logits export.

Before anything runs, every image of every split (train, val and each test split, whatever
the view) is decoded once, in parallel and cached (:func:`occam_l2r.data.image_checks.scan_images`),
and checked by the one rule of a usable image (:meth:`ViewDataModule.unusable_images`, which
``python -m occam_l2r check`` applies too): it decodes (not missing, empty, not an image, corrupt,
truncated, or a 16-bit image of ambiguous depth) and, for a view that needs a segmentation, its
ground-truth masks and its stored segmentation have its size. Unusable images follow
``on_unreadable``: ``error`` stops with one message naming them all and the fixes; ``skip``
leaves them out of every split, counted per split in ``unreadable_counts`` (logged as
``<split>/num_unreadable``) and listed with their reasons in ``<run dir>/unreadable_images.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import albumentations as A
from jsonargparse.typing import NonNegativeInt, PositiveInt
from torch.utils.data import DataLoader

from occam_l2r.data.base import BaseDataModule, StoreCoverageError
from occam_l2r.data.image_checks import check_cache_path, scan_images
from occam_l2r.data.loaders import pin_memory_for, train_loader
from occam_l2r.data.records import (
    ImageReadError,
    Record,
    RecordDataset,
    gt_mask_mismatch,
    size_mismatch,
)
from occam_l2r.data.splits import split_records, splits_without_gt_masks
from occam_l2r.data.view_dataset import (
    UNREADABLE_FILE,
    EvalResize,
    Interpolation,
    ViewDataset,
    eval_transform,
    resolve_interpolation,
    train_transform,
    unreadable_message,
    unreadable_rows,
    write_unreadable_csv,
)
from occam_l2r.errors import UserError, option_flag
from occam_l2r.segmentation import score_kind
from occam_l2r.store import SegmentationStore
from occam_l2r.store_location import GT_STORE
from occam_l2r.views import CropBox, FgAspect, Foreground, View, check_views

log = logging.getLogger(__name__)


class NoSegmentationError(UserError, ValueError):
    """A view that needs a segmentation (FG_C, BG_S, ...) without ``data.segmentation``."""


class ViewDataModule(BaseDataModule):
    """Loads one view of a record dataset.

    Args:
        dataset: the dataset (``class_path`` + ``init_args`` in configs).
        view: a registered view (:data:`occam_l2r.views.VIEWS`: the paper's FULL, FG_C, FG_M,
            BG_S, BG_B, OCCAM's crop_resize_gray and alpha, CENTERCROP, and any view added with
            ``register_view``; an unknown name's error lists them all); or a list of views, each
            made from one read of the image (batches then carry ``views`` / ``fallbacks``).
        segmentation: ``None`` (FULL only), ``"gt"`` (ground-truth masks, converted on first use
            into ``gt_store_dir``), or a segmentation store: a bare name is
            ``<dataset root>/segmentations/<name>``, a value with a ``/`` a path
            (:func:`occam_l2r.store_location.resolve_store`).
        gt_store_dir: where the ``gt`` store is written; default ``<dataset root>/segmentations/gt``
            (set it when the dataset root is read-only or shared).
        score_threshold: detections scoring below it fall back to FULL (for a SAM automatic
            store the score is SAM's predicted IoU).
        foreground: ``top1`` (the detection of highest stored score: detector confidence, or
            SAM's predicted IoU for a SAM automatic store) or ``union`` of all kept detections.
        fill: constant (0-255) used to pad and mask.
        crop_box: the box FG_C / FG_M crop and BG_B masks: ``mask`` (the segmentation mask's
            tight box, L2R² Fig. 9; a store of boxes only uses the detector's) or ``detector``.
        fg_aspect: FG_C / FG_M crops ``pad``-ded to a square (no distortion) or ``stretch``-ed
            to one (the "distorted" rows of L2R² Table 15).
        on_missing: an image absent from the store is an ``error`` or gets the ``full`` fallback.
        on_unreadable: an image that cannot be used (missing, empty, not an image, corrupt,
            truncated, or of another size than its mask or stored segmentation; every image is
            decoded once beforehand) is an ``error`` naming the files, or is left out of its
            split (``skip``: the files are listed in ``<run dir>/unreadable_images.csv`` and
            counted as ``<split>/num_unreadable``).
        image_size: side of the square network input.
        interpolation: the resize interpolation of training and evaluation alike; ``None``: the
            model's own (timm's ``pretrained_cfg["interpolation"]``, bicubic for ConvNeXtV2;
            open_clip's preprocessing), which the task announces in its ``setup``
            (:meth:`use_model_preprocessing`), else ``bilinear``.
        eval_resize: how evaluation brings a view to the square input: ``squash`` (the whole
            view resized to ``image_size``², the L2R² tables' setting; FG views are square
            already) or ``center_crop`` (timm's evaluation transform: the shorter side resized
            to ``floor(image_size / crop_pct)``, the central square kept).
        crop_pct: the crop fraction of ``center_crop``; ``None``: the model's (timm's
            ``pretrained_cfg["crop_pct"]``; 1.0 for open_clip models), else 0.875.
        batch_size: per-device batch size.
        num_workers: dataloader workers (and the processes checking the images beforehand).
        seed: seed of the val hold-out for datasets without a val split.
        val_fraction: fraction of train held out as val when the dataset has no val split.
        train_scale: scale range of the training random resized crop.
        hflip: horizontal flips in training.
        test_splits: the test splits to evaluate; default every test split of the dataset.
        per_candidate: evaluation/predict loaders give one view per (image, candidate class) of
            a top-k candidate-prompted store (L2R² appendix C.1), a candidate without detection
            the FULL fallback; logits files then carry the candidate of each row.
    """

    def __init__(
        self,
        dataset: RecordDataset,
        view: View | list[View] = "FULL",
        segmentation: str | None = "gt",
        gt_store_dir: str | None = None,
        score_threshold: float = 0.0,
        foreground: Foreground = "top1",
        fill: int = 0,
        on_missing: Literal["error", "full"] = "error",
        on_unreadable: Literal["error", "skip"] = "error",
        image_size: PositiveInt = 224,
        interpolation: Interpolation | None = None,
        eval_resize: EvalResize = "squash",
        crop_pct: float | None = None,
        batch_size: PositiveInt = 128,
        num_workers: NonNegativeInt = 4,
        seed: int = 0,
        val_fraction: float = 0.1,
        train_scale: tuple[float, float] = (0.6, 1.0),
        hflip: bool = True,
        test_splits: list[str] | None = None,
        per_candidate: bool = False,
        crop_box: CropBox = "mask",
        fg_aspect: FgAspect = "pad",
    ) -> None:
        super().__init__()
        # plain ints in the hyperparameters (checkpoints load with torch.load(weights_only=True))
        image_size, batch_size, num_workers = int(image_size), int(batch_size), int(num_workers)
        self.save_hyperparameters(ignore=["dataset"])
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
        if crop_pct is not None and not 0.0 < crop_pct <= 1.0:
            raise ValueError(f"data.crop_pct={crop_pct} must be in (0, 1]")
        if min(image_size, batch_size) < 1 or num_workers < 0:
            raise ValueError(
                f"image_size={image_size} and batch_size={batch_size} must be positive, "
                f"num_workers={num_workers} not negative"
            )
        self.dataset = dataset
        views = [view] if isinstance(view, str) else list(view)
        if not views:
            raise ValueError("data.view: give a view or a non-empty list of views")
        self.views: list[View] = check_views(views, "data.view")
        self.view = self.views[0]
        self.segmentation = segmentation
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._test_splits = (
            list(test_splits) if test_splits is not None else list(dataset.test_splits)
        )
        self.splits: dict[str, list[Record]] = {}
        self.store: SegmentationStore | None = None
        #: split -> (record, reason) of the images left out (``on_unreadable: skip``)
        self.unreadable: dict[str, list[tuple[Record, str]]] = {}
        #: split -> number of images left out (logged as ``<split>/num_unreadable``)
        self.unreadable_counts: dict[str, int] = {}
        self._bad: dict[str, str] | None = None
        #: the model's own resize interpolation and crop fraction (:meth:`use_model_preprocessing`)
        self.model_interpolation: str | None = None
        self.model_crop_pct: float | None = None

    # ------------------------------------------------------------------ what tasks read
    @property
    def num_groups(self) -> int:
        return max(1, len(self.dataset.group_names))

    @property
    def val_split_names(self) -> list[str]:
        return ["val"]

    @property
    def test_split_names(self) -> list[str]:
        return list(self._test_splits)

    @property
    def predict_split_names(self) -> list[str]:
        if self.dataset.train_split is None:
            return list(self.test_split_names)
        return ["train", "val", *self.test_split_names]

    @property
    def needs_store(self) -> bool:
        """Whether a view other than FULL is asked for (it needs a segmentation)."""
        return any(v != "FULL" for v in self.views)

    @property
    def store_path(self) -> Path | None:
        """The folder of ``segmentation`` (``None`` without one)."""
        return None if self.segmentation is None else self.store_folder(self.segmentation)

    # ------------------------------------------------------------------ preprocessing
    def use_model_preprocessing(
        self, interpolation: str | None = None, crop_pct: float | None = None
    ) -> None:
        """The model's own resize interpolation and centre-crop fraction, used where
        ``interpolation`` / ``crop_pct`` are ``None`` (the task calls it in its ``setup``,
        before any loader is made)."""
        self.model_interpolation = interpolation
        self.model_crop_pct = crop_pct

    @property
    def interpolation(self) -> Interpolation:
        """The interpolation of every resize, training and evaluation alike."""
        return resolve_interpolation(self.hparams.interpolation, self.model_interpolation)

    @property
    def crop_pct(self) -> float | None:
        """The crop fraction of ``eval_resize: center_crop`` (``None``: timm's default)."""
        given = self.hparams.get("crop_pct")
        return given if given is not None else self.model_crop_pct

    def transform(self, train: bool) -> A.Compose:
        """The augmentation of training or the deterministic transform of evaluation, both
        with :attr:`interpolation`."""
        hp = self.hparams
        if train:
            return train_transform(
                hp.image_size, tuple(hp.train_scale), hp.hflip, self.interpolation
            )
        resize = hp.get("eval_resize", "squash")
        return eval_transform(hp.image_size, self.interpolation, resize, self.crop_pct)

    # ------------------------------------------------------------------ lifecycle
    def prepare_data(self) -> None:
        """Create the data if it can, check every image once, build the ``gt`` store (main
        process); with ``on_unreadable: error`` an unusable image stops the run here."""
        self.dataset.prepare()
        if self._bad is None:  # once per process (`fit` calls this again for its test)
            self._bad = self.unusable_images(self.split_records(), build=True)
        self._refuse_unusable()

    def _refuse_unusable(self) -> None:
        """``on_unreadable: error``: one message naming every unusable image and the fixes."""
        if self._bad and self.hparams.on_unreadable != "skip":
            raise ImageReadError(unreadable_message(self.dataset, self.split_records(), self._bad))

    def unusable_images(
        self,
        splits: dict[str, list[Record]],
        workers: int | None = None,
        cache: bool = True,
        build: bool = True,
    ) -> dict[str, str]:
        """``{image id: why}`` of the images of ``splits`` that cannot be used, in their order:
        the one rule of a usable image, for ``fit``, ``on_unreadable: skip`` and ``check``.

        An image is usable when it decodes (:func:`occam_l2r.data.records.image_check`, every
        file once, in parallel, cached) and, when a view needs a segmentation, its ground-truth
        masks (``segmentation: gt``) and its row in the store have its decoded size
        (:func:`occam_l2r.data.records.size_mismatch`). An image absent from a store is not
        unusable (``on_missing`` decides).

        Args:
            splits: the records per split.
            workers: decoding processes (default: ``num_workers``, at least 1).
            cache: reuse and remember the results of unchanged files
                (:func:`occam_l2r.data.image_checks.check_cache_path`).
            build: with ``segmentation: gt``, write (complete) the gt store of the readable
                images first, as the main process does before training (resumable).
        """
        records = {r.image_id: r for recs in splits.values() for r in recs}
        paths = {i: self.dataset.image_path(r) for i, r in records.items()}
        n = max(1, int(workers if workers is not None else self.num_workers))
        scan = scan_images(paths, n, check_cache_path(self.dataset) if cache else None)
        bad = dict(scan.bad)
        if self.needs_store and self.segmentation is not None:
            readable = {s: [r for r in recs if r.image_id not in bad] for s, recs in splits.items()}
            bad.update(self._mismatched(readable, scan.sizes, build))
        return {i: bad[i] for i in records if i in bad}

    def _mismatched(
        self, splits: dict[str, list[Record]], sizes: dict[str, tuple[int, int]], build: bool
    ) -> dict[str, str]:
        """The readable images of ``splits`` whose ground-truth masks or stored segmentation have
        another size than the decoded image (the store is opened, and kept for ``setup``)."""
        used = {r.image_id: r for recs in splits.values() for r in recs}
        if self.segmentation == GT_STORE:
            without = splits_without_gt_masks(self.dataset, splits)
            used = {r.image_id: r for s in splits if s not in without for r in splits[s]}
            if build:
                self.build_gt_store(used.values())
        try:
            self.store = self.open_store(self.segmentation)
        except FileNotFoundError:  # no store yet: setup names it and the fix
            return {}
        table = self.store.table.select(["image_id", "height", "width"]).to_pylist()
        where = f"its segmentation in {self.store.path}"
        out = {
            row["image_id"]: why
            for row in table
            if row["image_id"] in used and row["image_id"] in sizes
            if (why := size_mismatch(sizes[row["image_id"]], (row["height"], row["width"]), where))
        }
        if self.segmentation == GT_STORE:  # not stored: ground truth that does not fit the image
            for image_id, record in used.items():
                if image_id not in self.store and image_id in sizes:
                    if why := gt_mask_mismatch(self.dataset, record, sizes[image_id]):
                        out[image_id] = why
        return out

    def split_records(self) -> dict[str, list[Record]]:
        """The records of every split this DataModule uses (train, val, the test splits)."""
        hp = self.hparams
        return split_records(self.dataset, self.test_split_names, hp.val_fraction, hp.seed)

    def preflight(self) -> None:
        """Before the Trainer: the dataset's records can be listed and the store the views read
        exists (:meth:`read_store`; the ``gt`` store is built by ``prepare_data``, later)."""
        super().preflight()
        if self.segmentation != GT_STORE:
            self.read_store()

    def read_store(self) -> SegmentationStore | None:
        """The store the views read, opened once and kept (``None`` for FULL views). A view that
        needs a segmentation without ``data.segmentation``, or a store that is not there, is
        one message naming it and the fix (the same from :meth:`preflight` and ``setup``)."""
        if not self.needs_store:
            return None
        if self.segmentation is None:
            raise NoSegmentationError(
                f"{option_flag('data', 'view')} {self.views} needs data.segmentation: set "
                f"{option_flag('data', 'segmentation')} to gt, a store name or a store path"
            )
        if self.store is None:
            self.store = self.open_store(self.segmentation)
        return self.store

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.check_dataset()
        store = self.read_store()
        self.splits = self.split_records()
        if self._bad is None:  # a process without prepare_data (DDP ranks): cached, no build
            skip = self.hparams.on_unreadable == "skip"  # error: prepare_data checked them
            self._bad = self.unusable_images(self.splits, build=False) if skip else {}
        bad = self._bad
        self.unreadable = {
            s: [(r, bad[r.image_id]) for r in recs if r.image_id in bad]
            for s, recs in self.splits.items()
        }
        self.unreadable_counts = {s: len(v) for s, v in self.unreadable.items()}
        if bad:
            self.splits = {
                s: [r for r in recs if r.image_id not in bad] for s, recs in self.splits.items()
            }
            self._report_unreadable()
        if store is not None:
            self._check_store()
            if self.hparams.foreground == "top1":
                log.info(
                    "data.foreground=top1: the views use the detection of highest %s in %s",
                    score_kind(self.store.segmenter), self.store_path,
                )  # fmt: skip
        self._log_data()

    def _log_data(self) -> None:
        """INFO lines (rank 0): the dataset root, the store, the images of each split and how
        many of them get the FULL fallback because the store lacks them."""
        if self.trainer is not None and not self.trainer.is_global_zero:
            return
        hp, dataset = self.hparams, self.dataset
        views = "/".join(map(str, self.views))
        log.info("data: %s (%s), view %s", dataset.root, type(dataset).__name__, views)
        counts = ", ".join(f"{s} {len(recs)}" for s, recs in self.splits.items())
        if self.store is not None and self.needs_store:
            log.info("segmentation store: %s (%s)", self.store_path, self.store.segmenter)
            fallback = {
                s: sum(r.image_id not in self.store for r in recs)
                for s, recs in self.splits.items()
            }
            shown = ", ".join(f"{s} {n}" for s, n in fallback.items())
            log.info(
                "images per split: %s; not in the store, FULL fallback (data.on_missing=%s): %s",
                counts, hp.on_missing, shown,
            )  # fmt: skip
        else:
            log.info("images per split: %s (no segmentation store: FULL images)", counts)

    def _report_unreadable(self) -> None:
        """Log the left-out images once and list them in ``<run dir>/unreadable_images.csv``."""
        rows = unreadable_rows(self.dataset, self.unreadable)
        where, trainer = "", self.trainer
        if trainer is not None:
            path = Path(trainer.log_dir or trainer.default_root_dir) / UNREADABLE_FILE  # all ranks
            if not trainer.is_global_zero:
                return
            write_unreadable_csv(path, rows)
            where = f"; list in {path}"
        counts = ", ".join(f"{s} {n}" for s, n in self.unreadable_counts.items())
        shown = "; ".join(f"{row['path']} ({row['reason']})" for row in rows[:10])
        log.warning(
            "data.on_unreadable=skip: left out %d unreadable image(s) (%s): %s%s%s",
            len(rows), counts, shown, "; ..." if len(rows) > 10 else "", where,
        )  # fmt: skip

    def _check_store(self) -> None:
        assert self.store is not None
        for split, records in self.splits.items():
            missing = [r.image_id for r in records if r.image_id not in self.store]
            if not missing:
                continue
            msg = (
                f"{len(missing)} of {len(records)} images of split {split!r} are not in the segmentation "
                f"store {self.store_path} (first: {missing[:3]})."
            )
            if self.hparams.on_missing == "error":
                raise StoreCoverageError(
                    msg
                    + " Run `python -m occam_l2r segment` for this dataset (it resumes), or use "
                    f"the FULL image for them: {option_flag('data', 'on_missing')} full "
                    "(data.on_missing: full in the config)."
                )
            log.warning("%s They get the FULL fallback (data.on_missing=full).", msg)

    def _dataset(self, split: str, train: bool) -> ViewDataset:
        hp = self.hparams
        transform = self.transform(train)
        groups = {g: i for i, g in enumerate(self.dataset.group_names)}
        return ViewDataset(
            self.dataset,
            self.splits[split],
            self.views,
            self.store if self.needs_store else None,
            transform,
            groups,
            hp.score_threshold,
            hp.foreground,
            hp.fill,
            per_candidate=hp.per_candidate and not train,
            crop_box=hp.crop_box,
            fg_aspect=hp.fg_aspect,
        )

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        common = {
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,  # workers (and their store) kept
            "pin_memory": pin_memory_for(self.trainer),  # uint8 batches, pinned for CUDA
        }
        if not train:  # in order; over several processes every sample counted once
            return self.eval_loader(self._dataset(split, False), self.batch_size, **common)
        return train_loader(
            self._dataset(split, train),
            self.batch_size,
            drop_last=len(self.splits[split]) > self.batch_size,
            **common,
        )

    def eval_dataloader(self, split: str) -> DataLoader:
        """The in-order evaluation loader of any split (DDP-exact): what ``predict`` reads, and
        what the feature store computes features from."""
        return self._loader(split)

    def train_dataloader(self) -> DataLoader:
        if not self.splits["train"]:
            raise ValueError(
                f"{type(self.dataset).__name__} has no training split; it is an evaluation-only dataset "
                "(use `test` or `predict` with a checkpoint trained elsewhere)"
            )
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(name) for name in self.test_split_names]

    def predict_dataloader(self) -> list[DataLoader]:
        return [self._loader(name) for name in self.predict_split_names]
