"""A trained L2R² system as one Python object: images in, ``classify``'s decision out.

:class:`System` holds what ``classify`` runs with — the fitted fusion
(:class:`~occam_l2r.fusion.saved.SavedFusion`), the view models
(:class:`~occam_l2r.classify.models.ViewModel`) and a
:class:`~occam_l2r.classify.config.ClassifyConfig` with the views' settings — and calling it runs
the same engine (:func:`occam_l2r.classify.engine.classify_images`, the table of
:func:`occam_l2r.classify.table.prediction_rows`) on images in memory: PIL images, ``(H, W, 3)``
uint8 arrays, a tensor batch ``(N, 3, H, W)`` or image files. It is built

- from a ``fuse`` output folder or a ``pipeline`` experiment folder (:meth:`System.from_run`): the
  fused pair's runs are the ones ``fuse`` recorded in ``results.jsonl`` (the FULL run of the same
  seed for the fallback), the views' settings and the segmenter come from the FG run's
  ``config.yaml``, the class names from its logits; the checkpoints are read by
  :class:`~occam_l2r.classify.models.ViewModel` (the task classes: Lightning is imported);
- from an export folder (:meth:`System.from_export`, :mod:`occam_l2r.classify.portable`): JSON
  and safetensors only, no Lightning.

:meth:`System.export` writes the export folder. :func:`occam_l2r.load` picks the constructor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.engine import Classified, classify_images, needed_views
from occam_l2r.classify.models import ViewModel
from occam_l2r.classify.portable import (
    VIEW_SETTINGS,
    Exported,
    ExportError,
    read_export,
    write_export,
)
from occam_l2r.classify.table import prediction_rows
from occam_l2r.data.records import to_uint8_rgb, upright
from occam_l2r.errors import UserError
from occam_l2r.fusion.pairs import Pair
from occam_l2r.fusion.runner import load_done
from occam_l2r.fusion.saved import SavedFusion, load_fusion
from occam_l2r.segmentation import Segmentation
from occam_l2r.store_location import open_store

#: what an image given to :class:`System` may be
ImageLike = Any  # PIL.Image.Image | np.ndarray | torch.Tensor | str | Path


class SystemSourceError(UserError, FileNotFoundError):
    """A folder that is neither an export nor a ``fuse`` / ``pipeline`` output."""


@dataclass
class Predictions:
    """What :class:`System` computed for a batch of images.

    Attributes:
        table: ``classify``'s table (docs/classify.md: ``pred``, ``pred_name``, ``confidence``,
            ``decided_by``, ``fallback_reason``, each view's ``<view>_top<r>`` and
            ``_top<r>_conf``, ...), one row per image in the order given.
        logits: view -> ``(N, C)`` logits in the order given (NaN rows where the view's model did
            not run: the cascade, or the fallback view of an image that did not fall back).
        result: the engine's whole outcome (:class:`~occam_l2r.classify.engine.Classified`).
    """

    table: pd.DataFrame
    logits: dict[str, np.ndarray]
    result: Classified

    def __len__(self) -> int:
        return len(self.table)

    @property
    def pred(self) -> np.ndarray:
        """The fused class of each image (-1 for an image that could not be read)."""
        return self.table["pred"].fillna(-1).to_numpy(np.int64)


class System:
    """A trained L2R² system: view models, fitted fusion, views' settings, class names.

    Call it on images (:meth:`__call__`). Build it with :func:`occam_l2r.load`,
    :meth:`from_run` or :meth:`from_export`.

    Attributes:
        config: the classify settings it runs with (views' settings, fallback, ``top_k``,
            ``cascade``, ``batch_size``, ``device``; change them with :func:`dataclasses.replace`).
        fusion: the fitted fusion.
        models: view -> its model.
        segmenter: the segmenter of the training views (``None``: unknown).
        source: where it was loaded from.
    """

    def __init__(
        self,
        config: ClassifyConfig,
        fusion: SavedFusion,
        models: dict[str, ViewModel],
        segmenter: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
    ) -> None:
        self.config, self.fusion, self.models = config, fusion, models
        self.segmenter, self.source = segmenter, source or {}

    @property
    def class_names(self) -> list[str] | None:
        return self.config.class_names

    def __repr__(self) -> str:
        pair = "+".join(self.fusion.views)
        return (
            f"System({pair}, {self.fusion.method} {self.fusion.params}, models "
            f"{sorted(self.models)}, {len(self.class_names or [])} class names)"
        )

    # ------------------------------------------------------------------ building
    @classmethod
    def from_run(
        cls,
        path: str | Path,
        pair: str = "FG_C+FULL",
        method: str = "threshold",
        seed: int = 0,
        **settings: Any,
    ) -> System:
        """The system of a ``fuse`` output folder, or a ``pipeline`` experiment folder (its
        ``fusion/``).

        Args:
            path: the folder.
            pair, method, seed: the fused cell (as ``classify``'s).
            settings: other :class:`ClassifyConfig` fields (``device``, ``batch_size``,
                ``cascade``, ``top_k``, a view setting that overrides the run's, ...).

        Raises:
            SystemSourceError: no ``results.jsonl`` in ``path`` or ``path/fusion``.
            SavedFusionError: as :func:`occam_l2r.fusion.saved.load_fusion`.
        """
        fusion_dir = fusion_folder(path)
        fusion = load_fusion(fusion_dir, pair, method, seed)
        runs = dict(zip(fusion.views, (find_run(r, fusion_dir) for r in fusion.runs), strict=True))
        fallback_view = settings.get("fallback_view", "FULL")
        if fallback_view not in runs:
            full = fallback_run(fusion_dir, fallback_view, seed)
            if full is not None:
                runs[fallback_view] = find_run(full, fusion_dir)
        data = run_data(runs[fusion.views[0]])
        view_settings = {k: data[k] for k in VIEW_SETTINGS if k in data}
        config = ClassifyConfig(
            images="", output_dir="", checkpoints={v: str(r) for v, r in runs.items()},
            fusion_dir=str(fusion_dir), pair=Pair(*fusion.views).name, method=method, seed=seed,
            class_names=run_class_names(runs[fusion.views[0]]), **{**view_settings, **settings},
        )  # fmt: skip
        views = needed_views(config, fusion)
        models = {
            v: ViewModel(v, config.checkpoints[v], config.image_size, config.device) for v in views
        }
        source = {"fusion_dir": str(fusion_dir), "runs": {v: str(r) for v, r in runs.items()}}
        return cls(config, fusion, models, run_segmenter(data), source)

    @classmethod
    def from_export(cls, path: str | Path, **settings: Any) -> System:
        """The system of an export folder (:mod:`occam_l2r.classify.portable`); no Lightning.

        Args:
            settings: :class:`ClassifyConfig` fields to change (``device``, ``batch_size``, ...).
        """
        ex = read_export(path)
        config = ClassifyConfig(
            images="", output_dir="", checkpoints={v: str(ex.folder) for v in ex.nets},
            fusion_dir=str(ex.folder), pair=Pair(*ex.pair).name, method=ex.method, seed=ex.seed,
            fallback=ex.fallback, fallback_view=ex.fallback_view, class_names=ex.class_names,  # type: ignore[arg-type]
            **{**ex.settings, **settings},
        )  # fmt: skip
        fusion = SavedFusion(ex.pair, ex.method, ex.seed, ex.params, ("", ""), {})
        views = needed_views(config, fusion)
        missing = [v for v in views if v not in ex.nets]
        if missing:
            raise ExportError(f"the export {ex.folder} has no network of view(s) {missing}")
        models = {
            v: ViewModel.from_weights(v, ex.nets[v], ex.weights(v), config.image_size,
                                      config.device, ex.folder / f"{v}.safetensors")
            for v in views
        }  # fmt: skip
        return cls(config, fusion, models, ex.segmenter, {"export": str(ex.folder), **ex.source})

    def exported(self) -> Exported:
        """What :meth:`export` writes in ``config.json``."""
        c = self.config
        return Exported(
            folder=Path(), pair=self.fusion.views, method=self.fusion.method,
            seed=self.fusion.seed, params=self.fusion.params, fallback=c.fallback,
            fallback_view=c.fallback_view, nets={v: m.spec for v, m in self.models.items()},
            settings={k: getattr(c, k) for k in VIEW_SETTINGS}, class_names=c.class_names,
            segmenter=self.segmenter, source=self.source,
        )  # fmt: skip

    def export(self, folder: str | Path) -> list[Path]:
        """Write the system as an export folder (``config.json`` + ``<view>.safetensors``).

        Raises:
            ExportError: a view is a probe on a frozen backbone or a view of a shared backbone
                (not exported yet: classify it from its run folder).
        """
        others = [v for v, m in self.models.items() if not m.exportable]
        if others:
            raise ExportError(
                f"view(s) {others} are probes on frozen backbones or views of a shared backbone "
                f"({', '.join(str(self.models[v].checkpoint) for v in others)}); export holds "
                "classifiers only for now: classify these runs from their run folders"
            )
        weights = {v: m.weights() for v, m in self.models.items()}
        return write_export(folder, self.exported(), weights)

    # ------------------------------------------------------------------ classifying
    def __call__(
        self,
        images: ImageLike | Sequence[ImageLike],
        segmentations: Sequence[Segmentation | None] | Mapping[str, Segmentation | None]
        | str | Path | None = None,
        ids: Sequence[str] | None = None,
    ) -> Predictions:  # fmt: skip
        """Classify ``images`` as ``classify`` does.

        Args:
            images: a PIL image, an ``(H, W, 3)`` uint8 array, an image file, a tensor batch
                ``(N, 3, H, W)`` (uint8, or float in 0-1), or a list of them.
            segmentations: each image's segmentation (a list in the images' order), a mapping
                id -> segmentation, or a segmentation store (a folder or a store name) keyed by
                ``ids``; an image without one falls back to ``fallback_view`` (§3.1). ``None``:
                every image falls back.
            ids: the images' ids (default ``000000``, ``000001``, ...).
        """
        pixels = as_pixel_list(images)
        ids = [f"{k:06d}" for k in range(len(pixels))] if ids is None else [str(i) for i in ids]
        if len(ids) != len(pixels):
            raise UserError(f"{len(ids)} ids for {len(pixels)} images")
        paths = [
            Path(p) if isinstance(p, (str, Path)) else Path(i)
            for i, p in zip(ids, pixels, strict=True)
        ]
        arrays = {i: p for i, p in zip(ids, pixels, strict=True) if isinstance(p, np.ndarray)}
        segs: Mapping[str, Segmentation | None] | None
        if segmentations is None:
            segs = {}
        elif isinstance(segmentations, (str, Path)):
            store = open_store(segmentations)
            segs = {i: store.get(i) for i in ids}
        elif isinstance(segmentations, Mapping):
            segs = segmentations
        else:
            if len(segmentations) != len(ids):
                raise UserError(f"{len(segmentations)} segmentations for {len(ids)} images")
            segs = dict(zip(ids, segmentations, strict=True))
        result = classify_images(
            self.config, self.fusion, self.models, list(zip(ids, paths, strict=True)), arrays, segs
        )
        table = prediction_rows(self.config, self.fusion, result)
        order = {i: k for k, i in enumerate(ids)}
        table = table.sort_values("image_id", key=lambda s: s.map(order)).reset_index(drop=True)
        rows = [order[item.image_id] for item in result.items]
        logits = {}
        for view, z in result.logits.items():
            full = np.full((len(ids), z.shape[1]), np.nan, np.float32)
            full[rows] = z
            logits[view] = full
        return Predictions(table, logits, result)

    def with_settings(self, **settings: Any) -> System:
        """The same models and fusion with other classify settings (``cascade``, ``top_k``...)."""
        return System(replace(self.config, **settings), self.fusion, self.models,
                      self.segmenter, self.source)  # fmt: skip


def as_pixel_list(images: ImageLike | Sequence[ImageLike]) -> list[np.ndarray | Path]:
    """``images`` as a list of upright ``(H, W, 3)`` uint8 RGB arrays (files stay paths: the
    engine reads them, an unreadable one gets an error row)."""
    import torch

    if isinstance(images, torch.Tensor):
        batch = images if images.ndim == 4 else images[None]
        if batch.shape[1] not in (1, 3):
            raise UserError(f"a tensor batch is (N, 3, H, W); got shape {tuple(images.shape)}")
        if batch.dtype != torch.uint8:
            batch = (batch.float().clamp(0, 1) * 255).round().to(torch.uint8)
        arrays = batch.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).cpu().numpy()
        return [np.ascontiguousarray(a) for a in arrays]
    if isinstance(images, (Image.Image, np.ndarray, str, Path)):
        images = [images]
    out: list[np.ndarray | Path] = []
    for im in images:
        if isinstance(im, (str, Path)):
            out.append(Path(im))
        elif isinstance(im, Image.Image):
            out.append(to_uint8_rgb(upright(im)))
        elif isinstance(im, np.ndarray):
            a = im if im.ndim == 3 else np.repeat(im[..., None], 3, axis=2)
            if a.dtype != np.uint8 or a.shape[2] != 3:
                raise UserError(f"an image array is (H, W, 3) uint8; got {a.shape} {a.dtype}")
            out.append(a)
        else:
            out.extend(as_pixel_list(im))  # a tensor among the list
    return out


def fusion_folder(path: str | Path) -> Path:
    """The ``fuse`` output folder of ``path``: itself, or a pipeline folder's ``fusion/``."""
    path = Path(path)
    for cand in (path, path / "fusion"):
        if (cand / "results.jsonl").is_file():
            return cand
    raise SystemSourceError(
        f"{path} is neither an export (config.json) nor a fuse output folder (results.jsonl) nor "
        "a pipeline folder (fusion/results.jsonl): run `python -m occam_l2r pipeline` or `fuse` "
        "first, or give the folder `python -m occam_l2r export` wrote"
    )


def find_run(run: str | Path, fusion_dir: Path) -> Path:
    """A run folder ``fuse`` recorded, as given, else under the pipeline folder above
    ``fusion_dir`` (``<experiment>/<view>/seed<k>``: a relative path of another working
    directory, or a moved experiment)."""
    run = Path(run)
    moved = fusion_dir.parent / run.parent.name / run.name
    for cand in (run, moved):
        if cand.is_dir():
            return cand
    raise SystemSourceError(
        f"run {run} recorded in {fusion_dir / 'results.jsonl'} was not found (nor {moved})"
    )


def fallback_run(fusion_dir: Path, view: str, seed: int) -> str | None:
    """The run of ``view`` whose prediction a fallen-back image takes at ``seed``: the
    single-model run of that seed index in ``results.jsonl`` (``fuse``'s rule: seed modulo the
    view's runs)."""
    single = {
        int(r["seed"]): r["runs"][0]
        for r in load_done(fusion_dir / "results.jsonl").values()
        if r.get("kind") == "single" and r.get("name") == view and r.get("runs")
    }
    return single[seed % len(single)] if single else None


def run_data(run: Path) -> dict[str, Any]:
    """The DataModule ``init_args`` of a ``fit`` run (its ``config.yaml``; empty without one)."""
    path = run / "config.yaml"
    if not path.is_file():
        return {}
    cfg = yaml.safe_load(path.read_text()) or {}
    return (cfg.get("data") or {}).get("init_args") or {}


def run_class_names(run: Path) -> list[str] | None:
    """The class names a run's logits files record (``None`` without logits)."""
    from occam_l2r.logits import read_meta

    files = sorted((run / "logits").glob("*.npz")) or sorted(run.glob("*.npz"))
    for f in files:
        names = read_meta(f).get("class_names")
        if names:
            return [str(n) for n in names]
    return None


def run_segmenter(data: dict[str, Any]) -> dict[str, Any] | None:
    """The segmenter the run's views were made with: its store manifest's ``segmenter`` and
    ``config`` (``{"segmenter": "gt"}`` for ground-truth masks, which new images lack)."""
    from occam_l2r.store import read_manifest

    seg = data.get("segmentation")
    if seg is None:
        return None
    if str(seg) == "gt":
        return {"segmenter": "gt", "config": None}
    folder = Path(str(seg))
    if (folder / "manifest.json").is_file():
        manifest = read_manifest(folder)
        return {"segmenter": manifest.get("segmenter"), "config": manifest.get("config")}
    return {"segmenter": None, "store": str(seg)}
