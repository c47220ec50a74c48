"""Metrics torchmetrics lacks: macro accuracy over the classes present, per-group accuracy.

Both keep sum states (``dist_reduce_fx="sum"``), so they are exact under DDP.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class PresentClassAccuracy(Metric):
    """Macro accuracy averaged only over classes that occur in the targets.

    FungiTastic's val/test splits miss some of the 215 training classes; torchmetrics' macro
    average would count a class that is predicted but absent as 0 %. Here such a class is ignored.

    Args:
        num_classes: the number of classes.
        only_correct: average only over the classes with at least one correct prediction (a
            class that gets nothing right is left out, not counted as 0 %): the OCCAM authors'
            CounterAnimal metric (AlexanderRubinstein/OCCAM, ``eval.py``:
            ``compute_mean_per_class_acc_from_detailed_res`` keeps a class only once it has a
            correct prediction); the ``mean_class_acc`` of the ``occam`` verb.
    """

    full_state_update = False

    def __init__(self, num_classes: int, only_correct: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.only_correct = only_correct
        self.add_state("correct", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        hit = (preds == target).long()
        self.correct += torch.bincount(target, weights=hit, minlength=self.num_classes).long()
        self.total += torch.bincount(target, minlength=self.num_classes)

    def compute(self) -> torch.Tensor:
        present = (self.correct > 0) if self.only_correct else (self.total > 0)
        if not present.any():
            return torch.tensor(float("nan"))
        return (self.correct[present].float() / self.total[present].float()).mean()


class GroupAccuracy(Metric):
    """Accuracy per group (background kind, subset, ...); NaN for groups absent from the split."""

    full_state_update = False

    def __init__(self, num_groups: int) -> None:
        super().__init__()
        self.num_groups = max(1, num_groups)
        self.add_state(
            "correct", torch.zeros(self.num_groups, dtype=torch.long), dist_reduce_fx="sum"
        )
        self.add_state(
            "total", torch.zeros(self.num_groups, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        if preds.ndim == 2:
            preds = preds.argmax(dim=1)
        hit = (preds == target).long()
        self.correct += torch.bincount(groups, weights=hit, minlength=self.num_groups).long()
        self.total += torch.bincount(groups, minlength=self.num_groups)

    def compute(self) -> torch.Tensor:
        acc = self.correct.float() / self.total.clamp(min=1).float()
        return torch.where(self.total > 0, acc, torch.full_like(acc, float("nan")))


def worst_group(group_acc: torch.Tensor) -> torch.Tensor:
    """Lowest accuracy among the groups present (NaN entries are absent groups)."""
    present = ~torch.isnan(group_acc)
    return group_acc[present].min() if present.any() else torch.tensor(float("nan"))
