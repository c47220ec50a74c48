"""Supervised classifiers by timm name, with pretrained weights found locally or a fast failure.

Two initialisations of one architecture can be compared (L2R² Table 15, ResNet-50 from timm and
from torchvision): timm names pick timm's weights by tag (``resnet50.a1_in1k``, or
``resnet50.tv_in1k``, torchvision's weights as timm publishes them), and ``torchvision:<arch>``
or ``torchvision:<arch>.<WEIGHTS>`` (``torchvision:resnet50.IMAGENET1K_V1``) builds the model with
torchvision's own constructor and weights enum (``DEFAULT`` when no weights are named): its
weights file must be in torch's hub cache (``$TORCH_HOME/hub/checkpoints``) or given as
``checkpoint_path``; nothing is downloaded. Its normalisation is the weights' own transform's.

A local weights file (``checkpoint_path``) is read by timm with ``torch.load(weights_only=True)``
(or safetensors); a missing, truncated or unsafe file raises a
:class:`~occam_l2r.weights.WeightsError` naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from occam_l2r.errors import option_flag
from occam_l2r.weights import (
    WeightsFileError,
    WeightsNotFoundError,
    load_state_dict_file,
    require_hub_files,
)

TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
#: prefix of model names built by torchvision's constructors instead of timm
TORCHVISION = "torchvision:"

#: the command-line flag of a local weights file in ``fit``/``test``... (the task's init args;
#: the messages spell it as the running verb does, :func:`checkpoint_flag`)
CHECKPOINT_FLAG = "--model.init_args.checkpoint_path"


def checkpoint_flag() -> str:
    """The flag of a local weights file as the running verb spells it
    (:func:`occam_l2r.errors.option_flag`)."""
    return option_flag("model", "checkpoint_path")


def create_classifier(
    model_name: str,
    num_classes: int,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """``timm.create_model`` (or a torchvision constructor) with a new ``num_classes`` head.

    Args:
        model_name: timm name with optional tag (``convnextv2_base.fcmae_ft_in1k``), or
            ``torchvision:<arch>[.<WEIGHTS>]`` (``torchvision:resnet50.IMAGENET1K_V1``).
        num_classes: classes of the new head.
        pretrained: load pretrained weights: from ``checkpoint_path`` if given, else from the
            Hugging Face cache (fails in seconds when they are not there).
        checkpoint_path: a local weights file (``.safetensors``/``.pth``) for ``model_name``.
        drop_path_rate: stochastic depth (timm models only).
    """
    if model_name.startswith(TORCHVISION):
        if drop_path_rate:
            raise ValueError(
                f"{model_name}: torchvision models have no stochastic depth; set "
                f"model.drop_path_rate: 0 (got {drop_path_rate})"
            )
        return torchvision_classifier(
            model_name[len(TORCHVISION) :], num_classes, pretrained, checkpoint_path
        )
    if model_name.split(".")[0] not in timm.list_models():
        raise ValueError(f"unknown timm model {model_name!r}; see timm.list_models('convnextv2*')")
    kwargs: dict = {"num_classes": num_classes, "drop_path_rate": drop_path_rate}
    if pretrained and checkpoint_path:
        path = Path(checkpoint_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{checkpoint_flag()} {checkpoint_path} does not exist; point it at the weights "
                f"file of {model_name} (model: init_args: checkpoint_path: in the config)"
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
    elif pretrained:
        cfg = timm.models.get_pretrained_cfg(model_name)
        if cfg is None:
            raise ValueError(
                f"timm has no pretrained weights named {model_name!r}; see timm.list_pretrained('{model_name.split('.')[0]}*')"
            )
        if cfg.hf_hub_id:
            files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else TIMM_WEIGHT_FILES
            require_hub_files(cfg.hf_hub_id, files, model_name, checkpoint_flag())
    try:
        return timm.create_model(model_name, pretrained=pretrained, **kwargs)
    except Exception as err:
        if pretrained and checkpoint_path:  # any failure to read a user's file names it
            raise _weights_file_error(checkpoint_path, model_name, err) from err
        if pretrained and isinstance(err, (OSError, RuntimeError)):
            raise WeightsNotFoundError(
                f"could not load pretrained weights for {model_name!r}: {err}"
            ) from err
        raise


def torchvision_classifier(
    name: str, num_classes: int, pretrained: bool = False, checkpoint_path: str | None = None
) -> nn.Module:
    """A torchvision model with a new ``num_classes`` head (its last ``nn.Linear`` replaced).

    Args:
        name: ``<arch>`` or ``<arch>.<WEIGHTS>`` (a member of the arch's weights enum, e.g.
            ``resnet50.IMAGENET1K_V1``; ``DEFAULT`` when omitted).
        num_classes: classes of the new head.
        pretrained: load the weights: ``checkpoint_path`` if given, else the file torchvision
            caches in ``$TORCH_HOME/hub/checkpoints`` (never downloaded: a missing file raises
            :class:`~occam_l2r.weights.WeightsNotFoundError` naming its address).
        checkpoint_path: a local ``torch.save`` of the model's state dict.
    """
    from torchvision import models

    arch, _, tag = name.partition(".")
    if arch not in models.list_models(module=models):
        raise ValueError(
            f"unknown torchvision model {arch!r}; see torchvision.models.list_models() "
            "(write torchvision:<arch>[.<WEIGHTS>], e.g. torchvision:resnet50.IMAGENET1K_V1)"
        )
    enum = models.get_model_weights(arch)
    try:
        weights = enum[tag or "DEFAULT"]
    except KeyError:
        raise ValueError(
            f"torchvision {arch} has no weights {tag!r}; choose one of {[w.name for w in enum]}"
        ) from None
    full_name = f"{TORCHVISION}{arch}.{weights.name}"
    model = models.get_model(arch, num_classes=len(weights.meta["categories"]))
    if pretrained:
        url = weights.url
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
        hint = f"Download {url} to {cached.parent}, or give the file with {checkpoint_flag()}."
        state = load_state_dict_file(checkpoint_path or cached, f"weights of {full_name}", hint)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise _weights_file_error(str(checkpoint_path or cached), full_name, err) from err
    _replace_head(model, num_classes)
    transform = weights.transforms()
    crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
    model.pretrained_cfg = {  # read by timm's resolve_model_data_config (see data_config)
        "input_size": (3, crop, crop),
        "interpolation": transform.interpolation.value,
        "mean": tuple(transform.mean),
        "std": tuple(transform.std),
        "crop_pct": crop / resize,
        "crop_mode": "center",
    }
    return model


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Replace the last ``nn.Linear`` of ``model`` (its classifier) by a new one."""
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear classifier to replace; use a torchvision "
            "model with a linear head (resnet*, convnext*, vit_*, efficientnet*, ...)"
        )
    name = linears[-1]
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


