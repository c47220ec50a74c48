"""SAM's automatic all-object masks (OCCAM's class-agnostic mask source) on precomputed embeddings.

:class:`SamAutomatic` wraps segment-anything's ``SamAutomaticMaskGenerator``. The expensive image
encoder runs batched over the images of a batch (the base of :mod:`occam_l2r.segment.sam`); the
generator's point grid then runs per image on those precomputed embeddings (``points_per_batch``
points at a time). Crops (``crop_n_layers > 0``) are encoded by the generator itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from segment_anything.modeling import Sam

from occam_l2r.segment.sam import SamArch, SamType, _SamModel


class _EmbeddingPredictor(SamPredictor):
    """A ``SamPredictor`` that can take a precomputed image embedding for the next image."""

    def __init__(self, sam_model: Sam) -> None:
        super().__init__(sam_model)
        self.pending: torch.Tensor | None = None

    @torch.no_grad()
    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        if self.pending is None:
            super().set_torch_image(transformed_image, original_image_size)
            return
        self.reset_image()
        self.original_size = original_image_size
        self.input_size = tuple(transformed_image.shape[-2:])
        self.features, self.pending = self.pending, None
        self.is_image_set = True


def generator_config(generator_args: dict[str, Any], max_masks: int | None) -> dict[str, Any]:
    """The settings of an automatic mask generator that change its masks (the store's config;
    ``points_per_batch`` only batches the work): SAM's and SAM 2's generators alike."""
    args = {k: v for k, v in generator_args.items() if k != "points_per_batch"}
    return {**args, "max_masks": max_masks}


def ranked_masks(
    anns: list[dict[str, Any]], max_masks: int | None
) -> tuple[list[np.ndarray], list[float]]:
    """The generator's annotations of one image as boolean masks and their predicted IoUs, best
    first, at most ``max_masks``: what SAM's and SAM 2's automatic masks both return."""
    anns = sorted(anns, key=lambda a: -a["predicted_iou"])
    if max_masks is not None:
        anns = anns[:max_masks]
    return [a["segmentation"].astype(bool) for a in anns], [float(a["predicted_iou"]) for a in anns]


class SamAutomatic(_SamModel):
    """Class-agnostic "all objects" masks (SAM's automatic mask generator; OCCAM's source).

    The arguments after ``arch`` are ``SamAutomaticMaskGenerator``'s, with its defaults.
    ``max_masks`` keeps the masks of highest predicted IoU (all when ``None``).
    """

    segmenter_name = "sam_auto"  # the name of its AutomaticMasks segmenter

    def __init__(
        self,
        checkpoint: str,
        model_type: SamType = "vit_h",
        arch: SamArch | None = None,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        min_mask_region_area: int = 0,
        max_masks: int | None = 100,
    ) -> None:
        super().__init__(checkpoint, model_type, arch)
        self.generator_args: dict[str, Any] = {
            "points_per_side": points_per_side,
            "points_per_batch": points_per_batch,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "box_nms_thresh": box_nms_thresh,
            "crop_n_layers": crop_n_layers,
            "min_mask_region_area": min_mask_region_area,
        }
        self.max_masks = max_masks
        self.generator: SamAutomaticMaskGenerator | None = None

    def config(self) -> dict[str, Any]:
        return {**self.sam_config(), **generator_config(self.generator_args, self.max_masks)}

    def load(self) -> Sam:
        sam = super().load()
        self.generator = SamAutomaticMaskGenerator(sam, **self.generator_args)
        self.generator.predictor = _EmbeddingPredictor(sam)
        return sam

    @torch.no_grad()
    def generate(
        self, images: list[np.ndarray], sam_images: list[torch.Tensor]
    ) -> list[tuple[list[np.ndarray], list[float]]]:
        """Per image: boolean masks and their predicted IoUs, best first."""
        assert self.generator is not None, "call load() first"
        predictor = self.generator.predictor
        assert isinstance(predictor, _EmbeddingPredictor)
        embeddings = self.encode(sam_images) if self.generator_args["crop_n_layers"] == 0 else None
        device_type = predictor.device.type
        out = []
        for j, image in enumerate(images):
            predictor.pending = embeddings[j : j + 1].float() if embeddings is not None else None
            # the point-grid decoding (with torchvision NMS on mixed dtypes) runs in float32; only
            # the image encoder above runs under the caller's autocast
            with torch.autocast(device_type, enabled=False):
                anns = self.generator.generate(image)
            out.append(ranked_masks(anns, self.max_masks))
        return out
