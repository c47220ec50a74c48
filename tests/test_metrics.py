"""Macro accuracy over present classes and per-group / worst-group accuracy."""

from __future__ import annotations

import math

import torch

from occam_l2r.models.metrics import GroupAccuracy, PresentClassAccuracy, worst_group


def test_macro_ignores_absent_classes():
    m = PresentClassAccuracy(num_classes=5)
    target = torch.tensor([0, 0, 1, 1, 1, 1])
    preds = torch.tensor([0, 4, 1, 1, 1, 3])  # class 4 and 3 predicted but absent from targets
    m.update(preds, target)
    assert math.isclose(m.compute().item(), (0.5 + 0.75) / 2)


def test_macro_accepts_logits_and_accumulates():
    m = PresentClassAccuracy(num_classes=3)
    m.update(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), torch.tensor([0, 0]))
    m.update(torch.tensor([[0, 0, 1.0]]), torch.tensor([2]))
    assert math.isclose(m.compute().item(), (0.5 + 1.0) / 2)


def test_group_and_worst_group():
    g = GroupAccuracy(num_groups=3)
    g.update(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]), torch.tensor([0, 0, 1, 1]))
    acc = g.compute()
    assert acc[0].item() == 1.0 and acc[1].item() == 0.5 and math.isnan(acc[2].item())
    assert worst_group(acc).item() == 0.5
