"""What every zero-shot detector shares: the boxes it returns (:class:`Detections`), the base
class that loads a transformers model by id or local folder (:class:`Detector`), and the box and
batch helpers of :mod:`occam_l2r.segment.detectors` (GroundingDINO, OWLv2).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from occam_l2r.segment.prompts import Query
from occam_l2r.weights import resolve_hf_model


@dataclass
class Detections:
    """Boxes of one image: ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,), ``query`` (N,) index
    into the image's queries, ``texts`` the matched text per box."""

    boxes: torch.Tensor
    scores: torch.Tensor
    query: torch.Tensor
    texts: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        return cls(
            torch.zeros((0, 4), device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
            [],
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Clip xyxy pixel boxes to the image."""
    out = boxes.clone()
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


class HFImagePreprocessor:
    """Picklable per-image preprocessing (runs in DataLoader workers): a transformers image
    processor turned into ``{"pixel_values": (3, h, w) float tensor}``."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        out = self.image_processor(images=image, return_tensors="pt")
        return {"pixel_values": out["pixel_values"][0]}


class Detector(abc.ABC):
    """Base of the text-prompted detectors.

    Args:
        model: hub model id or local ``save_pretrained`` folder.
        cache_dir: Hugging Face cache to look in (default: the standard cache).
        download: fetch a missing model from the hub (needs internet).
    """

    name: str = "detector"
    model_types: tuple[str, ...] = ()

    def __init__(self, model: str, cache_dir: str | None = None, download: bool = False) -> None:
        self.model_id = model
        self.cache_dir = cache_dir
        self.download = download
        self.model: nn.Module | None = None
        self.processor: Any = None

    def check_weights(self) -> Path:
        """Resolve the weights (fast); raises :class:`~occam_l2r.weights.WeightsNotFoundError` naming the model."""
        return resolve_hf_model(self.model_id, self.cache_dir, self.download)

    def _load_processor(self) -> Any:
        if self.processor is None:
            from transformers import AutoProcessor

            self.processor = AutoProcessor.from_pretrained(str(self.check_weights()))
        return self.processor

    def load(self) -> nn.Module:
        """Load the model (eval mode, CPU) and its processor from the resolved local folder."""
        path = self.check_weights()
        self._load_processor()
        model = self._model_class().from_pretrained(str(path))
        if model.config.model_type not in self.model_types:
            raise ValueError(
                f"{self.model_id} is a {model.config.model_type!r} model, not {self.model_types}; "
                f"use the detector class for that model"
            )
        self.model = model.eval()
        return self.model

    def preprocessor(self) -> Callable[[np.ndarray], dict[str, torch.Tensor]]:
        return HFImagePreprocessor(self._load_processor().image_processor)

    @abc.abstractmethod
    def _model_class(self) -> Any: ...

    @abc.abstractmethod
    def detect(
        self,
        inputs: Sequence[dict[str, torch.Tensor]],
        sizes: Sequence[tuple[int, int]],
        queries: Sequence[Sequence[Query]],
    ) -> list[Detections]:
        """Detect ``queries[i]`` in image ``i`` (``sizes[i]`` = original ``(height, width)``)."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]: ...

    @property
    def device(self) -> torch.device:
        assert self.model is not None, "call load() first"
        return next(self.model.parameters()).device


def pad_images(pixels: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (3, h, w) images bottom/right to a batch; the mask is 1 on real pixels."""
    h = max(p.shape[-2] for p in pixels)
    w = max(p.shape[-1] for p in pixels)
    out = pixels[0].new_zeros((len(pixels), pixels[0].shape[0], h, w))
    mask = torch.zeros((len(pixels), h, w), dtype=torch.long, device=pixels[0].device)
    for i, p in enumerate(pixels):
        out[i, :, : p.shape[-2], : p.shape[-1]] = p
        mask[i, : p.shape[-2], : p.shape[-1]] = 1
    return out, mask


def concat_detections(parts: Sequence[Detections], device: torch.device) -> Detections:
    if not parts:
        return Detections.empty(device)
    return Detections(
        torch.cat([p.boxes for p in parts]),
        torch.cat([p.scores for p in parts]),
        torch.cat([p.query for p in parts]),
        [t for p in parts for t in p.texts],
    )
