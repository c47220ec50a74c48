"""Object discovery metrics (OCCAM Table 1): FG-ARI and mBO of class-agnostic masks.

Plain numpy + scikit-learn; the ``discover`` verb (:mod:`occam_l2r.commands.discover`) runs
:func:`score_records` over a dataset and a segmentation store and writes the tables.

The metrics are those of amazon-science/object-centric-learning-framework
(``ocl/metrics/masks.py``, the code of DINOSAUR / FT-DINOSAUR). How a source's possibly
overlapping masks become one prediction per pixel is a **convention** (:data:`Convention`), set per
mask source:

- ``ocl`` (default; the SAM rows of Table 1, and any source): masks painted in increasing score
  order, so where masks overlap the **highest-scoring one wins** (ties: the later mask in the
  store); pixels covered by no mask form a label of their own (0), which is no predicted segment
  for mBO.
- ``occam_fork`` (the CropFormer row of Table 1): the convention of the OCCAM authors' fork,
  AlexanderRubinstein/object-centric-learning-framework (``ocl/decoding.py``
  ``EntitySegDecoder.forward``, then ``ocl/metrics/masks.py``): the masks in **ascending score
  order** become channels 0, 1, ..., **truncated to the ground truth's channel count**
  (``channels``: the one-hot ground truth with its background channel, 11 on MOVi-C and 24 on
  MOVi-E in the fork's configs; default the image's objects + 1), and the metrics take the
  **argmax** over channels: where masks overlap the *lowest*-scoring one wins, and pixels covered
  by no mask go to channel 0 (the lowest-scoring kept mask), which is a predicted segment like the
  others. (The id maps of CropFormer the authors feed OCCAM's classification, ``EntityNetV2.run``,
  paint the other way, highest score on top; Table 1 does not use them.)

Shared by both:

- **Resolution.** The predicted label map is resized to the ground truth's resolution with
  nearest-neighbour sampling (PIL ``NEAREST``).
- **Ground truth.** The dataset's instance masks (:meth:`RecordDataset.gt_masks`, background
  excluded) become labels 1..K, background 0. Pixels inside two or more ground-truth masks are
  ignored by both metrics (``ignore_overlaps``; MOVi's instance-id maps have none).
- **FG-ARI**: :func:`sklearn.metrics.adjusted_rand_score` between the ground-truth and the
  predicted labels of the ground-truth foreground pixels (background ignored). scikit-learn
  gives 1.0 when both labelings are a single cluster (one object found as one segment).
- **mBO** (mean best overlap): for every ground-truth object, the best IoU with any predicted
  segment, over all pixels (background included); averaged over the image's objects.
- Per image, then averaged over images. An image without ground-truth objects has no FG-ARI
  and no mBO (NaN) and is left out of the means.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.errors import UserError
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import SegmentationStore

#: how a source's masks become one prediction per pixel (see the module docstring)
Convention = Literal["ocl", "occam_fork"]

#: the rules of the ``ocl`` convention, written into every summary
CONVENTIONS = {
    "fg_ari": "sklearn adjusted_rand_score over ground-truth foreground pixels",
    "mbo": "mean over ground-truth objects of the best IoU with a predicted segment (all pixels)",
    "overlaps": "predicted masks painted in increasing score order: the highest score wins",
    "uncovered": "pixels covered by no predicted mask form one label of their own",
    "resize": "predicted label map resized to the ground-truth resolution (nearest)",
    "gt_overlaps": "pixels inside several ground-truth masks are ignored",
    "average": "per image, then the mean over images with ground-truth objects",
}
#: the rules of the ``occam_fork`` convention (those that differ from :data:`CONVENTIONS`)
FORK_CONVENTIONS = {
    **CONVENTIONS,
    "overlaps": "masks in ascending score order as channels, argmax: the lowest score wins",
    "truncation": "at most `channels` masks (the ground truth's channel count), lowest scores first",
    "uncovered": "pixels covered by no predicted mask go to channel 0, a predicted segment",
}
#: the rules of each convention
CONVENTION_RULES: dict[str, dict[str, str]] = {"ocl": CONVENTIONS, "occam_fork": FORK_CONVENTIONS}


class MissingSegmentationsError(UserError, KeyError):
    """Images to score are absent from the segmentation store (the message names them)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def label_map(
    masks: Sequence[np.ndarray], scores: Sequence[float] | None = None, shape: tuple[int, int] = ()
) -> np.ndarray:
    """One label per pixel from possibly overlapping boolean masks.

    Args:
        masks: boolean ``(H, W)`` masks; mask ``i`` gets label ``i + 1``.
        scores: one score per mask; overlaps go to the highest score (default: all equal, so
            the later mask wins).
        shape: ``(H, W)`` when ``masks`` is empty.

    Returns:
        An int32 ``(H, W)`` map, 0 where no mask covers the pixel.
    """
    if len(masks) == 0:
        return np.zeros(shape, dtype=np.int32)
    out = np.zeros(masks[0].shape, dtype=np.int32)
    order = range(len(masks)) if scores is None else np.argsort(np.asarray(scores), kind="stable")
    for i in order:
        out[np.asarray(masks[i], dtype=bool)] = int(i) + 1
    return out


