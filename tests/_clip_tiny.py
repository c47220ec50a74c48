"""Tiny open_clip models for tests: random weights of the toolkit's registered tiny configs.

``save_tiny_clip(path)`` writes ``model.state_dict()`` of a seeded random tiny model with
``torch.save`` (the format of the embedded CLIP), so tests load it by path exactly as the configs
load real weights: ``load_clip("occam-tiny-vit", pretrained=str(path))``.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_VIT = "occam-tiny-vit"
TINY_CONVNEXT = "occam-tiny-convnext"


def tiny_open_clip(name: str = TINY_VIT, seed: int = 0) -> torch.nn.Module:
    """A random open_clip model of a registered tiny config (deterministic in ``seed``)."""
    import open_clip

    from occam_l2r.models.clip_registry import register_configs

    register_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    with torch.no_grad():  # a logit scale as a trained model has (100), not CLIP's initial 1/0.07
        model.logit_scale.fill_(torch.log(torch.tensor(100.0)))
    return model.eval()


def save_tiny_clip(path: str | Path, name: str = TINY_VIT, seed: int = 0) -> Path:
    """Save a tiny random open_clip model's state dict at ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_open_clip(name, seed).state_dict(), path)
    return path
