"""Frozen pretrained image backbones as feature extractors (the probes of L2R²'s cheap variant).

L2R² (§1, §6) proposes to let the context (BG) model use "large pretrained models with strong
representations, like DINO and CLIP … without extensive additional training": a linear or small
MLP head on frozen features. :class:`FrozenBackbone` names the backbone:

- ``kind: timm``: any timm model by name (``vit_base_patch14_dinov2.lvd142m``,
  ``convnextv2_base.fcmae_ft_in22k_in1k``), its classifier removed (``num_classes=0``: the
  pooled features), weights by name from the Hugging Face cache or from ``checkpoint_path``
  (:func:`occam_l2r.models.backbones.create_classifier`, which fails fast without them);
- ``kind: open_clip``: the image tower of an open_clip model (``ViT-B-32`` with ``pretrained:
  openai``, a preset, or the embedded CLIP ``occam-tiny-convnext`` with its weights file), loaded
  by :func:`occam_l2r.models.clip_loading.load_clip`; the features are the tower's image
  embeddings.

:func:`build_frozen` returns a :class:`FrozenFeatures` module (eval mode, no gradients) that maps
uint8 image batches to features with the backbone's own normalisation, and the identity of its
weights (part of the feature store's key, :mod:`occam_l2r.data.feature_store`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from occam_l2r.errors import option_flag
from occam_l2r.models.backbones import create_classifier, data_config, normalize_uint8
from occam_l2r.models.clip_loading import hash_parameters, load_clip
from occam_l2r.weights import WeightsError

#: the seed of a backbone built without pretrained weights (see :func:`build_frozen`)
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class FrozenBackbone:
    """Which frozen backbone computes the features.

    Attributes:
        kind: ``timm`` (a timm model by name) or ``open_clip`` (an open_clip image tower).
        name: the timm model name, or the open_clip model name / preset.
        pretrained: timm: load its pretrained weights (from ``checkpoint_path`` when given);
            open_clip: ignored (``checkpoint_path`` or the preset's tag give the weights).
        checkpoint_path: timm: a local weights file; open_clip: the pretrained tag or the path
            of the model's weights file (the embedded CLIP's ``open_clip.pt``).
    """

    kind: Literal["timm", "open_clip"] = "timm"
    name: str = "convnextv2_atto"
    pretrained: bool = True
    checkpoint_path: str | None = None

    def describe(self) -> str:
        """A short label of the backbone (reports, log lines)."""
        return f"{self.kind}:{self.name}"


class FrozenFeatures(nn.Module):
    """A frozen backbone on uint8 image batches ``(N, 3, H, W)`` -> features ``(N, D)``.

    Attributes:
        feature_dim: ``D``.
        interpolation, crop_pct: the backbone's own preprocessing (what the DataModule resizes
            with where its config names none).
        weights_id: the identity of the weights (a tag, or a hash of the parameter values).
    """

    def __init__(
        self,
        net: nn.Module,
        mean: torch.Tensor,
        std: torch.Tensor,
        feature_dim: int,
        weights_id: str,
        interpolation: str | None = None,
        crop_pct: float | None = None,
    ) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", mean.view(1, -1, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1) * 255.0, persistent=False)
        self.feature_dim = int(feature_dim)
        self.weights_id = weights_id
        self.interpolation, self.crop_pct = interpolation, crop_pct

    def train(self, mode: bool = True) -> FrozenFeatures:
        """Stays in eval mode: a frozen backbone's normalisation statistics and dropout never
        change (``mode`` is ignored for the network)."""
        super().train(mode)
        self.net.eval()
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(normalize_uint8(images, self.mean, self.std)).float()


def build_frozen(
    spec: FrozenBackbone, image_size: int | None = None, section: str = "data"
) -> FrozenFeatures:
    """The frozen feature extractor of ``spec`` (weights loaded, eval mode).

    Args:
        spec: the backbone.
        image_size: the side of the images it will see; a timm model with a fixed input size
            (ViTs: DINOv2 is built for 518 px) is set to it (``set_input_size``: its position
            embeddings resampled, as timm does for fine-tuning at another size).
        section: the config section holding ``backbone`` (its options are named in errors).

    Raises:
        WeightsNotFoundError, WeightsFileError: the weights are not there or do not fit
            (at once offline; the message names ``<section>.backbone.checkpoint_path``).
        ValueError: an unknown model name or kind.
    """
    try:
        # random weights (``pretrained: false``, an open_clip model without weights: tests,
        # timings) from a fixed seed, whatever the run consumed of the global generator before:
        # the same backbone in fit, test and predict (the store's key holds their digest), and
        # the global stream left as it was for the head
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            return _build(spec, image_size)
    except WeightsError as err:
        # the loaders name a classifier's options; a backbone's weights are set elsewhere
        flag = option_flag(section, "backbone.checkpoint_path")
        text = str(err)
        for wrong in (option_flag("model", "pretrained"), option_flag("model", "checkpoint_path")):
            text = text.replace(wrong, flag)
        raise type(err)(f"frozen backbone {spec.describe()}: {text}") from err


def _build(spec: FrozenBackbone, image_size: int | None) -> FrozenFeatures:
    if spec.kind == "timm":
        net = create_classifier(spec.name, 0, spec.pretrained, spec.checkpoint_path)
        if image_size and hasattr(net, "set_input_size"):
            net.set_input_size(img_size=(int(image_size), int(image_size)))
        cfg = data_config(net)
        mean = torch.tensor(cfg["mean"], dtype=torch.float32)
        std = torch.tensor(cfg["std"], dtype=torch.float32)
        dim = int(getattr(net, "num_features", 0)) or _probe_dim(net, cfg["input_size"][-1])
        return FrozenFeatures(
            net, mean, std, dim, "timm:" + hash_parameters(net), cfg.get("interpolation"),
            cfg.get("crop_pct"),
        )  # fmt: skip
    if spec.kind == "open_clip":
        clip = load_clip(spec.name, spec.checkpoint_path)
        tower = clip.model.visual
        dim = _probe_dim(tower, clip.image_size)
        return FrozenFeatures(
            tower, torch.tensor(clip.mean), torch.tensor(clip.std), dim,
            "open_clip:" + hash_parameters(tower), clip.interpolation,
        )  # fmt: skip
    raise ValueError(f"unknown backbone kind {spec.kind!r}; choose timm or open_clip")


@torch.no_grad()
def _probe_dim(net: nn.Module, size: int) -> int:
    """The feature width of ``net`` from one forward pass of a blank image."""
    was = net.training
    net.eval()
    out = net(torch.zeros(1, 3, int(size), int(size)))
    net.train(was)
    return int(out.shape[-1])


def backbone_key(spec: FrozenBackbone, extractor: FrozenFeatures) -> dict[str, Any]:
    """What identifies the features of ``spec``: the spec and the digest of its weights (a
    changed weights file or tag gives other features)."""
    return {**asdict(spec), "weights": extractor.weights_id, "feature_dim": extractor.feature_dim}
