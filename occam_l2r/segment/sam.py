"""SAM through segment-anything: box-prompted masks (batched) and automatic all-object masks.

- :class:`SamBoxPrompter` turns every kept detector box into a mask. The image encoder runs
  once per batch on all images that have boxes; the prompt encoder and mask decoder then run
  once on all boxes of the batch, each box against its own image's embedding (single-mask
  output by default, as for box prompts).
- :class:`~occam_l2r.segment.sam_automatic.SamAutomatic` (its own module) wraps
  ``SamAutomaticMaskGenerator``, OCCAM's class-agnostic mask source, on the same base.

Checkpoints: ``vit_h`` / ``vit_l`` / ``vit_b`` are built by segment-anything's
``sam_model_registry`` and load the official checkpoint files; ``custom`` builds a SAM of any
size from segment-anything's own modules (:class:`SamArch`), which is how the tests run tiny
random-initialised SAMs through the same code. Every checkpoint is read with
``torch.load(weights_only=True)`` (:func:`load_sam`), never by segment-anything's builders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn

from occam_l2r.weights import (
    WeightsFileError,
    load_state_dict_file,
    resolve_sam_checkpoint,
    sam_checkpoint_hint,
)

SamType = Literal["vit_h", "vit_l", "vit_b", "custom"]


@dataclass
class SamArch:
    """Architecture of a ``custom`` SAM (the defaults are ViT-B's encoder with SAM's decoder)."""

    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: list[int] = field(default_factory=lambda: [2, 5, 8, 11])
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256


def build_sam(arch: SamArch) -> Sam:
    """A randomly initialised SAM of architecture ``arch`` from segment-anything's modules."""
    grid = arch.image_size // arch.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth,
            embed_dim=arch.encoder_embed_dim,
            img_size=arch.image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=arch.encoder_num_heads,
            patch_size=arch.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(arch.encoder_global_attn_indexes),
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(arch.image_size, arch.image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
    ).eval()


def load_sam(checkpoint: str, model_type: SamType = "vit_h", arch: SamArch | None = None) -> Sam:
    """Build SAM, then load its checkpoint with ``torch.load(weights_only=True)`` (the builders
    of segment-anything would unpickle it unrestricted); a missing, unreadable, unsafe or
    mismatched file raises a ``WeightsError`` naming it."""
    if model_type != "custom" and model_type not in sam_model_registry:
        raise ValueError(f"SAM model_type {model_type!r} unknown; choose vit_h/vit_l/vit_b/custom")
    path = resolve_sam_checkpoint(checkpoint, model_type)
    hint = sam_checkpoint_hint(path, model_type)
    state = load_state_dict_file(path, f"SAM checkpoint ({model_type})", hint)
    custom = model_type == "custom"
    sam = build_sam(arch or SamArch()) if custom else sam_model_registry[model_type](None)
    try:
        sam.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsFileError(
            f"SAM checkpoint {path} does not fit model_type {model_type!r} and its arch "
            f"({' '.join(str(err).split())[:300]} ...). {hint}"
        ) from err
    return sam.eval()


class SamPreprocessor:
    """Picklable per-image preprocessing: resize the long side to SAM's input size (uint8 tensor)."""

    def __init__(self, image_size: int) -> None:
        self.transform = ResizeLongestSide(image_size)

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        resized = self.transform.apply_image(image)
        return {"sam_image": torch.as_tensor(resized).permute(2, 0, 1).contiguous()}


