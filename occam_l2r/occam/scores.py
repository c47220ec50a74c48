"""OCCAM's foreground scores g(x, m), their registry, and the choice of one mask per image
(OCCAM §3.2.2, §C).

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

**The registry.** :data:`FOREGROUND_SCORES` maps each score's name to a
:class:`ForegroundScore`: a function of the :class:`Candidates` of a batch (the applied masks'
logits, the labels, the masks themselves, the ground-truth boxes, the ensemble's logits) that
returns one score per mask. ``model.scores`` of the ``occam`` verb, the plain
:class:`~occam_l2r.occam.model.Occam` module and the table read it; adding a score is one
function decorated with :func:`foreground_score` (docs/extending.md, "Add an OCCAM foreground
score")::

    @foreground_score("smallest")
    def smallest(c: Candidates) -> torch.Tensor:
        areas = [float(m.sum()) for masks in c.masks for m in masks]
        return -torch.tensor(areas, device=c.logits.device)  # the smallest mask first

Ties go to the first mask in the store's order (the authors' table marks every tied mask; one
prediction per image needs one). An image without masks has no choice (index -1): the caller
classifies the whole image instead and counts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from occam_l2r.errors import UserError

#: the authors' epsilon of the mask-box IoU
IOU_EPS = 1e-6


class MissingGroundTruthError(UserError, ValueError):
    """A score needs a ground-truth box that an image with masks lacks (``bbox_iou``)."""


@dataclass(frozen=True)
class Candidates:
    """What a foreground score reads: the N masks of a batch of B images, applied and classified.

    The rows (masks) are grouped by image in batch order: the first ``len(masks[0])`` rows are
    image 0's masks in the store's order, and so on.

    Attributes:
        logits: ``(N, C)`` logits of the classifier on the N applied masks.
        labels: ``(N,)`` label of each mask's image (-1: unlabelled).
        owner: ``(N,)`` batch position of each mask's image.
        masks: per image, its masks as a boolean ``(K_i, H_i, W_i)`` array (the K_i sum to N).
        boxes: per image, its ground-truth xyxy box in pixels, or ``None``.
        ensemble: ``(N, M, C)`` logits of the ensemble (the classifier first) for the scores
            registered with ``uses_ensemble=True`` when the run has an ensemble; else ``None``.
    """

    logits: torch.Tensor
    labels: torch.Tensor
    owner: torch.Tensor
    masks: Sequence[np.ndarray]
    boxes: Sequence[np.ndarray | None]
    ensemble: torch.Tensor | None = None


#: a foreground score: ``(N,)`` scores of the candidates, the highest one chosen per image
ScoreFunction = Callable[[Candidates], torch.Tensor]


@dataclass(frozen=True)
class ForegroundScore:
    """A registered foreground score.

    Attributes:
        name: its name in ``model.scores`` and in the table's "FG det" column.
        compute: the function of the :class:`Candidates` that returns ``(N,)`` scores.
        uses_ensemble: it reads :attr:`Candidates.ensemble` (computed only for such scores).
    """

    name: str
    compute: ScoreFunction
    uses_ensemble: bool = False


#: every registered foreground score by name, in the order of registration
FOREGROUND_SCORES: dict[str, ForegroundScore] = {}


def foreground_score(
    name: str, *, uses_ensemble: bool = False
) -> Callable[[ScoreFunction], ScoreFunction]:
    """Register the decorated function as the foreground score ``name``.

    Args:
        name: the score's name (``model.scores``, the table's "FG det" column).
        uses_ensemble: the function reads :attr:`Candidates.ensemble`.

    Raises:
        ValueError: ``name`` is registered already.
    """

    def register(compute: ScoreFunction) -> ScoreFunction:
        if name in FOREGROUND_SCORES:
            raise ValueError(f"the foreground score {name!r} is registered already")
        FOREGROUND_SCORES[name] = ForegroundScore(name, compute, uses_ensemble)
        return compute

    return register


def check_scores(names: Sequence[str]) -> list[str]:
    """``names`` as a list, after checking that each one is a registered score.

    Raises:
        ValueError: no name, or a name that is not registered (the message lists the choices).
    """
    names = list(names)
    bad = [n for n in names if n not in FOREGROUND_SCORES]
    if bad or not names:
        raise ValueError(f"model.scores={names}: choose from {tuple(FOREGROUND_SCORES)}")
    return names


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


def _box_bounds(box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """An xyxy box in whole pixels: rounded outward, clipped to the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    return x0, y0, x1, y1


def box_mask(box: Sequence[float], height: int, width: int) -> np.ndarray:
    """The pixels of an xyxy box (x1, y1 exclusive; rounded outward, clipped to the image)."""
    x0, y0, x1, y1 = _box_bounds(box, height, width)
    out = np.zeros((height, width), bool)
    out[y0:y1, x0:x1] = True
    return out


def bbox_iou(masks: Sequence[np.ndarray] | np.ndarray, box: Sequence[float]) -> np.ndarray:
    """``bbox_iou``: pixel IoU of each mask with the filled ground-truth box.

    Args:
        masks: boolean ``(H, W)`` masks of one image (a list, or a ``(K, H, W)`` array).
        box: the image's ground-truth xyxy box in pixels.

    Returns:
        ``(K,)`` float32 scores in ``[0, 1]`` (empty for no masks).
    """
    if len(masks) == 0:
        return np.zeros(0, np.float32)
    m = np.asarray(masks, dtype=bool)
    k, h, w = m.shape
    x0, y0, x1, y1 = _box_bounds(box, h, w)
    inter = m[:, y0:y1, x0:x1].reshape(k, -1).sum(axis=1)
    box_area = max(0, x1 - x0) * max(0, y1 - y0)
    union = m.reshape(k, -1).sum(axis=1) + box_area - inter
    return ((inter + IOU_EPS) / (union + IOU_EPS)).astype(np.float32)


@foreground_score("max_prob")
def _max_prob(c: Candidates) -> torch.Tensor:
    return max_prob(c.logits)


@foreground_score("oracle")
def _oracle(c: Candidates) -> torch.Tensor:
    return oracle(c.logits, c.labels)


@foreground_score("ens_entropy", uses_ensemble=True)
def _ens_entropy(c: Candidates) -> torch.Tensor:
    return ens_entropy(c.logits if c.ensemble is None else c.ensemble)


@foreground_score("bbox_iou")
def _bbox_iou(c: Candidates) -> torch.Tensor:
    parts = [np.zeros(0, np.float32)]
    for masks, box in zip(c.masks, c.boxes, strict=True):
        if len(masks) and box is None:
            raise MissingGroundTruthError(
                "the bbox_iou foreground score needs a ground-truth box for every image with "
                "masks, but an image has none (no box given, or a dataset without gt_boxes and "
                "ground-truth masks). Give the box, or drop bbox_iou from the scores."
            )
        parts.append(bbox_iou(masks, box) if len(masks) else parts[0])
    return torch.from_numpy(np.concatenate(parts)).to(c.logits.device)


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