def fork_label_map(
    masks: Sequence[np.ndarray],
    scores: Sequence[float] | None,
    channels: int,
    shape: tuple[int, int] = (),
) -> np.ndarray:
    """The ``occam_fork`` prediction: one label per pixel, every pixel labelled.

    Args:
        masks: boolean ``(H, W)`` masks.
        scores: one score per mask (default: all equal, so the store's order).
        channels: the number of channels kept (the ground truth's channel count).
        shape: ``(H, W)`` when ``masks`` is empty.

    Returns:
        An int32 ``(H, W)`` map of channel + 1 (1..``channels``): channel ``c`` is the mask of
        the ``c``-th lowest score; a pixel takes the first channel covering it (argmax, ties to
        the lower channel), channel 0 when none does.
    """
    if channels < 1:
        raise ValueError(f"channels={channels}: give at least 1")
    if len(masks) == 0:
        return np.ones(shape, dtype=np.int32)
    n = len(masks)
    order = np.argsort(np.zeros(n) if scores is None else np.asarray(scores), kind="stable")
    order = order[:channels]
    out = np.zeros(masks[0].shape, dtype=np.int32)
    for c in range(len(order) - 1, -1, -1):  # the lowest channel painted last: argmax's tie rule
        out[np.asarray(masks[order[c]], dtype=bool)] = c
    return out + 1


