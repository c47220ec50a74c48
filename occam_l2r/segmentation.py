"""One image's segmentation: boxes, scores, labels and masks (COCO RLE), and the mask codec.

The record type that segmenters produce, the segmentation store (:mod:`occam_l2r.store`) keeps
and the views (:mod:`occam_l2r.views`) read. Plain numpy + pycocotools; imports nothing of the
toolkit.

What ``scores`` hold depends on the segmenter (:func:`score_kind`): a detector's confidence,
SAM's predicted IoU (automatic masks), or 1.0 (ground truth). ``prompt_ids`` is the class index
of every prompt the image was given (``-1`` for a meta-prompt), so the candidates of a top-k
prompted store are known even when the detector found nothing for one of them; rows of stores
written before it read back with an empty list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> bytes:
    """COCO-RLE encode a boolean ``(H, W)`` mask; returns the compressed ``counts`` bytes."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return rle["counts"]


def decode_mask(counts: bytes, height: int, width: int) -> np.ndarray:
    """Decode COCO-RLE ``counts`` into a boolean ``(height, width)`` mask."""
    return mask_utils.decode({"size": [height, width], "counts": counts}).astype(bool)


#: what ``Segmentation.scores`` hold, by segmenter name; any other (detector) name: its confidence
SCORE_KINDS = {
    "sam_auto": "sam_predicted_iou",
    "sam2_auto": "sam_predicted_iou",
    "gt": "ground_truth",
}


def score_kind(segmenter: str) -> str:
    """What the scores of ``segmenter``'s segmentations are: ``sam_predicted_iou`` (SAM's
    or SAM 2's automatic masks), ``ground_truth`` (always 1.0) or ``detector_confidence``."""
    return SCORE_KINDS.get(segmenter, "detector_confidence")


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy box of a boolean mask (x1, y1 exclusive); zeros for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:  # (the projections: ~10x faster than np.nonzero of every pixel)
        return np.zeros(4, dtype=np.float32)
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


@dataclass
class Segmentation:
    """Detections of one image: boxes, scores, labels and (optionally) masks as RLE."""

    image_id: str
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    labels: list[str] = field(default_factory=list)
    label_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    masks_rle: list[bytes] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    segmenter: str = ""
    config_hash: str = ""
    prompt_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        n = len(self.boxes)
        if len(self.label_ids) == 0 and n:
            self.label_ids = np.full(n, -1, np.int32)
        self.label_ids = np.asarray(self.label_ids, dtype=np.int32).reshape(-1)
        if not self.labels:
            self.labels = [""] * n
        if len(self.scores) != n or len(self.labels) != n or len(self.label_ids) != n:
            raise ValueError(
                f"segmentation of {self.image_id}: {n} boxes but {len(self.scores)} scores, "
                f"{len(self.labels)} labels, {len(self.label_ids)} label ids"
            )
        self.prompt_ids = [int(c) for c in self.prompt_ids]
        if self.prompt_ids and len(self.prompt_ids) != len(self.prompts):
            raise ValueError(
                f"segmentation of {self.image_id}: {len(self.prompts)} prompts but "
                f"{len(self.prompt_ids)} prompt ids"
            )
        if self.masks_rle and len(self.masks_rle) != n:
            raise ValueError(
                f"segmentation of {self.image_id}: {n} boxes but {len(self.masks_rle)} masks"
            )

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def has_masks(self) -> bool:
        return bool(self.masks_rle)

    @property
    def score_kind(self) -> str:
        """What :attr:`scores` are (:func:`score_kind` of the segmenter)."""
        return score_kind(self.segmenter)

    def candidates(self) -> list[int]:
        """The class indices this image was prompted with (top-k candidates or the GT label),
        in prompt order, without repeats; from the detections' ``label_ids`` for a store
        written before ``prompt_ids`` (candidates without a detection are then unknown)."""
        ids = self.prompt_ids if self.prompt_ids else self.label_ids.tolist()
        return list(dict.fromkeys(int(c) for c in ids if c >= 0))

    def mask(self, i: int) -> np.ndarray:
        """Boolean ``(H, W)`` mask of detection ``i``."""
        if not self.masks_rle:
            raise ValueError(
                f"segmentation of {self.image_id} ({self.segmenter}) stores boxes only, no masks"
            )
        return decode_mask(self.masks_rle[i], self.height, self.width)

    @classmethod
    def from_masks(
        cls,
        image_id: str,
        masks: Sequence[np.ndarray],
        scores: Sequence[float] | None = None,
        labels: Sequence[str] | None = None,
        label_ids: Sequence[int] | None = None,
        boxes: np.ndarray | None = None,
        **kwargs: Any,
    ) -> Segmentation:
        """Build from boolean masks; boxes default to the masks' tight boxes."""
        if len(masks) == 0:
            h, w = kwargs.pop("height"), kwargs.pop("width")
            return cls(image_id=image_id, width=w, height=h, **kwargs)
        h, w = masks[0].shape
        kwargs.pop("height", None), kwargs.pop("width", None)
        if boxes is None:
            boxes = np.stack([mask_to_box(m) for m in masks])
        return cls(
            image_id=image_id,
            width=w,
            height=h,
            boxes=boxes,
            scores=np.ones(len(masks)) if scores is None else scores,
            labels=list(labels) if labels is not None else [],
            label_ids=np.asarray(label_ids if label_ids is not None else [], np.int32),
            masks_rle=[encode_mask(m) for m in masks],
            **kwargs,
        )

    def subset(self, keep: Sequence[int]) -> Segmentation:
        """The detections at positions ``keep`` (e.g. those prompted with one candidate class)."""
        keep = [int(i) for i in keep]
        return Segmentation(
            image_id=self.image_id,
            width=self.width,
            height=self.height,
            boxes=self.boxes[keep],
            scores=self.scores[keep],
            labels=[self.labels[i] for i in keep],
            label_ids=self.label_ids[keep],
            masks_rle=[self.masks_rle[i] for i in keep] if self.masks_rle else [],
            prompts=list(self.prompts),
            prompt_ids=list(self.prompt_ids),
            segmenter=self.segmenter,
            config_hash=self.config_hash,
        )

    def to_row(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "width": int(self.width),
            "height": int(self.height),
            "segmenter": self.segmenter,
            "config_hash": self.config_hash,
            "prompts": list(self.prompts),
            "prompt_ids": list(self.prompt_ids),
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "labels": list(self.labels),
            "label_ids": self.label_ids.tolist(),
            "masks": list(self.masks_rle),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Segmentation:
        return cls(
            image_id=row["image_id"],
            width=row["width"],
            height=row["height"],
            boxes=np.asarray(row["boxes"], np.float32).reshape(-1, 4),
            scores=np.asarray(row["scores"], np.float32),
            labels=list(row["labels"]),
            label_ids=np.asarray(row["label_ids"], np.int32),
            masks_rle=list(row["masks"]),
            prompts=list(row["prompts"]),
            prompt_ids=list(row.get("prompt_ids") or []),
            segmenter=row["segmenter"],
            config_hash=row["config_hash"],
        )