class _SamModel:
    """Shared checkpoint handling of the two SAM uses."""

    def __init__(self, checkpoint: str, model_type: SamType, arch: SamArch | None) -> None:
        self.checkpoint = checkpoint
        self.model_type = model_type
        self.arch = arch
        self.model: Sam | None = None

    def check_weights(self) -> Path:
        return resolve_sam_checkpoint(self.checkpoint, self.model_type)

    def load(self) -> Sam:
        self.model = load_sam(self.checkpoint, self.model_type, self.arch)
        return self.model

    @property
    def image_size(self) -> int:
        if self.model is not None:
            return int(self.model.image_encoder.img_size)
        return (self.arch or SamArch()).image_size if self.model_type == "custom" else 1024

    def preprocessor(self) -> SamPreprocessor:
        return SamPreprocessor(self.image_size)

    def sam_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "checkpoint": Path(self.checkpoint).name,
            "model_type": self.model_type,
        }
        if self.model_type == "custom":
            out["arch"] = asdict(self.arch or SamArch())
        return out

    def encode(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Image embeddings of resized ``(3, h, w)`` uint8 images, one encoder pass."""
        assert self.model is not None, "call load() first"
        device = self.model.device
        batch = torch.stack([self.model.preprocess(im.to(device).float()) for im in images])
        return self.model.image_encoder(batch)


class SamBoxPrompter(_SamModel):
    """Box-prompted SAM masks for every kept detector box.

    Args:
        checkpoint: SAM checkpoint file (``sam_vit_h_4b8939.pth`` ...).
        model_type: ``vit_h``, ``vit_l``, ``vit_b`` or ``custom`` (with ``arch``).
        arch: architecture of a ``custom`` SAM.
        multimask_output: let SAM propose 3 masks per box and keep the one with the highest
            predicted IoU (default: SAM's single box mask).
        decoder_chunk: boxes decoded per pass of the mask decoder (bounds memory).
    """

    name = "sam"  # the segmenter of DetectAndSegment is "<detector>+sam"

    def __init__(
        self,
        checkpoint: str,
        model_type: SamType = "vit_h",
        arch: SamArch | None = None,
        multimask_output: bool = False,
        decoder_chunk: int = 64,
    ) -> None:
        super().__init__(checkpoint, model_type, arch)
        self.multimask_output = multimask_output
        self.decoder_chunk = decoder_chunk

    def config(self) -> dict[str, Any]:
        return {**self.sam_config(), "multimask_output": self.multimask_output}

    @torch.no_grad()
    def masks(
        self,
        sam_images: list[torch.Tensor],
        sizes: list[tuple[int, int]],
        boxes: list[torch.Tensor],
    ) -> list[torch.Tensor]:
        """Boolean masks ``(N_i, H_i, W_i)`` for the ``(N_i, 4)`` xyxy pixel boxes of each image."""
        assert self.model is not None, "call load() first"
        sam = self.model
        out = [torch.zeros((0, h, w), dtype=torch.bool) for h, w in sizes]
        todo = [i for i, b in enumerate(boxes) if len(b)]
        if not todo:
            return out
        embeddings = self.encode([sam_images[i] for i in todo])
        transform = ResizeLongestSide(sam.image_encoder.img_size)
        prompts = torch.cat(
            [transform.apply_boxes_torch(boxes[i].float().to(sam.device), sizes[i]) for i in todo]
        )
        owner = torch.cat(
            [torch.full((len(boxes[i]),), j, dtype=torch.long) for j, i in enumerate(todo)]
        ).to(sam.device)
        chunks = [
            self.decode(
                embeddings, owner[k : k + self.decoder_chunk], prompts[k : k + self.decoder_chunk]
            )
            for k in range(0, len(owner), self.decoder_chunk)
        ]
        low_res = torch.cat([c[0] for c in chunks])
        start = 0
        for i in todo:
            n = len(boxes[i])
            masks = sam.postprocess_masks(
                low_res[start : start + n].float(), tuple(sam_images[i].shape[-2:]), sizes[i]
            )
            out[i] = (masks[:, 0] > sam.mask_threshold).cpu()
            start += n
        return out

    def decode(
        self, embeddings: torch.Tensor, owner: torch.Tensor, boxes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM's mask decoder for many boxes of many images in one pass.

        Box ``k`` (xyxy in SAM's resized input frame) is decoded against the embedding of image
        ``owner[k]``. This is ``MaskDecoder.predict_masks`` with its per-image repetition of one
        embedding replaced by a gather of each box's own image embedding, so the decoder runs
        once per batch instead of once per image.

        Returns:
            Low-resolution mask logits ``(N, 1, h, w)`` (the best of 3 by predicted IoU with
            ``multimask_output``) and their predicted IoUs ``(N, 1)``.
        """
        assert self.model is not None, "call load() first"
        sam, dec = self.model, self.model.mask_decoder
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        n = sparse.shape[0]
        output_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(n, -1, -1), sparse], dim=1)
        src = embeddings[owner] + dense
        pos = sam.prompt_encoder.get_dense_pe().expand(n, -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = dec.transformer(src, pos, tokens)
        upscaled = dec.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack(
            [mlp(hs[:, 1 + t, :]) for t, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
        )
        bu, cu, hu, wu = upscaled.shape
        logits = (hyper @ upscaled.reshape(bu, cu, hu * wu)).reshape(bu, -1, hu, wu)
        iou = dec.iou_prediction_head(hs[:, 0, :])
        if not self.multimask_output:
            return logits[:, :1], iou[:, :1]
        best = iou[:, 1:].argmax(dim=1) + 1
        rows = torch.arange(n, device=logits.device)
        return logits[rows, best][:, None], iou[rows, best][:, None]
