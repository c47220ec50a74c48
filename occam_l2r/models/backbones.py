"""Supervised classifiers by timm name, with pretrained weights found locally or a fast failure.

A local weights file (``checkpoint_path``) is read by timm with ``torch.load(weights_only=True)``
(or safetensors); a missing, truncated or unsafe file raises a
:class:`~occam_l2r.weights.WeightsError` naming it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import timm
import torch
from torch import nn

from occam_l2r.weights import WeightsFileError, WeightsNotFoundError, require_hub_files

TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def create_classifier(
    model_name: str,
    num_classes: int,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """``timm.create_model`` with a new ``num_classes`` head.

    Args:
        model_name: timm name with optional tag (``convnextv2_base.fcmae_ft_in1k``).
        num_classes: classes of the new head.
        pretrained: load pretrained weights: from ``checkpoint_path`` if given, else from the
            Hugging Face cache (fails in seconds when they are not there).
        checkpoint_path: a local weights file (``.safetensors``/``.pth``) for ``model_name``.
        drop_path_rate: stochastic depth.
    """
    if model_name.split(".")[0] not in timm.list_models():
        raise ValueError(f"unknown timm model {model_name!r}; see timm.list_models('convnextv2*')")
    kwargs: dict = {"num_classes": num_classes, "drop_path_rate": drop_path_rate}
    if pretrained and checkpoint_path:
        path = Path(checkpoint_path).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(
                f"model.checkpoint_path={checkpoint_path!r} does not exist; point it at the weights file of {model_name}"
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
            require_hub_files(cfg.hf_hub_id, files, model_name, "model.checkpoint_path")
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
        f"model.checkpoint_path {path} {why} ({type(err).__name__}: {detail}). Point it at "
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