def gt_label_map(
    masks: Sequence[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth labels (object ``k`` -> ``k + 1``, background 0) and the pixels covered by
    more than one object (ignored)."""
    labels = np.zeros(shape, dtype=np.int32)
    count = np.zeros(shape, dtype=np.int32)
    for k, m in enumerate(masks):
        m = np.asarray(m, dtype=bool)
        labels[m] = k + 1
        count += m
    return labels, count > 1


def resize_labels(labels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a label map to ``(height, width)`` (PIL ``NEAREST``)."""
    if labels.shape == (height, width):
        return labels
    im = Image.fromarray(labels.astype(np.int32))
    return np.asarray(im.resize((width, height), Image.Resampling.NEAREST), dtype=np.int32)


def fg_ari(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """FG-ARI: adjusted Rand index of ``pred`` against ``gt`` over the pixels with ``gt > 0``.

    Args:
        gt: ground-truth labels, 0 = background.
        pred: predicted labels (any integers; 0 is a label like the others).
        ignore: pixels left out (e.g. ground-truth overlaps).

    Returns:
        The index, or NaN when the ground truth has no foreground pixel.
    """
    fg = gt > 0
    if ignore is not None:
        fg &= ~ignore
    if not fg.any():
        return math.nan
    return float(adjusted_rand_score(gt[fg], pred[fg]))


def best_overlaps(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """For every ground-truth object (labels 1..K of ``gt``), the best IoU with a predicted
    segment (labels > 0 of ``pred``), over all pixels not ignored; 0 when nothing overlaps.

    Returns:
        ``(K,)`` float64 IoUs, one per object present in ``gt`` (in label order).
    """
    valid = np.ones(gt.shape, bool) if ignore is None else ~ignore
    g, p = gt[valid].astype(np.int64), pred[valid].astype(np.int64)
    objects = np.unique(g[g > 0])
    if objects.size == 0:
        return np.zeros(0)
    n_pred = int(p.max(initial=0)) + 1
    n_gt = int(g.max()) + 1
    inter = np.bincount(g * n_pred + p, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
    gt_area = inter.sum(1)
    pred_area = inter.sum(0)
    union = gt_area[:, None] + pred_area[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)[objects, 1:]
    return iou.max(1) if iou.shape[1] else np.zeros(objects.size)


def mbo(gt: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """mBO: the mean of :func:`best_overlaps`; NaN when the ground truth has no object."""
    best = best_overlaps(gt, pred, ignore)
    return float(best.mean()) if best.size else math.nan


@dataclass
class ImageScore:
    """The discovery metrics of one image."""

    image_id: str
    split: str
    gt_objects: int
    pred_masks: int
    fg_ari: float
    mbo: float


def score_image(
    record: Record,
    gt_masks: Sequence[np.ndarray],
    segmentation: Segmentation,
    convention: Convention = "ocl",
    channels: int | None = None,
) -> ImageScore:
    """FG-ARI and mBO of one image's stored masks against its ground-truth masks.

    Args:
        record: the image.
        gt_masks: its ground-truth instance masks.
        segmentation: its stored masks.
        convention: ``ocl`` or ``occam_fork`` (module docstring).
        channels: ``occam_fork``: the ground truth's channel count (default: the image's
            objects + 1, the background channel).
    """
    if convention not in CONVENTION_RULES:
        raise ValueError(f"convention {convention!r}: choose from {list(CONVENTION_RULES)}")
    masks = [m for m in gt_masks if np.asarray(m).any()]
    n_pred = len(segmentation) if segmentation.has_masks else 0
    if not masks:
        return ImageScore(record.image_id, record.split, 0, n_pred, math.nan, math.nan)
    height, width = masks[0].shape
    gt, ignore = gt_label_map(masks, (height, width))
    pred_masks = [segmentation.mask(i) for i in range(n_pred)]
    shape = (segmentation.height, segmentation.width)
    if convention == "occam_fork":
        kept = channels if channels is not None else len(masks) + 1
        pred = fork_label_map(pred_masks, segmentation.scores[:n_pred], kept, shape=shape)
    else:
        pred = label_map(pred_masks, segmentation.scores[:n_pred], shape=shape)
    pred = resize_labels(pred, height, width)
    return ImageScore(
        record.image_id,
        record.split,
        len(masks),
        n_pred,
        fg_ari(gt, pred, ignore),
        mbo(gt, pred, ignore),
    )


def score_records(
    dataset: RecordDataset,
    store: SegmentationStore,
    records: Iterable[Record],
    on_missing: Literal["error", "skip"] = "error",
    convention: Convention = "ocl",
    channels: int | None = None,
) -> tuple[list[ImageScore], list[str]]:
    """Score every record's stored masks against the dataset's ground truth.

    Args:
        dataset: gives the ground-truth instance masks (:meth:`RecordDataset.gt_masks`).
        store: the segmentation store of the mask source.
        records: the images to score.
        on_missing: an image absent from the store raises
            :class:`MissingSegmentationsError` (``error``) or is left out and listed (``skip``).
        convention: ``ocl`` or ``occam_fork`` (:func:`score_image`).
        channels: ``occam_fork``'s channel count (:func:`score_image`).

    Returns:
        The scores, and the ids of the images absent from the store.
    """
    records = list(records)
    missing = [r.image_id for r in records if r.image_id not in store]
    if missing and on_missing == "error":
        named = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        what = "none of the" if len(missing) == len(records) else f"{len(missing)} of the"
        raise MissingSegmentationsError(
            f"the segmentation store {store.path} ({store.segmenter}) lacks {what} {len(records)} "
            f"images of {type(dataset).__name__} to score: {named}. Segment them "
            "(`python -m occam_l2r segment --config ...` resumes and fills the gaps), check that "
            "the store belongs to this dataset, or set on_missing: skip."
        )
    absent = set(missing)
    scores = [
        score_image(r, dataset.gt_masks(r), store[r.image_id], convention, channels)
        for r in records
        if r.image_id not in absent
    ]
    return scores, missing


def summarize(scores: Sequence[ImageScore]) -> dict[str, Any]:
    """Means over images: ``images``, ``scored`` (images with ground-truth objects),
    ``fg_ari``, ``mbo`` (NaN when nothing was scored), ``gt_objects`` and ``pred_masks``."""
    ari = [s.fg_ari for s in scores if not math.isnan(s.fg_ari)]
    box = [s.mbo for s in scores if not math.isnan(s.mbo)]
    return {
        "images": len(scores),
        "scored": len(box),
        "fg_ari": float(np.mean(ari)) if ari else math.nan,
        "mbo": float(np.mean(box)) if box else math.nan,
        "gt_objects": int(sum(s.gt_objects for s in scores)),
        "pred_masks": int(sum(s.pred_masks for s in scores)),
    }


def score_rows(benchmark: str, source: str, scores: Sequence[ImageScore]) -> list[dict[str, Any]]:
    """Per-image rows for the CSV (``benchmark``, ``source`` and the fields of ImageScore)."""
    return [{"benchmark": benchmark, "source": source, **asdict(s)} for s in scores]


def _pct(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def markdown_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A Table-1-like Markdown table: one row per mask source, FG-ARI and mBO (in %) per
    benchmark.

    Args:
        results: benchmark -> source -> a :func:`summarize` dict.
    """
    benchmarks = list(results)
    sources: list[str] = []
    for by_source in results.values():
        sources += [s for s in by_source if s not in sources]
    head = "| mask source | " + " | ".join(f"{b} FG-ARI | {b} mBO" for b in benchmarks) + " |"
    rule = "|---|" + "---|---|" * len(benchmarks)
    lines = [head, rule]
    for source in sources:
        cells = []
        for b in benchmarks:
            summary = results[b].get(source)
            if summary is None:
                cells += ["–", "–"]
            else:
                cells += [_pct(summary["fg_ari"]), _pct(summary["mbo"])]
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
