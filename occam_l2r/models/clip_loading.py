"""Loading open_clip models for zero-shot classification: presets, tags, hf-hub ids, local files.

:func:`load_clip` creates an open_clip model by name (an open_clip architecture, a :data:`PRESETS`
key of the papers, an ``hf-hub:`` id, or one of the toolkit's registered configs) with weights
from a pretrained tag, a local state-dict file or the Hugging Face cache, and its own
preprocessing (resolution, mean/std, interpolation) and logit scale. Missing weights raise
:class:`~occam_l2r.weights.WeightsNotFoundError` within seconds, naming the model and how to
provide a local file. The classifier built on it is :mod:`occam_l2r.models.zeroshot`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from occam_l2r.errors import option_flag
from occam_l2r.models.clip_registry import register_configs
from occam_l2r.weights import (
    WeightsFileError,
    WeightsNotFoundError,
    _offline,
    require_hub_files,
)

log = logging.getLogger(__name__)


class _NoRandomInitWarning(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded ... initialized randomly" warning, which it
    prints when the model is built before :func:`load_clip` loads a local weights file into it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


#: the papers' models: name -> (open_clip model name, pretrained tag); L2R² appendix C.2
PRESETS: dict[str, tuple[str, str | None]] = {
    "clip-b32": ("ViT-B-32", "openai"),
    "clip-l14": ("ViT-L-14", "openai"),
    "siglip2": ("ViT-SO400M-16-SigLIP2-256", "webli"),
    "bioclip": ("hf-hub:imageomics/bioclip", None),
}
#: the weight files of an open_clip Hugging Face repo (any one suffices)
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
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
    quiet = _NoRandomInitWarning() if file else None  # the file is loaded right after
    if quiet:
        logging.getLogger().addFilter(quiet)
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
    finally:
        if quiet:
            logging.getLogger().removeFilter(quiet)
    if file:
        _load_file(model, Path(file).expanduser(), model_name)
    model.eval().requires_grad_(False)
    if not weights_id:  # random weights: identified by their values
        weights_id = "random:" + hash_parameters(model)
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
    name_flag = option_flag("model", "model_name")
    option = f"{name_flag} (hf-hub:org/repo or an open_clip name + a local file)"
    require_hub_files(repo, ("open_clip_config.json",), what, option)
    require_hub_files(repo, HF_WEIGHT_FILES, what, option_flag("model", "pretrained"))


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
                f"weights file {path} of {model_name!r} not found ({option_flag('model', 'pretrained')}). "
                "Give the path of an open_clip state dict (torch.save(model.state_dict(), path), "
                f"or open_clip_pytorch_model.bin of the model's Hugging Face repo).{hint}"
            )
        raise ValueError(
            f"{model_name!r} has no pretrained tag {pretrained!r}; its tags are "
            f"{list_pretrained_tags_by_model(arch)}, or give a local weights file"
        )
    option = option_flag("model", "pretrained")
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


def hash_parameters(model: nn.Module) -> str:
    """A short hash of a model's parameter values (identity of random weights)."""
    h = hashlib.sha1()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
