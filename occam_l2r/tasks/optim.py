"""The optimiser recipe the trained tasks share: AdamW without decay on gains and biases, and a
linear warm-up followed by a cosine decay to a floor, stepped per batch.

Used by :class:`~occam_l2r.tasks.classifier.ClassifierTask` (L2R²'s ConvNeXtV2 recipe) and
:class:`~occam_l2r.tasks.clip_train.ClipTrainTask` (open_clip's).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def adamw(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    no_decay: Callable[[str, nn.Parameter], bool] = lambda name, p: p.ndim <= 1,
    **kwargs: Any,
) -> torch.optim.AdamW:
    """AdamW with ``weight_decay`` on every trainable parameter except those ``no_decay`` picks
    (by default gains and biases: tensors of at most one dimension)."""
    decay, plain = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            (plain if no_decay(name, p) else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, **kwargs)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float, min_lr_ratio: float
) -> dict[str, Any]:
    """Lightning's ``lr_scheduler`` entry: linear warm-up over ``warmup_fraction`` of
    ``total_steps``, then cosine decay to ``min_lr_ratio`` of the peak, stepped every batch."""
    total = max(1, int(total_steps))
    warmup = int(warmup_fraction * total)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), "interval": "step"}
