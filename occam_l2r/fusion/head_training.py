"""Training a fusion head on in-memory logits, the epoch chosen on validation.

The loop is the one ``fit`` runs through Lightning (:class:`occam_l2r.tasks.fusion.FusionHeadTask`
on a :class:`occam_l2r.data.logits_datamodule.LogitsDataModule`), so that the ablation of the
``fuse`` verb and ``fit`` give the same head for the same settings and seed:

- the head is created right after ``torch.manual_seed(seed)`` (``seed_everything`` on the
  ``fit`` path, which instantiates the model next);
- every epoch walks the labelled train samples in the order of :func:`shuffled_loader` (a
  ``DataLoader`` whose own generator is seeded with ``seed``, the same loader
  ``LogitsDataModule.train_dataloader`` returns), one Adam step per batch with the head's own loss;
- after every epoch the validation ``metric`` is computed and the state of the best epoch is
  kept: a later epoch replaces it only when strictly better, as Lightning's ``ModelCheckpoint``
  (``mode: max``, ``save_top_k: 1``) does.

:func:`head_logits` applies a trained head to numpy logits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from occam_l2r.fusion.methods import score


@dataclass
class HeadFit:
    """A trained head and how its epoch was chosen.

    Attributes:
        head: the head in eval mode, with the weights of the chosen epoch.
        best_epoch: the chosen epoch (0-based; the last one without validation).
        best_score: its validation metric (NaN without validation).
        val_scores: the validation metric after every epoch (empty without validation).
    """

    head: nn.Module
    best_epoch: int
    best_score: float = float("nan")
    val_scores: list[float] = field(default_factory=list)


class _Indices(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def shuffled_loader(
    dataset: Dataset, batch_size: int, seed: int, num_workers: int = 0
) -> DataLoader:
    """The shuffling train loader of both paths: its own generator, seeded with ``seed``.

    The order of the samples then depends only on the seed, the number of samples and the batch
    size, not on how much of torch's global random state the rest of the run consumed.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(int(seed)),
    )


def train_head(
    head: nn.Module,
    z1: np.ndarray,
    z2: np.ndarray,
    labels: np.ndarray,
    max_epochs: int = 30,
    lr: float = 1e-2,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
    num_threads: int = 1,
    val: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    metric: str = "acc",
) -> HeadFit:
    """Fit ``head`` with Adam and its own loss; keep the epoch with the best validation metric.

    Samples with label ``-1`` are left out of training. The heads are tiny, so intra-op threads
    only add overhead (and stall badly on a busy machine): training runs with ``num_threads``
    torch threads (0 keeps the current setting), restored afterwards.

    Args:
        head: a head of :data:`occam_l2r.fusion.heads.HEADS` (created after seeding).
        z1, z2: train logits of the two inputs ``(N, C)``.
        labels: ``(N,)`` train labels.
        max_epochs: passes over the train samples.
        lr, weight_decay: Adam's settings.
        batch_size: samples per step.
        seed: seeds the order of the samples (:func:`shuffled_loader`).
        num_threads: torch threads while training.
        val: ``(z1, z2, labels)`` of the validation split; ``None`` keeps the last epoch.
        metric: the validation metric that chooses the epoch (``acc`` or ``macro_acc``).
    """
    keep = np.asarray(labels) >= 0
    if not keep.any():
        raise ValueError("no labelled samples to train the fusion head on (all labels are -1)")
    if max_epochs < 1 or batch_size < 1:
        raise ValueError(f"max_epochs and batch_size must be >= 1, got {max_epochs}, {batch_size}")
    x1 = torch.as_tensor(np.asarray(z1)[keep], dtype=torch.float32)
    x2 = torch.as_tensor(np.asarray(z2)[keep], dtype=torch.float32)
    y = torch.as_tensor(np.asarray(labels)[keep], dtype=torch.int64)
    loader = shuffled_loader(_Indices(len(y)), batch_size, seed)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    previous = torch.get_num_threads()
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    scores: list[float] = []
    best_state, best_epoch, best = None, max_epochs - 1, float("nan")
    try:
        for epoch in range(max_epochs):
            head.train()
            for idx in loader:
                opt.zero_grad(set_to_none=True)
                head.loss(x1[idx], x2[idx], y[idx]).backward()
                opt.step()
            if val is None:
                continue
            pred = head_logits(head, val[0], val[1]).argmax(1)
            scores.append(score(pred, val[2], metric))
            if np.isfinite(scores[-1]) and not scores[-1] <= best:  # strictly better (or first)
                best, best_epoch = scores[-1], epoch
                best_state = copy.deepcopy(head.state_dict())
    finally:
        torch.set_num_threads(previous)
    if best_state is not None:
        head.load_state_dict(best_state)
    return HeadFit(head.eval(), best_epoch, best, scores)


@torch.no_grad()
def head_logits(head: nn.Module, z1: np.ndarray, z2: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Fused logits of a trained head on numpy inputs, computed in chunks (in eval mode)."""
    was_training = head.training
    head.eval()
    out = []
    for start in range(0, len(z1), chunk):
        a = torch.as_tensor(np.asarray(z1[start : start + chunk]), dtype=torch.float32)
        b = torch.as_tensor(np.asarray(z2[start : start + chunk]), dtype=torch.float32)
        out.append(head(a, b).numpy())
    head.train(was_training)
    if not out:
        return np.zeros((0, np.asarray(z1).shape[1]), np.float32)
    return np.concatenate(out)
