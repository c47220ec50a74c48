"""OCCAM's foreground scores g(x, m) and the choice of one mask per image (OCCAM §3.2.2, §C).

Every mask m of an image x is applied to it, a(x, m), and scored; the mask with the highest
foreground score is the foreground, m* = S_{i*}(x) with i* = argmax_i g(x, S_i(x)). The scores
follow the authors' code (AlexanderRubinstein/OCCAM, ``occam/robust_classification/eval.py``:
``compute_foreground_score``; ``occam/ood_detection/uncertainty_scores.py``:
``ens_entropy_per_sample``; ``occam/datasets/bboxed_dataset.py``: ``compute_bbox_fit_score``):

- ``max_prob``: the classifier's confidence, max_c p^c(psi(a(x, m))) (softmax of the logits);
- ``oracle``: the probability of the true class, p^y(psi(a(x, m))) (needs the label: it
  measures the masks, not a method to deploy);
- ``ens_entropy``: one minus the entropy (natural log) of the probabilities averaged over an
  ensemble of classifiers, 1 - H(mean_k p_k); with a single classifier, 1 - H(p);
- ``bbox_iou``: the intersection over union between the mask's pixels and the pixels of a
  ground-truth box, (|m ∩ b| + eps) / (|m ∪ b| + eps) with eps = 1e-6, computed on pixels as the
  authors do (not box against box).

Ties go to the first mask in the store's order (the authors' table marks every tied mask; one
prediction per image needs one). An image without masks has no choice (index -1): the caller
classifies the whole image instead and counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

ForegroundScore = Literal["max_prob", "oracle", "ens_entropy", "bbox_iou"]
#: every foreground score, in the order of the tables
FOREGROUND_SCORES: tuple[str, ...] = ("max_prob", "oracle", "ens_entropy", "bbox_iou")
#: scores computed from the classifier's outputs on the applied masks
CLASSIFIER_SCORES: tuple[str, ...] = ("max_prob", "oracle", "ens_entropy")
#: the authors' epsilon of the mask-box IoU
IOU_EPS = 1e-6


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the classes (last dimension), in float32."""
    return torch.softmax(logits.float(), dim=-1)


def max_prob(logits: torch.Tensor) -> torch.Tensor:
    """``max_prob``: the highest class probability of each applied mask.

    Args:
        logits: ``(N, C)`` logits of N applied masks.

    Returns:
        ``(N,)`` scores in ``[1/C, 1]``.
    """
    return probabilities(logits).amax(dim=-1)


def oracle(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``oracle``: the probability of the true class of each applied mask's image.

    Args:
        logits: ``(N, C)`` logits of N applied masks.
        labels: ``(N,)`` class of the image each mask belongs to; an unlabelled image (-1) scores
            0 for every mask (its first mask is then chosen; it is never counted in accuracy).

    Returns:
        ``(N,)`` scores in ``[0, 1]``.
    """
    probs = probabilities(logits)
    labels = labels.to(device=probs.device, dtype=torch.long)
    picked = probs.gather(-1, labels.clamp(min=0)[:, None])[:, 0]
    return torch.where(labels >= 0, picked, torch.zeros_like(picked))


def ens_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``ens_entropy``: one minus the entropy of the ensemble's mean probabilities.

    Args:
        logits: ``(N, M, C)`` logits of M ensemble members for N applied masks, or ``(N, C)``
            for a single classifier (an ensemble of one).

    Returns:
        ``(N,)`` scores, at most 1 (a one-hot prediction), down to ``1 - log C``.
    """
    probs = probabilities(logits)
    if probs.dim() == 3:
        probs = probs.mean(dim=1)
    return 1.0 - torch.special.entr(probs).sum(dim=-1)


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """The pixels of an xyxy box (x1, y1 exclusive; rounded outward, clipped to the image)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    out = np.zeros((height, width), bool)
    out[y0:y1, x0:x1] = True
    return out


def bbox_iou(masks: Sequence[np.ndarray], box: Sequence[float]) -> np.ndarray:
    """``bbox_iou``: pixel IoU of each mask with the filled ground-truth box.

    Args:
        masks: boolean ``(H, W)`` masks of one image.
        box: the image's ground-truth xyxy box in pixels.

    Returns:
        ``(N,)`` float32 scores in ``[0, 1]`` (empty for no masks).
    """
    if len(masks) == 0:
        return np.zeros(0, np.float32)
    h, w = masks[0].shape
    target = box_mask(box, h, w)
    out = np.empty(len(masks), np.float32)
    for i, m in enumerate(masks):
        m = np.asarray(m, bool)
        inter = float(np.logical_and(m, target).sum())
        union = float(np.logical_or(m, target).sum())
        out[i] = (inter + IOU_EPS) / (union + IOU_EPS)
    return out


def classifier_score(
    name: str, logits: torch.Tensor, labels: torch.Tensor, ensemble: torch.Tensor | None = None
) -> torch.Tensor:
    """A score computed from the classifier's outputs, by name.

    Args:
        name: ``max_prob``, ``oracle`` or ``ens_entropy``.
        logits: ``(N, C)`` logits of the classifier on N applied masks.
        labels: ``(N,)`` label of each mask's image (``oracle``).
        ensemble: ``(N, M, C)`` logits of an ensemble for ``ens_entropy``; ``None`` uses the
            classifier alone.
    """
    if name == "max_prob":
        return max_prob(logits)
    if name == "oracle":
        return oracle(logits, labels)
    if name == "ens_entropy":
        return ens_entropy(logits if ensemble is None else ensemble)
    raise ValueError(f"{name!r} is not a classifier score; choose one of {CLASSIFIER_SCORES}")


def choose(scores: torch.Tensor, owner: torch.Tensor, num_images: int) -> torch.Tensor:
    """The highest-scoring mask of every image (the first one on ties).

    Args:
        scores: ``(N,)`` foreground scores of the masks of a batch.
        owner: ``(N,)`` index of each mask's image in the batch (``0 <= owner < num_images``).
        num_images: number of images in the batch.

    Returns:
        ``(num_images,)`` long: for each image the position (into ``scores``) of its chosen mask,
        or -1 for an image without masks. NaN scores are never chosen over a number.
    """
    n = len(scores)
    device = scores.device
    owner = owner.to(device=device, dtype=torch.long)
    s = torch.nan_to_num(scores.float(), nan=-torch.inf)
    best = torch.full((num_images,), -torch.inf, device=device)
    best = best.scatter_reduce(0, owner, s, reduce="amax", include_self=True)
    position = torch.arange(n, device=device)
    candidate = torch.where(s == best[owner], position, torch.full_like(position, n))
    first = torch.full((num_images,), n, device=device, dtype=torch.long)
    first = first.scatter_reduce(0, owner, candidate, reduce="amin", include_self=True)
    return torch.where(first == n, torch.full_like(first, -1), first)
