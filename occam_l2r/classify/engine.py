"""Images -> views -> logits -> the fitted fusion's decision, one row per image.

:func:`classify_images` reads every image upright (EXIF orientation honoured, grayscale and RGBA
as RGB: :func:`occam_l2r.data.records.read_image`), takes its segmentation from the store, makes
the views of the pair (and of the fallback view) with :func:`occam_l2r.views.apply_view`, runs
each view's model, and fuses input 1 and input 2 with the parameters ``fuse`` fitted
(:meth:`occam_l2r.fusion.fusers.FusionMethod.from_params`), then gives the images whose view fell
back FULL's prediction (:func:`occam_l2r.fusion.fallback.apply_fallback`), exactly as ``fuse``
scores a split. With ``cascade`` the second model runs only where ⊕R needs it
(:func:`occam_l2r.classify.cascade.cascade_threshold`). An image that cannot be read or does not
match its segmentation gets an error row.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from occam_l2r.classify.cascade import cascade_threshold
from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.models import ViewModel
from occam_l2r.data.records import ImageReadError, read_image
from occam_l2r.errors import UserError
from occam_l2r.fusion import methods
from occam_l2r.fusion.fallback import FALLBACK_CHOSEN, apply_fallback
from occam_l2r.fusion.fusers import REGISTRY, FusionMethod
from occam_l2r.fusion.inputs import LogitsPair
from occam_l2r.fusion.methods import FusionOutput
from occam_l2r.fusion.pairs import Pair
from occam_l2r.fusion.saved import SavedFusion
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import SegmentationStore
from occam_l2r.store_identity import ImageSource
from occam_l2r.store_location import open_store
from occam_l2r.views import Decomposition, apply_view, select_foreground


class ClassifyConfigError(UserError, ValueError):
    """The classify config cannot be run as given (a :class:`ValueError`)."""


@dataclass
class Rendered:
    """One image made ready for the models.

    Attributes:
        image_id, path: the image.
        error: why it could not be classified (``None`` when it could).
        image: the upright RGB image.
        views: view -> (view image, fallback reason or ``None``): the pair's views, and the
            fallback view once an image needs it (:meth:`view`).
        decomposition: the chosen foreground (box, mask), or ``None`` when it fell back.
        segmentation: the image's stored segmentation (``None``: none).
    """

    image_id: str
    path: Path
    error: str | None = None
    image: np.ndarray | None = None
    views: dict[str, tuple[np.ndarray, str | None]] = field(default_factory=dict)
    decomposition: Decomposition | None = None
    segmentation: Segmentation | None = None

    def view(self, name: str, config: ClassifyConfig) -> tuple[np.ndarray, str | None]:
        """The view ``name`` (image, fallback reason), made on first use and kept."""
        if name not in self.views:
            result = apply_view(
                name, self.image, self.segmentation, config.score_threshold, config.foreground,
                config.fill, config.crop_box, config.fg_aspect,
            )  # fmt: skip
            self.views[name] = (result.image, result.fallback)
        return self.views[name]


@dataclass
class Classified:
    """The outcome of :func:`classify_images` on the readable images (row ``i`` of every array
    is ``items[i]``).

    Attributes:
        items: the readable images.
        errors: the images that got an error row.
        logits: view -> ``(N, C)`` logits (NaN rows where that model did not run).
        ran: view -> bool ``(N,)``, where the model ran.
        fused: the fused output after the fallback.
        flags: bool ``(N,)``, the images whose view fell back.
        second: bool ``(N,)``, the images that needed input 2 (all with ``cascade`` off).
        seconds: view -> seconds spent in its model (view making and reading excluded).
    """

    items: list[Rendered]
    errors: list[Rendered]
    logits: dict[str, np.ndarray]
    ran: dict[str, np.ndarray]
    fused: FusionOutput
    flags: np.ndarray
    second: np.ndarray
    seconds: dict[str, float]


def needed_views(config: ClassifyConfig, fusion: SavedFusion) -> list[str]:
    """The views whose models classify needs: the pair's and, with fallback, the fallback view."""
    views = list(fusion.views)
    if config.fallback == "full" and config.fallback_view not in views:
        views.append(config.fallback_view)
    missing = [v for v in views if v not in config.checkpoints]
    if missing:
        raise ClassifyConfigError(
            f"no checkpoint for view(s) {missing}: `checkpoints` lists {list(config.checkpoints)}"
            f"; pair {Pair(*fusion.views)} with fallback {config.fallback!r} needs {views}"
        )
    if config.cascade and fusion.method != "threshold":
        raise ClassifyConfigError(
            f"cascade needs the threshold fusion (⊕R), not {fusion.method!r}: set `method: "
            "threshold` or `cascade: false`"
        )
    if not classifies_new_images(fusion.method, fusion.params):
        accepted = [m for m, cls in REGISTRY.items() if not cls.needs_labels]
        raise ClassifyConfigError(
            f"method {fusion.method!r} cannot classify new images from its saved parameters "
            f"{sorted(fusion.params)} (it reads the labels, or they do not suffice to rebuild "
            f"it); choose one of {accepted} whose fit saved what it needs"
        )
    return views


def classifies_new_images(method: str, params: dict) -> bool:
    """Whether the registered ``method`` with these saved ``params`` can classify new images:
    it rebuilds itself from them (:meth:`~occam_l2r.fusion.fusers.FusionMethod.restorable`)
    and does not read the labels (the oracle does)."""
    cls = REGISTRY.get(method)
    return cls is not None and not cls.needs_labels and cls.restorable(params)


