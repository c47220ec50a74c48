"""The configuration of ``python -m occam_l2r classify`` (:class:`ClassifyConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from occam_l2r.errors import UserError
from occam_l2r.fusion.pairs import Pair
from occam_l2r.views import CropBox, FgAspect, Foreground, View, check_views


@dataclass
class ClassifyConfig:
    """Classify new images with trained view models and a fitted fusion.

    The class has no public methods (the command line parses it as a whole).

    Attributes:
        images: a folder of images (searched recursively for JPEG/PNG/BMP/TIFF/WebP files), or a
            text file with one image path per line (relative paths are relative to the file).
        output_dir: where ``predictions.csv`` (and ``.parquet``), ``summary.json`` and, with
            ``preview``, ``preview.html`` go.
        checkpoints: view name -> checkpoint of a trained ``ClassifierTask`` (``FG_C``,
            ``FULL``, ``BG_S``, ...), a file or its ``fit`` run folder (the best checkpoint its
            ``last.ckpt`` records). Needs both views of ``pair`` and, with ``fallback: full``,
            ``fallback_view``.
        fusion_dir: the ``output_dir`` of a finished ``fuse`` run (its ``results.jsonl``).
        pair: the fused pair, input 1 first, as ``fuse`` names it (``FG_C+FULL``, ``FG_C+BG_S``).
        method: the fusion method whose fitted parameters are applied (``threshold`` is ⊕R).
        seed: the seed index of the fused cell.
        segmentation: a segmentation store built for these images (``python -m occam_l2r
            segment``), keyed by the image ids (paths relative to ``images``); an image without
            an entry falls back to FULL (``no_segmentation``). ``None``: every image falls back
            (unless ``segment_config`` is given).
        segment_config: a ``segment`` config file (``configs/segment/*.yaml``) whose ``model:``
            (the segmenter) and ``trainer:`` sections segment ``images`` first: its
            ``data.dataset`` is replaced by ``ImageFiles`` over ``images`` (``data.splits`` and
            ``data.limit`` dropped), the store goes to ``<output_dir>/segmentations`` and the
            resolved config to ``<output_dir>/segment.yaml``; a rerun resumes. Not together with
            ``segmentation``. Run by :func:`occam_l2r.commands.classify.classify`.
        image_size: the side the views are resized to (the models' training ``image_size``).
        score_threshold: detections scoring below it are dropped (as the DataModule's).
        foreground: ``top1`` or ``union`` of the kept detections.
        fill: constant (0-255) for padding and masking.
        crop_box: ``mask`` or ``detector`` box for FG_C, FG_M and BG_B.
        fg_aspect: FG_C / FG_M crops ``pad``-ded or ``stretch``-ed to a square.
        fallback: ``full``: an image whose view fell back gets ``fallback_view``'s prediction
            (L2R² §3.1, ``fuse``'s default); ``none``: the fused one.
        fallback_view: the view that prediction comes from.
        class_names: names of the classes in index order (the table gets a name column).
        top_k: classes per view in the table.
        cascade: run input 1 (FG) first and input 2 only where the calibrated FG confidence is
            not above the fitted threshold ``t`` (needs ``method: threshold``).
        preview: also write ``preview.html`` (each image with its box and mask, the views, the
            decision).
        batch_size: images per forward pass.
        device: torch device of the models (``cpu``, ``cuda``).
    """

    images: str
    output_dir: str
    checkpoints: dict[View, str]
    fusion_dir: str
    pair: str = "FG_C+FULL"
    method: str = "threshold"
    seed: int = 0
    segmentation: str | None = None
    segment_config: str | None = None
    image_size: int = 64
    score_threshold: float = 0.0
    foreground: Foreground = "top1"
    fill: int = 0
    crop_box: CropBox = "mask"
    fg_aspect: FgAspect = "pad"
    fallback: Literal["full", "none"] = "full"
    fallback_view: View = "FULL"
    class_names: list[str] | None = None
    top_k: int = 3
    cascade: bool = False
    preview: bool = False
    batch_size: int = 32
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_views(self.checkpoints, "checkpoints")  # registered views (UnknownViewError)
        check_views([self.fallback_view], "fallback_view")
        try:
            pair = Pair.parse(self.pair)
        except ValueError as err:
            raise UserError(f"pair: {err} (e.g. pair: FG_C+FULL)") from None
        check_views([pair.first, pair.second], "pair")
