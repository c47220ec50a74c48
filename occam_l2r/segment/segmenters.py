"""Segmenters: what ``python -m occam_l2r segment`` runs on a batch of images.

A segmenter is chosen by ``class_path`` in the config's ``segmenter:`` section:

- :class:`DetectAndSegment` — a text-prompted detector (GroundingDINO / OWLv2) with a prompt
  source, then SAM (or SAM 2: :class:`~occam_l2r.segment.sam2.Sam2BoxPrompter`) masks for the
  kept boxes (L2R²); boxes only when ``sam`` is omitted;
- :class:`AutomaticMasks` — SAM's (or SAM 2's: :class:`~occam_l2r.segment.sam2.Sam2Automatic`)
  automatic all-object masks (OCCAM); their scores are the predicted IoUs, so the supervised views' ``top1`` foreground of such a store is the mask of
  highest predicted IoU, not OCCAM's foreground score (the OCCAM path scores masks itself);
- :class:`GroundTruth` — the dataset's ground-truth masks (the ``gt`` source; its rows and config
  are those of :mod:`occam_l2r.gt_store`, whose ``build_gt_store`` writes the same store without
  Lightning for ``data.segmentation: gt``).
- :class:`occam_l2r.segment.regions.RegionMasks` — scikit-image regions plus the object, several
  class-agnostic candidates per image without weights (OCCAM on the embedded benchmark);
- :class:`occam_l2r.segment.external.ExternalMasks` — masks computed elsewhere (CropFormer,
  FT-Dinosaur) read from a folder of per-image instance-id PNGs.

Every segmenter exposes a JSON config (hashed into the store), a fast weight check that runs
before any model is loaded or process spawned, a picklable per-image ``preprocessor`` for
DataLoader workers, ``load()`` returning its ``nn.Module``s, and ``segment(items)``.
An item is a dict with ``record``, ``image_id``, ``label``, ``image`` (HWC uint8 array),
``height``, ``width`` and the preprocessor's tensors (moved to the model's device). ``segment``
returns, per item, its :class:`Segmentation` or a message saying why it could not be segmented
(listed in the store's failures). Segmenters are plain objects: the ``segment`` verb runs them
through :class:`occam_l2r.tasks.segment.SegmentTask`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torchvision.ops import nms

from occam_l2r.data.records import RecordDataset
from occam_l2r.gt_store import GT_SEGMENTER, gt_config, gt_segment
from occam_l2r.segment.detection import Detections, Detector
from occam_l2r.segment.prompts import PromptSource, Query
from occam_l2r.segment.sam import SamBoxPrompter
from occam_l2r.segment.sam2 import Sam2Automatic, Sam2BoxPrompter
from occam_l2r.segment.sam_automatic import SamAutomatic
from occam_l2r.segmentation import Segmentation, encode_mask

Item = dict[str, Any]


class Segmenter(abc.ABC):
    """Base of the segmentation sources run by the ``segment`` verb."""

    name: str = "segmenter"

    def bind(self, dataset: RecordDataset) -> None:
        """Attach the dataset (class names for prompts, ground truth); called before anything else."""
        self.dataset = dataset

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-able config; its hash names what the store holds (no batch size or devices)."""

    def check_weights(self) -> None:
        """Raise :class:`~occam_l2r.weights.WeightsNotFoundError` fast when weights are missing.

        The default (sources without weights) checks nothing.
        """
        return None

    def load(self) -> dict[str, nn.Module]:
        """Load the models (CPU, eval); Lightning moves the returned modules to the device."""
        return {}

    def preprocessor(self) -> Callable[[np.ndarray], dict[str, torch.Tensor]]:
        """Per-image CPU preprocessing run in DataLoader workers (picklable, holds no model)."""
        return _NoPreprocessing()

    @abc.abstractmethod
    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        """Segment a batch: per item, in order, its segmentation or why it failed."""


class _NoPreprocessing:
    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        return {}


