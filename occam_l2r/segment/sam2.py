"""SAM 2 through transformers (``Sam2Model``): box-prompted masks and automatic all-object masks.

SAM 2 (Ravi et al. 2024; cited by OCCAM among the foundational segmentation models) keeps SAM's
prompt encoder and mask decoder and replaces the ViT image encoder by a hierarchical Hiera
encoder with an FPN neck, several times cheaper than SAM ViT-H. The two uses mirror SAM's
(:mod:`occam_l2r.segment.sam`, :mod:`occam_l2r.segment.sam_automatic`) and plug into the same
segmenters (:class:`~occam_l2r.segment.segmenters.DetectAndSegment`,
:class:`~occam_l2r.segment.segmenters.AutomaticMasks`):

- :class:`Sam2BoxPrompter` turns every kept detector box into a mask: the image encoder runs once
  per batch on the images with boxes, then the prompt encoder and mask decoder run once on all
  boxes of the batch, each box against its own image's multi-scale features (a gather, as for
  SAM). Single-mask output is SAM 2's (its decoder falls back to the best of its three masks when
  the single mask is unstable); ``multimask_output`` keeps the best of three by predicted IoU.
- :class:`Sam2Automatic` is segment-anything's ``SamAutomaticMaskGenerator`` (point grid,
  predicted-IoU and stability filters, box NMS, crops, small-region clean-up, the very code of
  SAM's automatic masks) driven by a SAM 2 predictor (:class:`_Sam2Predictor`); the defaults are
  those of SAM 2's own ``SAM2AutomaticMaskGenerator`` (``pred_iou_thresh`` 0.8). The image
  encoder runs batched over a batch's images, the point grid per image on those features.

Inputs follow SAM 2: the image is resized to the model's square input (1024 x 1024, aspect not
kept; bilinear), scaled to [0, 1] and normalised with the processor's ImageNet mean/std; prompts
are scaled by input size / image size per axis; low-resolution mask logits are resized back to
the image bilinearly and thresholded at 0.

Weights: a transformers SAM 2 checkpoint, by hub id (``facebook/sam2.1-hiera-large``, ``-base-plus``,
``-small``, ``-tiny``) from the local Hugging Face cache, or a local ``save_pretrained`` folder
(how the tests run a tiny random SAM 2: :func:`occam_l2r.segment.tiny.tiny_sam2`). A missing model
fails before anything is loaded with one :class:`~occam_l2r.weights.WeightsNotFoundError`
(:func:`occam_l2r.weights.resolve_hf_model`). No package beyond transformers is needed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything import SamAutomaticMaskGenerator
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from occam_l2r.segment.sam_automatic import generator_config, ranked_masks
from occam_l2r.weights import WeightsFileError, resolve_hf_model

#: SAM 2's mask logit threshold (its predictors' ``mask_threshold``)
MASK_THRESHOLD = 0.0


class Sam2Preprocessor:
    """Picklable per-image preprocessing: resize to SAM 2's square input (uint8 ``sam_image``)."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        chw = torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1)
        size = [self.image_size, self.image_size]
        resized = TF.resize(chw, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        return {"sam_image": resized.contiguous()}


class _Sam2Model:
    """Shared loading and image encoding of the two SAM 2 uses.

    Args:
        model: hub id (``facebook/sam2.1-hiera-large``) or local ``save_pretrained`` folder.
        cache_dir: Hugging Face cache to look in (default: the standard cache).
        download: fetch a missing model from the hub (needs internet).
    """

    def __init__(self, model: str, cache_dir: str | None, download: bool) -> None:
        self.model_id = model
        self.cache_dir = cache_dir
        self.download = download
        self.model: nn.Module | None = None
        self._image_processor: Any = None

    def check_weights(self) -> Path:
        """Resolve the weights (fast); raises ``WeightsNotFoundError`` naming the model."""
        return resolve_hf_model(self.model_id, self.cache_dir, self.download)

    def _processor(self) -> Any:
        if self._image_processor is None:
            from transformers import Sam2ImageProcessor

            self._image_processor = Sam2ImageProcessor.from_pretrained(str(self.check_weights()))
        return self._image_processor

    @property
    def image_size(self) -> int:
        size = self._processor().size
        height = size["height"] if isinstance(size, dict) else size.height
        return int(height)

    def preprocessor(self) -> Sam2Preprocessor:
        return Sam2Preprocessor(self.image_size)

    def load(self) -> nn.Module:
        """Load the model (eval mode, CPU) from the resolved local folder."""
        from transformers import Sam2Model

        path = self.check_weights()
        try:
            model = Sam2Model.from_pretrained(str(path))
        except (OSError, ValueError) as err:
            raise WeightsFileError(
                f"SAM 2 model {self.model_id} ({path}) cannot be loaded as transformers' Sam2Model "
                f"({' '.join(str(err).split())[:300]}). Use a SAM 2 checkpoint of transformers "
                "(facebook/sam2.1-hiera-large, -base-plus, -small, -tiny) or a folder written by "
                "its save_pretrained."
            ) from err
        encoder_size = int(model.config.prompt_encoder_config.image_size)
        if encoder_size != self.image_size:
            raise WeightsFileError(
                f"SAM 2 model {self.model_id}: its processor resizes to {self.image_size} px but "
                f"the model takes {encoder_size} px; save the matching processor with the model."
            )
        processor = self._processor()
        mean = torch.tensor(processor.image_mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(processor.image_std, dtype=torch.float32).view(3, 1, 1)
        model.register_buffer("occam_pixel_mean", mean * 255.0, persistent=False)
        model.register_buffer("occam_pixel_std", std * 255.0, persistent=False)
        self.model = model.eval()
        return self.model

    def base_config(self) -> dict[str, Any]:
        return {"model": self.model_id}

    @property
    def device(self) -> torch.device:
        assert self.model is not None, "call load() first"
        return self.model.occam_pixel_mean.device

    def encode(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """SAM 2's multi-scale image features (high-res levels first, the decoder's image
        embedding last) of resized ``(3, S, S)`` uint8 images, one encoder pass."""
        assert self.model is not None, "call load() first"
        m = self.model
        batch = torch.stack([im.to(self.device) for im in images]).float()
        batch = (batch - m.occam_pixel_mean) / m.occam_pixel_std
        return list(m.get_image_embeddings(batch))

    def decode(
        self,
        features: list[torch.Tensor],
        multimask_output: bool,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on precomputed ``features`` (batch ``B``) for boxes
        ``(B, P, 4)`` or points ``(B, P, n, 2)`` in the input frame; low-res mask logits
        ``(B, P, k, h, w)`` and predicted IoUs ``(B, P, k)``."""
        assert self.model is not None, "call load() first"
        out = self.model(
            image_embeddings=features,
            input_boxes=boxes,
            input_points=points,
            input_labels=labels,
            multimask_output=multimask_output,
        )
        return out.pred_masks, out.iou_scores


def to_input_frame(xy: torch.Tensor, size: tuple[int, int], image_size: int) -> torch.Tensor:
    """Pixel x/y coordinates (last dim pairs) of an image of ``size = (h, w)`` in SAM 2's
    square input frame (each axis scaled on its own, as SAM 2 resizes without keeping aspect)."""
    h, w = size
    scale = torch.tensor([image_size / w, image_size / h], dtype=xy.dtype, device=xy.device)
    return (xy.reshape(*xy.shape[:-1], -1, 2) * scale).reshape(xy.shape)


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Low-resolution mask logits ``(N, k, h, w)`` resized bilinearly to ``size`` (SAM 2's)."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


class Sam2BoxPrompter(_Sam2Model):
    """Box-prompted SAM 2 masks for every kept detector box (the ``sam:`` of ``DetectAndSegment``).

    Args:
        model: ``facebook/sam2.1-hiera-large`` (or ``-base-plus``, ``-small``, ``-tiny``), or a
            local folder.
        multimask_output: keep the best of SAM 2's three masks by predicted IoU (default: its
            single box mask, with its own fall-back to the best of three when unstable).
        decoder_chunk: boxes decoded per pass of the mask decoder (bounds memory).
        cache_dir: Hugging Face cache to look in.
        download: fetch a missing model from the hub (needs internet).
    """

    name = "sam2"

    def __init__(
        self,
        model: str = "facebook/sam2.1-hiera-large",
        multimask_output: bool = False,
        decoder_chunk: int = 64,
        cache_dir: str | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(model, cache_dir, download)
        self.multimask_output = multimask_output
        self.decoder_chunk = decoder_chunk

    def config(self) -> dict[str, Any]:
        return {**self.base_config(), "multimask_output": self.multimask_output}

    @torch.no_grad()
    def masks(
        self,
        sam_images: list[torch.Tensor],
        sizes: list[tuple[int, int]],
        boxes: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Boolean masks ``(N_i, H_i, W_i)`` for the ``(N_i, 4)`` xyxy pixel boxes of each image."""
        out = [torch.zeros((0, h, w), dtype=torch.bool) for h, w in sizes]
        todo = [i for i, b in enumerate(boxes) if len(b)]
        if not todo:
            return out
        features = self.encode([sam_images[i] for i in todo])
        device, size = self.device, self.image_size
        prompts = torch.cat(
            [to_input_frame(boxes[i].float().to(device), sizes[i], size) for i in todo]
        )
        owner = torch.cat(
            [torch.full((len(boxes[i]),), j, dtype=torch.long) for j, i in enumerate(todo)]
        ).to(device)
        low_res = []
        for k in range(0, len(owner), self.decoder_chunk):
            rows = owner[k : k + self.decoder_chunk]
            logits, iou = self.decode(
                [f[rows] for f in features],
                self.multimask_output,
                boxes=prompts[k : k + self.decoder_chunk, None],
            )
            logits, iou = logits[:, 0], iou[:, 0]  # one box per row: (n, k, h, w), (n, k)
            best = iou.argmax(dim=1)
            low_res.append(logits[torch.arange(len(best), device=best.device), best])
        masks_low = torch.cat(low_res)
        start = 0
        for i in todo:
            n = len(boxes[i])
            logits = upsample(masks_low[start : start + n, None], sizes[i])
            out[i] = (logits[:, 0] > MASK_THRESHOLD).cpu()
            start += n
        return out


class _Sam2Predictor:
    """The predictor interface that ``SamAutomaticMaskGenerator`` drives (``set_image``,
    ``reset_image``, ``transform.apply_coords``, ``predict_torch``, ``model.mask_threshold``,
    ``device``), answered by SAM 2. ``pending`` takes precomputed features for the next image."""

    def __init__(self, sam2: _Sam2Model) -> None:
        self.sam2 = sam2
        self.model = SimpleNamespace(mask_threshold=MASK_THRESHOLD)
        self.transform = self
        self.pending: list[torch.Tensor] | None = None
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.sam2.device

    def reset_image(self) -> None:
        self.features: list[torch.Tensor] | None = None
        self.original_size: tuple[int, int] | None = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        if self.pending is None:
            resized = self.sam2.preprocessor()(image)["sam_image"]
            self.features = [f.float() for f in self.sam2.encode([resized])]
        else:
            self.features, self.pending = self.pending, None
        self.original_size = (int(image.shape[0]), int(image.shape[1]))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        h, w = original_size[:2]
        size = self.sam2.image_size
        return coords.astype(np.float32) * np.array([size / w, size / h], dtype=np.float32)

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks ``(P, k, H, W)`` (logits with ``return_logits``), IoUs ``(P, k)`` and low-res
        logits for ``P`` prompts of ``(P, n, 2)`` input-frame points."""
        assert self.features is not None and self.original_size is not None, "set_image first"
        low, iou = self.sam2.decode(
            self.features,
            multimask_output,
            points=point_coords[None].float(),
            labels=point_labels[None].int(),
        )
        low, iou = low[0], iou[0]
        masks = upsample(low, self.original_size)
        if not return_logits:
            masks = masks > MASK_THRESHOLD
        return masks, iou, low


class Sam2Automatic(_Sam2Model):
    """Class-agnostic "all objects" masks of SAM 2 (for OCCAM; ``sam:`` of ``AutomaticMasks``).

    The arguments after ``model`` are ``SamAutomaticMaskGenerator``'s, with the defaults of SAM 2's
    ``SAM2AutomaticMaskGenerator``; ``max_masks`` keeps the masks of highest predicted IoU (all
    when ``None``).
    """

    segmenter_name = "sam2_auto"

    def __init__(
        self,
        model: str = "facebook/sam2.1-hiera-large",
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        min_mask_region_area: int = 0,
        max_masks: int | None = 100,
        cache_dir: str | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(model, cache_dir, download)
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
        return {**self.base_config(), **generator_config(self.generator_args, self.max_masks)}

    def load(self) -> nn.Module:
        model = super().load()
        # the generator only reads the SAM input size from the model it is given; its predictor
        # is then SAM 2's
        stand_in = SimpleNamespace(image_encoder=SimpleNamespace(img_size=self.image_size))
        self.generator = SamAutomaticMaskGenerator(stand_in, **self.generator_args)
        self.generator.predictor = _Sam2Predictor(self)  # type: ignore[assignment]
        return model

    @torch.no_grad()
    def generate(
        self, images: list[np.ndarray], sam_images: list[torch.Tensor]
    ) -> list[tuple[list[np.ndarray], list[float]]]:
        """Per image: boolean masks and their predicted IoUs, best first."""
        assert self.generator is not None, "call load() first"
        predictor = self.generator.predictor
        assert isinstance(predictor, _Sam2Predictor)
        features = self.encode(sam_images) if self.generator_args["crop_n_layers"] == 0 else None
        out = []
        for j, image in enumerate(images):
            if features is not None:
                predictor.pending = [f[j : j + 1].float() for f in features]
            # the point-grid decoding runs in float32; only the image encoder above runs under
            # the caller's autocast (as for SAM)
            with torch.autocast(self.device.type, enabled=False):
                anns = self.generator.generate(image)
            out.append(ranked_masks(anns, self.max_masks))
        return out
