"""Temperature scaling recovers a known temperature; class-wise scaling never lowers accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from occam_l2r.fusion import calibration as C
from occam_l2r.fusion.methods import softmax


def sample_at_temperature(t_true: float, n: int = 20000, c: int = 10, seed: int = 0):
    """Logits z and labels drawn from softmax(z / t_true): the NLL-optimal T is t_true."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3.0, size=(n, c))
    p = softmax(z, t_true)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, labels


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_known_t(t_true):
    z, y = sample_at_temperature(t_true)
    assert C.fit_temperature(z, y) == pytest.approx(t_true, rel=0.05)


def test_fit_temperature_errors():
    with pytest.raises(ValueError, match="labels must lie in"):
        C.fit_temperature(np.zeros((3, 2)), np.array([0, 1, -1]))
    with pytest.raises(ValueError, match="N > 0"):
        C.fit_temperature(np.zeros((0, 2)), np.zeros(0, int))


def test_binned_ece_matches_torchmetrics():
    rng = np.random.default_rng(3)
    z = rng.normal(scale=2.0, size=(500, 6))
    y = rng.integers(0, 6, 500)
    p = softmax(z)
    metric = MulticlassCalibrationError(num_classes=6, n_bins=15, norm="l1")
    ref = float(metric(torch.as_tensor(p), torch.as_tensor(y)))
    conf, pred = p.max(1), p.argmax(1)
    assert C.binned_ece(conf, pred == y) == pytest.approx(ref, abs=1e-6)
    assert C.expected_calibration_error(z, y) == pytest.approx(ref, abs=1e-6)
    # vectorised over candidates: each column is its own ECE
    many = C.binned_ece(np.stack([conf, conf], 1), np.stack([pred == y, pred == y], 1))
    np.testing.assert_allclose(many, [ref, ref], atol=1e-6)


def test_ece_hand_computed():
    # 4 samples all at confidence 0.75 in one bin, 3 of them correct: |0.75 - 0.75| = 0
    assert C.binned_ece(np.full(4, 0.75), np.array([1, 1, 1, 0])) == pytest.approx(0.0)
    # 2 samples at 0.9, both wrong: ECE 0.9
    assert C.binned_ece(np.full(2, 0.9), np.array([0, 0])) == pytest.approx(0.9)


def miscalibrated(seed: int, n: int = 3000, c: int = 6):
    """Logits with class-dependent miscalibration: class k's logit column is scaled by s_k."""
    z, y = sample_at_temperature(1.0, n=n, c=c, seed=seed)
    scales = np.linspace(0.4, 3.0, c)
    return z * scales, y


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_classwise_ts_never_lowers_val_accuracy_and_lowers_ece(seed):
    z, y = miscalibrated(seed)
    t0 = C.fit_temperature(z, y)
    temps = C.fit_classwise_temperature(z, y, init=t0)
    assert temps.shape == (z.shape[1],) and (temps > 0).all()
    acc0 = ((z / t0).argmax(1) == y).mean()
    acc = ((z / temps).argmax(1) == y).mean()
    assert acc >= acc0
    ece0 = C.expected_calibration_error(z / t0, y)
    ece = C.expected_calibration_error(z / temps, y)
    assert ece <= ece0 + 1e-6
    assert ece < ece0  # class-dependent scales leave room for improvement


def test_classwise_ts_keeps_initial_temperature_when_nothing_helps():
    # a single-value grid equal to init: nothing can change
    z, y = miscalibrated(5)
    temps = C.fit_classwise_temperature(z, y, init=1.3, grid=np.array([1.3]))
    np.testing.assert_allclose(temps, 1.3)
    with pytest.raises(ValueError, match="must be > 0"):
        C.fit_classwise_temperature(z, y, init=1.0, grid=np.array([0.0, 1.0]))


def reference_classwise(z, y, init, grid, n_bins=15):
    """Direct greedy search: full softmax for every candidate (slow, obviously right)."""
    temps = np.full(z.shape[1], init)

    def score(t):
        p = softmax(z, t)
        pred = p.argmax(1)
        return int((pred == y).sum()), float(C.binned_ece(p.max(1), pred == y, n_bins))

    cur_correct, cur_ece = score(temps)
    for k in range(z.shape[1]):
        best = None
        for g in grid:
            t = temps.copy()
            t[k] = g
            correct, ece = score(t)
            if correct >= cur_correct and (best is None or ece < best[1]):
                best = (g, ece, correct)
        if best is not None and best[1] < cur_ece - 1e-12:
            temps[k], cur_ece, cur_correct = best[0], best[1], best[2]
    return temps


def test_classwise_ts_matches_direct_greedy_search():
    z, y = miscalibrated(7, n=600, c=4)
    grid = np.array([0.5, 0.8, 1.0, 1.5, 2.5, 4.0], dtype=np.float32).astype(np.float64)
    fast = C.fit_classwise_temperature(z, y, init=1.0, grid=grid)
    ref = reference_classwise(z, y, 1.0, grid)
    np.testing.assert_allclose(fast, ref)
    assert not np.allclose(ref, 1.0)  # the search did move