def fitted_method(method: str, params: dict) -> FusionMethod:
    """The fitted fusion ``method`` rebuilt from its saved ``params`` (no refit)."""
    return REGISTRY[method].from_params(params)


def render(
    image_id: str,
    path: Path,
    seg: Segmentation | None,
    views: list[str],
    config: ClassifyConfig,
    pixels: np.ndarray | None = None,
) -> Rendered:
    """Read one image (or take its ``pixels``, an upright ``(H, W, 3)`` uint8 RGB array) and make
    ``views`` (an error row's :class:`Rendered` on failure)."""
    out = Rendered(image_id, path, segmentation=seg)
    try:
        out.image = read_image(path) if pixels is None else pixels
        for view in views:
            out.view(view, config)
    except (ImageReadError, FileNotFoundError, ValueError) as err:
        out.error, out.image, out.views = " ".join(str(err).split()), None, {}
        return out
    picked = select_foreground(seg, config.score_threshold, config.foreground, False,
                               config.crop_box)  # fmt: skip
    out.decomposition = None if isinstance(picked, str) else picked
    return out


class _Logits:
    """Per-view logits computed on demand, each (view, image) at most once."""

    def __init__(self, models: dict[str, ViewModel], items: list[Rendered], config: ClassifyConfig):
        self.models, self.items, self.config = models, items, config
        n = len(items)
        c = next(iter(models.values())).num_classes
        self.z = {v: np.full((n, c), np.nan, np.float32) for v in models}
        self.ran = {v: np.zeros(n, bool) for v in models}
        self.seconds = dict.fromkeys(models, 0.0)

    def rows(self, view: str, rows: np.ndarray) -> np.ndarray:
        todo = rows[~self.ran[view][rows]]
        if len(todo):
            t0 = time.perf_counter()
            images = [self.items[i].view(view, self.config)[0] for i in todo]
            self.z[view][todo] = self.models[view].logits(images, self.config.batch_size)
            self.seconds[view] += time.perf_counter() - t0
            self.ran[view][todo] = True
        return self.z[view][rows]


def classify_images(
    config: ClassifyConfig,
    fusion: SavedFusion,
    models: dict[str, ViewModel],
    images: list[tuple[str, Path]],
    pixels: dict[str, np.ndarray] | None = None,
    segmentations: Mapping[str, Segmentation | None] | None = None,
) -> Classified:
    """Classify ``images`` (``(image_id, path)``) with the view ``models`` and the ``fusion``.

    Args:
        config: the classify config (views' settings, fallback, cascade, batch size).
        fusion: the fitted fusion (:func:`occam_l2r.fusion.saved.load_fusion`).
        models: view -> its model (:func:`needed_views`).
        images: the images (:func:`occam_l2r.classify.inputs.list_images`).
        pixels: image id -> its pixels, for images already in memory (not read from ``path``;
            :class:`occam_l2r.classify.system.System`).
        segmentations: image id -> its segmentation, instead of ``config.segmentation``'s store
            (an id it lacks, or maps to ``None``, falls back: ``no_segmentation``).
    """
    pixels = pixels or {}
    store: Mapping[str, Segmentation | None] | SegmentationStore | None = segmentations
    if segmentations is None and config.segmentation:
        # checked against these images' files (a store of other images: one message naming
        # both); a path or a bare name, the one rule of resolve_store
        files = dict(images)
        source = ImageSource(Path(config.images), files.get)
        store = open_store(config.segmentation, source=source)
    v1, v2 = fusion.views
    rendered = [  # the fallback view is made only for the images that fall back
        render(i, p, None if store is None else store.get(i), [v1, v2], config, pixels.get(i))
        for i, p in images
    ]
    items = [r for r in rendered if r.error is None]
    errors = [r for r in rendered if r.error is not None]
    n, logits = len(items), _Logits(models, items, config)
    every = np.arange(n)
    flags = np.array([any(r.views[v][1] is not None for v in (v1, v2)) for r in items], bool)
    params = fusion.params
    if config.cascade:
        t1, t2 = (np.asarray(params.get(k, 1.0), np.float64) for k in ("t1", "t2"))
        fused, second = cascade_threshold(
            logits.rows(v1, every), lambda rows: logits.rows(v2, rows), float(params["t"]), t1, t2
        )
    else:
        pair = LogitsPair(
            ids=np.array([r.image_id for r in items], str), labels=np.full(n, -1, np.int64),
            z1=logits.rows(v1, every), z2=logits.rows(v2, every), groups=np.zeros(n, np.int64),
        )  # fmt: skip
        fused, second = fitted_method(fusion.method, params).apply(pair), np.ones(n, bool)
    if config.fallback == "full" and flags.any():
        full = np.zeros_like(logits.z[v1], dtype=np.float32)
        full[flags] = logits.rows(config.fallback_view, np.flatnonzero(flags))
        fused = apply_fallback(fused, flags, full)
    return Classified(
        items, errors, logits.z, logits.ran, fused, flags, second, dict(logits.seconds)
    )


def decided_by(chosen: int, views: tuple[str, str], fallback_view: str) -> str:
    """The name of what decided a fused prediction (``FusionOutput.chosen`` as a view name)."""
    if chosen == FALLBACK_CHOSEN:
        return f"{fallback_view} (fallback)"
    if chosen in (0, 1):
        return views[chosen]
    return Pair(*views).name


def top_k(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best classes per row and their softmax confidences (``T = 1``)."""
    p = methods.softmax(z)
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(p, order, axis=1)
