"""The zero-shot VLM classifier (L2R² §4.3): an open_clip model and cached text prototypes.

- :func:`load_clip` (re-exported from :mod:`occam_l2r.models.clip_loading`) creates an open_clip
  model by name, preset, ``hf-hub:`` id or registered config with its weights and preprocessing;
  missing weights fail within seconds.
- :class:`ZeroShotClassifier` holds the class prototypes, built once per run with open_clip's own
  :func:`open_clip.build_zero_shot_classifier` (each (class, template) text encoded exactly once)
  and cached on disk, keyed by the model and its weights, the templates and the class names. It
  encodes images of any size (uint8 or float in ``[0, 1]``) and returns
  ``logit_scale · f @ prototypesᵀ (+ logit_bias)``.

Plain torch and open_clip; no Lightning (the task is :mod:`occam_l2r.tasks.zeroshot`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from occam_l2r.models.clip_loading import PRESETS, LoadedClip, load_clip
from occam_l2r.models.prompts import PLACEHOLDER

__all__ = [
    "DEFAULT_TEMPLATE",
    "PRESETS",
    "LoadedClip",
    "ZeroShotClassifier",
    "fill_template",
    "load_clip",
]

log = logging.getLogger(__name__)

#: L2R²'s text prompt (§4.3, "an embedding of the text 'A photo of a n_c'"): capital A, no period
DEFAULT_TEMPLATE = "A photo of a {c}"


def fill_template(template: str, class_name: str) -> str:
    """``template`` with its ``{c}`` replaced by ``class_name``."""
    return template.replace(PLACEHOLDER, class_name)


class ZeroShotClassifier(nn.Module):
    """Zero-shot classification with an open_clip model and one prototype per class.

    The prototypes (the normalised mean over templates of the normalised text embeddings, from
    :func:`open_clip.build_zero_shot_classifier`) are built on first use, once, on the model's
    device, and cached in ``cache_dir``; a later classifier with the same model weights,
    templates and class names reads them from there without running the text encoder.

    Args:
        clip: the model (:func:`load_clip`).
        class_names: the name of each class as it goes into the templates.
        templates: one template or several, each with ``{c}`` where the class name goes.
        cache_dir: folder of the prototype cache; ``None``: no disk cache.
    """

    def __init__(
        self,
        clip: LoadedClip,
        class_names: list[str],
        templates: list[str] | str = DEFAULT_TEMPLATE,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        templates = [templates] if isinstance(templates, str) else list(templates)
        if not templates or not class_names:
            raise ValueError("ZeroShotClassifier needs at least one template and one class name")
        bad = [t for t in templates if PLACEHOLDER not in t]
        if bad:
            raise ValueError(f"templates {bad[:3]} lack {PLACEHOLDER}, the class name's place")
        self.clip = clip
        self.model = clip.model
        self.class_names = [str(c) for c in class_names]
        self.templates = templates
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else None
        self.register_buffer("mean", torch.tensor(clip.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(clip.std).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_prototypes", torch.empty(0), persistent=False)
        #: where the prototypes came from: ``computed`` or ``cache`` (``None`` before first use)
        self.prototype_source: str | None = None

    # ------------------------------------------------------------------ prototypes
    @property
    def cache_key(self) -> str:
        """Hash of (model name, weights identity, templates, class names)."""
        blob = json.dumps(
            [self.clip.name, self.clip.weights_id, self.templates, self.class_names]
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    @property
    def cache_path(self) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{self.cache_key}.pt"

    @property
    def prototypes(self) -> torch.Tensor:
        """The ``(C, D)`` unit-norm class prototypes (built or read on first access)."""
        if self._prototypes.numel() == 0:
            self.build_prototypes()
        return self._prototypes

    @torch.no_grad()
    def build_prototypes(self) -> torch.Tensor:
        """Read the prototypes from the cache, or encode every (class, template) text once."""
        device = self.mean.device
        cached = self._read_cache()
        if cached is not None:
            self._prototypes = cached.to(device)
            self.prototype_source = "cache"
            return self._prototypes
        import open_clip

        fills = [functools.partial(fill_template, t) for t in self.templates]
        with torch.autocast(device.type, enabled=False):
            weights = open_clip.build_zero_shot_classifier(
                self.model, self.clip.tokenizer, self.class_names, fills, device=device
            )
        self._prototypes = weights.T.float().contiguous()
        self.prototype_source = "computed"
        self._write_cache(self._prototypes)
        return self._prototypes

    def _read_cache(self) -> torch.Tensor | None:
        path = self.cache_path
        if path is None or not path.is_file():
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            meta = json.loads(saved["meta"])
            if meta != self._cache_meta() or saved["prototypes"].shape[0] != len(self.class_names):
                return None
            return saved["prototypes"].float()
        except Exception as err:  # a corrupt cache entry is rebuilt, never trusted
            log.warning("prototype cache %s unreadable (%s); rebuilding it", path, err)
            return None

    def _cache_meta(self) -> dict[str, Any]:
        return {
            "model": self.clip.name,
            "weights": self.clip.weights_id,
            "templates": self.templates,
            "class_names": self.class_names,
        }

    def _write_cache(self, prototypes: torch.Tensor) -> None:
        path = self.cache_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        meta = json.dumps(self._cache_meta())
        torch.save({"prototypes": prototypes.detach().cpu(), "meta": meta}, tmp)
        os.replace(tmp, path)

    # ------------------------------------------------------------------ images
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (0-255) or float (0-1) ``(B, 3, H, W)`` -> resized, normalised float input."""
        x = images.float() / 255.0 if not images.is_floating_point() else images.float()
        s = self.clip.image_size
        if tuple(x.shape[-2:]) != (s, s):
            mode = self.clip.interpolation if self.clip.interpolation != "lanczos" else "bicubic"
            x = F.interpolate(x, size=(s, s), mode=mode, antialias=True, align_corners=False)
            x = x.clamp(0.0, 1.0)
        return (x - self.mean) / self.std

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings ``(B, D)`` of images of any size."""
        return self.model.encode_image(self.preprocess(images), normalize=True).float()

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``logit_scale · features @ prototypesᵀ`` (+ ``logit_bias`` for SigLIP models), in
        float32 even under mixed-precision autocast (⊕max compares their softmax confidences)."""
        with torch.autocast(features.device.type, enabled=False):
            z = self.model.logit_scale.exp().float() * features.float() @ self.prototypes.T
            bias = getattr(self.model, "logit_bias", None)
            return z + bias.float() if bias is not None else z

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.encode_images(images))
