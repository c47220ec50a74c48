"""The zero-shot VLM classifier (L2R² §4.3): an open_clip model and cached text prototypes.

- :func:`load_clip` creates an open_clip model by name (an open_clip architecture, a
  :data:`PRESETS` key of the papers, an ``hf-hub:`` id, or one of the toolkit's registered
  configs) with weights from a pretrained tag, a local state-dict file or the Hugging Face cache,
  and its own preprocessing (resolution, mean/std, interpolation) and logit scale. Missing weights
  raise :class:`~occam_l2r.weights.WeightsNotFoundError` within seconds, naming the model and how
  to provide a local file.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from occam_l2r.models.clip_registry import register_configs
from occam_l2r.models.prompts import PLACEHOLDER
from occam_l2r.weights import (
    WeightsFileError,
    WeightsNotFoundError,
    _offline,
    require_hub_files,
)

log = logging.getLogger(__name__)

#: the papers' models: name -> (open_clip model name, pretrained tag); L2R² appendix C.2
PRESETS: dict[str, tuple[str, str | None]] = {
    "clip-b32": ("ViT-B-32", "openai"),
    "clip-l14": ("ViT-L-14", "openai"),
    "siglip2": ("ViT-SO400M-16-SigLIP2-256", "webli"),
    "bioclip": ("hf-hub:imageomics/bioclip", None),
}
#: the weight files of an open_clip Hugging Face repo (any one suffices)
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
DEFAULT_TEMPLATE = "a photo of a {c}."
_EMBEDDED_HINT = (
    " The embedded CLIP of the synthetic benchmark is trained with "
    "`python -m occam_l2r fit --config configs/synthetic/clip.yaml`."
)


@dataclass
class LoadedClip:
    """An open_clip model with what zero-shot classification needs to feed it.

    Attributes:
        model: the open_clip model (eval mode, no gradients).
        tokenizer: its tokenizer (``tokenizer(list_of_texts) -> token ids``).
        image_size: side of the square input.
        mean, std: per-channel normalisation of ``[0, 1]`` images.
        name: the model as resolved (``ViT-B-32:openai``, ``hf-hub:imageomics/bioclip``, ...).
        weights_id: identity of the weights (tag, file path + size + mtime, or a hash of random
            weights); part of the prototype cache key.
        interpolation: resize interpolation of the model's preprocessing (``bicubic``, ...).
        resize_mode: the model's own resize mode (``shortest``: resize + centre crop, ``squash``).
    """

    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    weights_id: str = ""
    interpolation: str = "bicubic"
    resize_mode: str = "squash"


def load_clip(
    model_name: str, pretrained: str | None = None, model_config: str | None = None
) -> LoadedClip:
    """Create an open_clip model with its weights, tokenizer and preprocessing.

    Args:
        model_name: an open_clip model name (``ViT-B-32``), a :data:`PRESETS` key
            (``siglip2``), an ``hf-hub:org/repo`` id, or a registered config (the toolkit's
            ``occam-tiny-vit`` / ``occam-tiny-convnext``, or one added by ``model_config``).
        pretrained: a pretrained tag of the model (``openai``, ``webli``) or the path of a
            local weights file (an open_clip state dict, ``torch.save(model.state_dict())``,
            ``.safetensors`` or big_vision ``.npz``). ``None``: the preset's tag, or random
            weights. Ignored for ``hf-hub:`` ids (their repo holds the weights).
        model_config: an extra open_clip model config (a ``.json`` file or a folder of them) to
            register before creating the model.

    Raises:
        WeightsNotFoundError: the weights are neither a local file nor in the Hugging Face
            cache and cannot be downloaded from here (at once with ``HF_HUB_OFFLINE=1``).
        WeightsFileError: a local weights file cannot be read or does not fit the model.
        ValueError: an unknown model name or pretrained tag.
    """
    import open_clip

    register_configs()
    if model_config:
        register_configs(model_config)
    if model_name in PRESETS:
        model_name, tag = PRESETS[model_name]
        pretrained = pretrained or tag
    kwargs: dict[str, Any] = {}
    if model_name.startswith("hf-hub:"):
        repo = model_name.removeprefix("hf-hub:")
        _require_hf_repo(repo, model_name)
        weights_id, pretrained = model_name, None
    else:
        arch = model_name.replace("/", "-")
        if open_clip.get_model_config(arch) is None:
            raise ValueError(
                f"unknown open_clip model {model_name!r}: not an open_clip architecture, a preset "
                f"({', '.join(PRESETS)}) or an hf-hub: id; add its config with model_config "
                "(a .json file or folder); see open_clip.list_models()"
            )
        weights_id, kwargs = _resolve_pretrained(arch, model_name, pretrained)
    file = pretrained if pretrained and Path(pretrained).expanduser().is_file() else None
    try:
        model = open_clip.create_model(
            model_name, pretrained=None if file else pretrained, **kwargs
        )
    except RuntimeError as err:
        if pretrained and not file:
            raise WeightsNotFoundError(
                f"could not load the weights {pretrained!r} of {model_name!r}: {err}"
            ) from err
        raise
    if file:
        _load_file(model, Path(file).expanduser(), model_name)
    model.eval().requires_grad_(False)
    if not weights_id:  # random weights: identified by their values
        weights_id = "random:" + _hash_parameters(model)
    cfg = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    return LoadedClip(
        model=model,
        tokenizer=open_clip.get_tokenizer(model_name),
        image_size=size,
        mean=tuple(float(v) for v in cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        std=tuple(float(v) for v in cfg.get("std", open_clip.OPENAI_DATASET_STD)),
        name=model_name if not pretrained else f"{model_name}:{pretrained}",
        weights_id=weights_id,
        interpolation=str(cfg.get("interpolation", "bicubic")),
        resize_mode=str(cfg.get("resize_mode", "squash")),
    )


def _require_hf_repo(repo: str, what: str) -> None:
    """Fail fast unless the open_clip repo ``repo`` (config and weights) can be loaded."""
    option = "model.init_args.model_name (hf-hub:org/repo or an open_clip name + a local file)"
    require_hub_files(repo, ("open_clip_config.json",), what, option)
    require_hub_files(repo, HF_WEIGHT_FILES, what, "model.init_args.pretrained")


def _resolve_pretrained(
    arch: str, model_name: str, pretrained: str | None
) -> tuple[str, dict[str, Any]]:
    """``(weights identity, create_model kwargs)`` of a built-in architecture's ``pretrained``.

    Checks that a tag's weights are cached (or downloadable), a file exists; the identity is
    empty for random weights.
    """
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    if not pretrained:
        return "", {}
    path = Path(pretrained).expanduser()
    if path.is_file():
        stat = path.stat()
        return f"file:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}", {}
    cfg = get_pretrained_cfg(arch, pretrained)
    looks_like_path = any(s in pretrained for s in ("/", os.sep, ".pt", ".bin", ".safetensors"))
    if not cfg or looks_like_path:
        if looks_like_path or not list_pretrained_tags_by_model(arch):
            hint = _EMBEDDED_HINT if arch.startswith("occam-") else ""
            raise WeightsNotFoundError(
                f"weights file {path} of {model_name!r} not found (model.init_args.pretrained). "
                "Give the path of an open_clip state dict (torch.save(model.state_dict(), path), "
                f"or open_clip_pytorch_model.bin of the model's Hugging Face repo).{hint}"
            )
        raise ValueError(
            f"{model_name!r} has no pretrained tag {pretrained!r}; its tags are "
            f"{list_pretrained_tags_by_model(arch)}, or give a local weights file"
        )
    option = "model.init_args.pretrained"
    hub = cfg.get("hf_hub", "")
    if hub:
        # open_clip's convention: "org/repo/" (default file names) or "org/repo/file"
        repo, filename = (hub.rstrip("/"), "") if hub.endswith("/") else os.path.split(hub)
        files = (filename,) if filename else HF_WEIGHT_FILES
        require_hub_files(repo, files, f"{model_name}:{pretrained}", option)
    elif cfg.get("url"):
        cached = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if not cached.is_file() and _offline():
            raise WeightsNotFoundError(
                f"pretrained weights {model_name}:{pretrained} are not in {cached.parent} and "
                f"HF_HUB_OFFLINE is set. Download {cfg['url']} on a machine with internet and "
                f"copy it there, or set {option} to a local open_clip state dict."
            )
    tokenizer = (open_clip_text_cfg(arch) or {}).get("hf_tokenizer_name")
    if tokenizer:
        require_hub_files(
            tokenizer, ("tokenizer.json", "tokenizer_config.json"), f"{arch} tokenizer", option
        )
    kwargs = {"force_quick_gelu": True} if cfg.get("quick_gelu") else {}
    return f"tag:{arch}:{pretrained}", kwargs


def open_clip_text_cfg(arch: str) -> dict[str, Any] | None:
    """The ``text_cfg`` of a registered open_clip architecture (``None`` if unknown)."""
    import open_clip

    cfg = open_clip.get_model_config(arch)
    return None if cfg is None else dict(cfg.get("text_cfg", {}))


def _load_file(model: nn.Module, path: Path, model_name: str) -> None:
    """Load a local open_clip weights file into ``model``, naming the file on failure."""
    import open_clip

    if path.stat().st_size == 0:
        raise WeightsFileError(f"weights file {path} of {model_name!r} is empty (0 bytes)")
    try:
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except Exception as err:
        detail = " ".join(str(err).split())[:300]
        raise WeightsFileError(
            f"weights file {path} cannot be loaded into {model_name!r} ({type(err).__name__}: "
            f"{detail}). It must be an open_clip state dict of that architecture, saved with "
            "torch.save(model.state_dict(), path) (tensors only; torch.load(weights_only=True))."
        ) from err


def _hash_parameters(model: nn.Module) -> str:
    """A short hash of a model's parameter values (identity of random weights)."""
    h = hashlib.sha1()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


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
