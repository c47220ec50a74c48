"""The α-channel image encoder of OCCAM (§C "Applying masks"): an open_clip ViT with AlphaCLIP's
alpha patch embedding, and a loader for trained AlphaCLIP weights.

AlphaCLIP (Sun et al., CVPR 2024; SunzeY/AlphaCLIP, ``alpha_clip/model.py``) adds a convolution
``conv1_alpha`` parallel to the ViT's RGB patch embedding ``conv1`` (same width, kernel and
stride, one input channel, no bias) and sums the two outputs before the class token and the
positional embedding are added. The alpha convolution starts at zero, so an untrained alpha
encoder returns exactly the RGB model's embedding. :class:`AlphaVisual` wraps an open_clip
``VisionTransformer`` that way: the alpha term is added to ``conv1``'s output by a forward hook
that lives only during a call with an alpha channel, so the tower runs its own code path and
keeps its own state-dict keys (``visual.*``, plus ``conv1_alpha.weight``).

**The α encoder owns its own tower.** AlphaCLIP fine-tunes every RGB weight of the tower too, so
its checkpoint holds another ``visual.*``. :class:`AlphaClipEncoder` therefore deep-copies the
zero-shot model's tower before wrapping it, and :func:`load_alpha_clip_weights` loads into that
copy: the zero-shot CLIP that classifies the whole image and every crop + resize row keeps its own
weights bit for bit (as the OCCAM authors' ``occam/submodules/alpha_clip_wrapper.py`` builds a
separate AlphaCLIP model beside the CLIP one). Sharing the tower, as this module did before, made
every RGB row run on AlphaCLIP's fine-tuned weights.

Input convention (AlphaCLIP's README, and ``ALPHA_CLIP_MASK_PREPROCESS_CONFIG`` of
AlexanderRubinstein/OCCAM ``occam/submodules/alpha_clip_wrapper.py``): the RGB image is normalised
with the CLIP model's mean and std; the alpha channel (1 = foreground, 0 = background) as
``(alpha - 0.5) / 0.26``. A mask covering the whole image is the "whole image" baseline.

Trained weights: :func:`load_alpha_clip_weights` maps an AlphaCLIP visual checkpoint (the
``alpha_vision_ckpt_pth`` files of AlphaCLIP's model zoo, e.g. ``clip_l14_grit20m_fultune_2xe.pth``
for OpenAI's ViT-L/14, the one OCCAM uses) onto an :class:`AlphaVisual` built on the same
open_clip architecture (``ViT-L-14``, ``pretrained: openai``): its keys are those of
``model.visual.state_dict()`` of AlphaCLIP's ``VisionTransformer`` — ``conv1.weight``,
``conv1_alpha.weight``, ``class_embedding``, ``positional_embedding``, ``ln_pre.*``,
``transformer.resblocks.<i>.{ln_1,attn,ln_2,mlp}.*``, ``ln_post.*``, ``proj`` — where AlphaCLIP
stores each attention's input projection as a linear layer (``attn.in_proj.weight`` / ``.bias``)
and open_clip as ``attn.in_proj_weight`` / ``attn.in_proj_bias``. A ``visual.`` or ``module.``
prefix (a whole-model or DDP checkpoint) is removed. LoRA checkpoints (``lora_A`` / ``lora_B``
keys, AlphaCLIP's ``lora_adapt``) are refused: merge them first.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from occam_l2r.errors import UserError
from occam_l2r.weights import WeightsFileError, load_state_dict_file

#: AlphaCLIP's normalisation of the alpha channel: (alpha - mean) / std
ALPHA_MEAN = 0.5
ALPHA_STD = 0.26
#: AlphaCLIP model-zoo checkpoints and the open_clip architecture + tag each was trained from
ALPHA_CLIP_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "clip_b16_grit1m_fultune_8xe.pth": ("ViT-B-16", "openai"),
    "clip_b16_grit20m_fultune_2xe.pth": ("ViT-B-16", "openai"),
    "clip_l14_grit1m_fultune_8xe.pth": ("ViT-L-14", "openai"),
    "clip_l14_grit20m_fultune_2xe.pth": ("ViT-L-14", "openai"),
    "clip_l14@336_grit1m_fultune_8xe.pth": ("ViT-L-14-336", "openai"),
}
HINT = (
    "Download an AlphaCLIP visual checkpoint from https://github.com/SunzeY/AlphaCLIP/blob/main/"
    "model-zoo.md (OCCAM uses clip_l14_grit20m_fultune_2xe.pth with ViT-L-14 / openai) and set "
    "`alpha_weights:` to the file."
)


class NoAlphaModeError(UserError, ValueError):
    """The α-channel mode was asked of a model whose image tower is not a ViT."""


class AlphaVisual(nn.Module):
    """An open_clip ViT image tower that also reads an alpha channel.

    Args:
        visual: the open_clip ``VisionTransformer`` it wraps (and whose weights
            :func:`load_alpha_clip_weights` replaces): give it a tower of its own
            (:class:`AlphaClipEncoder` passes a copy).

    Raises:
        NoAlphaModeError: the tower has no ViT patch embedding (a timm tower such as
            ``occam-tiny-convnext``): AlphaCLIP is defined for ViTs only.
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        conv1 = getattr(visual, "conv1", None)
        if not isinstance(conv1, nn.Conv2d) or conv1.in_channels != 3:
            raise NoAlphaModeError(
                f"the α-channel encoder needs an open_clip ViT image tower (a `conv1` patch "
                f"embedding); this model's tower is {type(visual).__name__}. Use a ViT CLIP "
                "(e.g. ViT-L-14) for the alpha apply mode, or drop `alpha` from the apply modes."
            )
        self.visual = visual
        self.conv1_alpha = nn.Conv2d(
            1,
            conv1.out_channels,
            kernel_size=conv1.kernel_size,  # type: ignore[arg-type]
            stride=conv1.stride,  # type: ignore[arg-type]
            padding=conv1.padding,  # type: ignore[arg-type]
            bias=False,
            device=conv1.weight.device,
            dtype=conv1.weight.dtype,
        )
        nn.init.zeros_(self.conv1_alpha.weight)

    def forward(self, image: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """The tower's (unnormalised) embedding of normalised RGB ``image`` ``(B, 3, H, W)`` and
        normalised ``alpha`` ``(B, 1, H, W)``; without ``alpha``, the RGB tower alone."""
        if alpha is None:
            return self.visual(image)
        extra = self.conv1_alpha(alpha.to(self.conv1_alpha.weight.dtype))

        def add_alpha(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            return output + extra.to(output.dtype)

        handle = self.visual.conv1.register_forward_hook(add_alpha)
        try:
            return self.visual(image)
        finally:
            handle.remove()


class AlphaClipEncoder(nn.Module):
    """RGBA images -> L2-normalised CLIP embeddings, for the ``alpha`` apply mode.

    Args:
        visual: the open_clip ViT image tower of the zero-shot model; the encoder works on a
            deep copy of it, so loading ``alpha_weights`` never changes the zero-shot model.
        image_size: the tower's input side; inputs of another size are resized (bilinear).
        mean: the RGB normalisation mean of the model.
        std: the RGB normalisation std of the model.
        alpha_weights: an AlphaCLIP visual checkpoint (:func:`load_alpha_clip_weights`);
            ``None`` keeps the alpha convolution at zero (the RGB model's embeddings).
    """

    def __init__(
        self,
        visual: nn.Module,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        alpha_weights: str | None = None,
    ) -> None:
        super().__init__()
        self.tower = AlphaVisual(copy.deepcopy(visual))  # its own weights (module docstring)
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        if alpha_weights:
            load_alpha_clip_weights(self.tower, alpha_weights)

    def preprocess(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised RGB and alpha of ``(B, 4, H, W)`` images (uint8 0-255 or float 0-1)."""
        if images.dim() != 4 or images.shape[1] != 4:
            raise ValueError(f"expected (B, 4, H, W) RGBA images, got {tuple(images.shape)}")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        rgb = (x[:, :3] - self.mean) / self.std
        alpha = (x[:, 3:] - ALPHA_MEAN) / ALPHA_STD
        return rgb, alpha

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``(B, D)`` embeddings of ``(B, 4, H, W)`` RGBA images."""
        rgb, alpha = self.preprocess(images)
        dtype = self.tower.conv1_alpha.weight.dtype
        return F.normalize(self.tower(rgb.to(dtype), alpha.to(dtype)).float(), dim=-1)

    encode_images = forward


def alpha_clip_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AlphaCLIP visual-checkpoint keys -> :class:`AlphaVisual` keys (see the module docstring).

    Raises:
        WeightsFileError: the checkpoint holds LoRA weights, or no ``conv1_alpha.weight``.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        for prefix in ("module.", "visual."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        if "lora_" in name:
            raise WeightsFileError(
                f"AlphaCLIP checkpoint key {key!r} is a LoRA weight; merge the LoRA weights into "
                "the linear layers (AlphaCLIP's model.eval() does) and save the merged state dict."
            )
        if name == "conv1_alpha.weight":
            out[name] = value
            continue
        name = name.replace("attn.in_proj.weight", "attn.in_proj_weight")
        name = name.replace("attn.in_proj.bias", "attn.in_proj_bias")
        out["visual." + name] = value
    if "conv1_alpha.weight" not in out:
        raise WeightsFileError(
            "the checkpoint has no conv1_alpha.weight: it is not an AlphaCLIP visual checkpoint. "
            + HINT
        )
    return out


def load_alpha_clip_weights(tower: AlphaVisual, path: str | Path) -> None:
    """Load an AlphaCLIP visual checkpoint into ``tower`` (every key, every shape).

    Args:
        tower: the α-channel tower, built on the checkpoint's open_clip architecture
            (:data:`ALPHA_CLIP_CHECKPOINTS`).
        path: the checkpoint (read with ``torch.load(weights_only=True)``).

    Raises:
        WeightsNotFoundError: ``path`` does not exist.
        WeightsFileError: unreadable, not AlphaCLIP, or another architecture (the message names
            the missing, unexpected or mismatched keys).
    """
    state = alpha_clip_state_dict(load_state_dict_file(path, "AlphaCLIP checkpoint", HINT))
    own = tower.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        arch = ALPHA_CLIP_CHECKPOINTS.get(Path(path).name)
        expect = f" (it belongs to {arch[0]} / {arch[1]})" if arch else ""
        shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3]]
        raise WeightsFileError(
            f"AlphaCLIP checkpoint {path} does not fit this image tower{expect}: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, shapes {shapes}. Build the "
            "zero-shot model on the checkpoint's architecture."
        )
    tower.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