class _Chain:
    """Run several preprocessors and merge their outputs (picklable)."""

    def __init__(self, *parts: Callable[[np.ndarray], dict[str, torch.Tensor]]) -> None:
        self.parts = parts

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for p in self.parts:
            out.update(p(image))
        return out


def select_boxes(
    dets: Detections,
    keep: Literal["top1", "all"],
    nms_iou: float | None,
    max_detections: int | None,
) -> torch.Tensor:
    """Indices of the detections kept: boxes of zero area dropped, NMS per query (all mode),
    the best box per query (``top1``) or all of them, best first, at most ``max_detections``."""
    if len(dets) == 0:
        return torch.zeros(0, dtype=torch.long, device=dets.boxes.device)
    b = dets.boxes
    valid = torch.nonzero((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).flatten()
    chosen = []
    for q in torch.unique(dets.query[valid]).tolist():
        idx = valid[dets.query[valid] == q]
        idx = idx[torch.argsort(dets.scores[idx], descending=True, stable=True)]
        if keep == "top1":
            chosen.append(idx[:1])
            continue
        if nms_iou is not None:
            idx = idx[nms(b[idx].float(), dets.scores[idx].float(), nms_iou)]
        chosen.append(idx)
    if not chosen:
        return valid[:0]
    out = torch.cat(chosen)
    out = out[torch.argsort(dets.scores[out], descending=True, stable=True)]
    return out[:max_detections] if max_detections is not None else out


class DetectAndSegment(Segmenter):
    """Text-prompted detection, then box-prompted SAM masks (L2R²'s decomposition).

    Args:
        detector: ``GroundingDino`` or ``Owlv2`` (``occam_l2r.segment.detectors``).
        prompts: ``MetaPrompt``, ``ClassNamePrompt`` or ``TopKPrompt``
            (``occam_l2r.segment.prompts``).
        sam: box-prompted SAM (a mapping of :class:`SamBoxPrompter`'s arguments) or SAM 2
            (``class_path: occam_l2r.segment.sam2.Sam2BoxPrompter``); omit it to store boxes
            only (FG_C / BG_B views). The segmenter is named ``<detector>+sam`` or
            ``<detector>+sam2``.
        keep: ``top1`` keeps the best box of each query; ``all`` keeps every box above the
            detector's threshold (after NMS).
        nms_iou: IoU of the per-query non-maximum suppression in ``all`` mode (``null``: none).
        max_detections: cap on the boxes stored per image, best first.
    """

    def __init__(
        self,
        detector: Detector,
        prompts: PromptSource,
        sam: SamBoxPrompter | Sam2BoxPrompter | None = None,
        keep: Literal["top1", "all"] = "top1",
        nms_iou: float | None = 0.5,
        max_detections: int | None = 20,
    ) -> None:
        self.detector = detector
        self.prompts = prompts
        self.sam = sam
        self.keep = keep
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.name = f"{detector.name}+{sam.name}" if sam is not None else detector.name

    def bind(self, dataset: RecordDataset) -> None:
        super().bind(dataset)
        self.prompts.bind(dataset.class_names)

    def config(self) -> dict[str, Any]:
        return {
            "segmenter": self.name,
            "detector": self.detector.config(),
            "prompts": self.prompts.config(),
            "sam": self.sam.config() if self.sam is not None else None,
            "keep": self.keep,
            "nms_iou": self.nms_iou if self.keep == "all" else None,
            "max_detections": self.max_detections,
        }

    def check_weights(self) -> None:
        self.detector.check_weights()
        if self.sam is not None:
            self.sam.check_weights()

    def load(self) -> dict[str, nn.Module]:
        modules = {"detector": self.detector.load()}
        if self.sam is not None:
            modules["sam"] = self.sam.load()
        return modules

    def preprocessor(self) -> Callable[[np.ndarray], dict[str, torch.Tensor]]:
        parts = [self.detector.preprocessor()]
        if self.sam is not None:
            parts.append(self.sam.preprocessor())
        return _Chain(*parts)

    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        queries: list[list[Query]] = [
            self.prompts.queries(it["image_id"], int(it["label"])) for it in items
        ]
        sizes = [(int(it["height"]), int(it["width"])) for it in items]
        found = self.detector.detect(items, sizes, queries)
        kept = [select_boxes(d, self.keep, self.nms_iou, self.max_detections) for d in found]
        boxes = [d.boxes[k].float() for d, k in zip(found, kept, strict=True)]
        masks = None
        if self.sam is not None:
            masks = self.sam.masks([it["sam_image"] for it in items], sizes, boxes)
        out: list[Segmentation | str] = []
        for i, (it, d, k) in enumerate(zip(items, found, kept, strict=True)):
            qidx = d.query[k].tolist()
            seg_masks = list(masks[i].numpy()) if masks is not None else []
            out.append(
                Segmentation(
                    image_id=it["image_id"],
                    width=sizes[i][1],
                    height=sizes[i][0],
                    boxes=boxes[i].cpu().numpy(),
                    scores=d.scores[k].float().cpu().numpy(),
                    labels=[d.texts[j] for j in k.tolist()],
                    label_ids=np.asarray([queries[i][q].label_id for q in qidx], np.int32),
                    masks_rle=[encode_mask(m) for m in seg_masks],
                    prompts=[q.name for q in queries[i]],
                    prompt_ids=[q.label_id for q in queries[i]],
                )
            )
        return out


class AutomaticMasks(Segmenter):
    """SAM's automatic mask generator: every object's mask, class-agnostic (OCCAM).

    Each mask's score is SAM's *predicted IoU* (``predicted_iou`` of the generator, masks stored
    best first; the stability score filters masks but is not stored). Views with
    ``foreground: top1`` pick the mask of highest predicted IoU
    (:func:`occam_l2r.views.top_scoring`), and ``score_threshold`` thresholds predicted IoU.

    Args:
        sam: the generator's checkpoint and settings: SAM (a mapping of
            ``occam_l2r.segment.sam_automatic.SamAutomatic``'s arguments; segmenter ``sam_auto``)
            or SAM 2 (``class_path: occam_l2r.segment.sam2.Sam2Automatic``; ``sam2_auto``).
    """

    # its scores: occam_l2r.segmentation.score_kind -> "sam_predicted_iou"
    name = "sam_auto"

    def __init__(self, sam: SamAutomatic | Sam2Automatic) -> None:
        self.sam = sam
        self.name = sam.segmenter_name

    def config(self) -> dict[str, Any]:
        return {"segmenter": self.name, "sam": self.sam.config()}

    def check_weights(self) -> None:
        self.sam.check_weights()

    def load(self) -> dict[str, nn.Module]:
        return {"sam": self.sam.load()}

    def preprocessor(self) -> Callable[[np.ndarray], dict[str, torch.Tensor]]:
        return self.sam.preprocessor()

    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        results = self.sam.generate(
            [it["image"] for it in items], [it["sam_image"] for it in items]
        )
        return [
            Segmentation.from_masks(
                it["image_id"],
                masks,
                scores=scores,
                height=int(it["height"]),
                width=int(it["width"]),
                prompts=[],
            )
            for it, (masks, scores) in zip(items, results, strict=True)
        ]


class GroundTruth(Segmenter):
    """The dataset's ground-truth masks as segmentations (the ``gt`` source; no weights).

    Each non-empty ground-truth instance mask becomes one detection with score 1.0, its tight box
    and the image's class name as label (``label_ids``: the class index). An image whose masks are
    all empty is stored with no detection (its views fall back to FULL); an image or mask that
    cannot be read, or a mask whose size differs from the image, is reported as a failure. The
    image size is that of the decoded image (``height``/``width`` of the item, EXIF orientation
    applied), as the views see it; without them it is read from the file header.
    """

    name = GT_SEGMENTER

    def config(self) -> dict[str, Any]:
        return gt_config(self.dataset)

    def segment(self, items: list[Item]) -> list[Segmentation | str]:
        return gt_segment(self.dataset, items)