def _weights_file_error(path: str, model_name: str, err: Exception) -> WeightsFileError:
    """The error for a local weights file that timm cannot load (unsafe, corrupt, mismatched)."""
    refused = any(isinstance(e, pickle.UnpicklingError) for e in (err, err.__cause__))
    why = (
        "was refused by torch.load(weights_only=True): it holds Python objects other than "
        "tensors; only load weights from a source you trust"
        if refused
        else "cannot be loaded (truncated download, not a weights file, or another model's)"
    )
    detail = " ".join(str(err).split())[:200]
    return WeightsFileError(
        f"{checkpoint_flag()} {path} {why} ({type(err).__name__}: {detail}). Point it at "
        f"the .safetensors/.pth weights of {model_name}."
    )


def data_config(model: nn.Module) -> dict:
    """timm's data config of ``model`` (mean, std, input size, ...)."""
    return timm.data.resolve_model_data_config(model)


def normalization(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``model``'s pretraining, shaped ``(1, 3, 1, 1)``, in 0-1 pixel units."""
    cfg = data_config(model)
    mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return mean, std


def uint8_normalization(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`normalization` in uint8 pixel units (x 255): what :func:`normalize_uint8` takes."""
    mean, std = normalization(model)
    return mean * 255.0, std * 255.0


def normalize_uint8(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A uint8 image batch ``(N, 3, H, W)`` normalised on its device with
    :func:`uint8_normalization`'s ``mean`` and ``std``: the one normalisation of training,
    ``predict`` (:class:`occam_l2r.tasks.classifier.ClassifierTask`) and inference
    (:class:`occam_l2r.classify.models.ViewModel`)."""
    return (x.float() - mean) / std
