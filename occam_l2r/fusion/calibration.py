"""Calibration for confidence fusion: temperature scaling and class-wise temperature scaling.

- :func:`fit_temperature`: one ``T > 0`` minimising the NLL of ``softmax(z / T)`` on the
  validation split (Guo et al.; L2R² appendix B.3 eq. 2), by L-BFGS on ``log T``.
- :func:`fit_classwise_temperature`: one temperature per class (eq. 3, Frenkel & Goldberger),
  a greedy grid search that lowers the ECE on validation and never lowers validation accuracy.
- :func:`expected_calibration_error`: ECE of logits/probabilities through torchmetrics'
  ``MulticlassCalibrationError``; :func:`binned_ece` is the same L1 binning on precomputed
  confidences (numpy, vectorised over candidates) used inside the grid search.
"""

from __future__ import annotations

import numpy as np
import torch


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, max_iter: int = 100, init: float = 1.0
) -> float:
    """Temperature ``T`` minimising the cross entropy of ``softmax(logits / T)``.

    Args:
        logits: ``(N, C)`` logits of one model on the validation split.
        labels: ``(N,)`` class indices.
        max_iter: L-BFGS iterations.
        init: starting temperature.

    Returns:
        The fitted temperature (a positive float).
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if z.ndim != 2 or len(z) == 0 or len(y) != len(z):
        raise ValueError(
            f"fit_temperature needs (N, C) logits and N labels with N > 0; got logits "
            f"{tuple(z.shape)} and {len(y)} labels"
        )
    if (y < 0).any() or (y >= z.shape[1]).any():
        raise ValueError(
            f"labels must lie in [0, {z.shape[1]}) to fit a temperature; got min {int(y.min())}, "
            f"max {int(y.max())}. Unlabelled samples (-1) cannot be used for calibration."
        )
    log_t = torch.tensor([float(np.log(init))], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    if not np.isfinite(t) or t <= 0:
        raise RuntimeError(f"temperature fit diverged (T = {t}); check the logits for outliers")
    return t


def expected_calibration_error(
    logits_or_probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, probs: bool = False
) -> float:
    """Top-1 L1 ECE from torchmetrics ``MulticlassCalibrationError``.

    Args:
        logits_or_probs: ``(N, C)`` logits (softmax applied here) or probabilities.
        labels: ``(N,)`` class indices.
        n_bins: number of equal-width confidence bins.
        probs: ``True`` when the input already holds probabilities.
    """
    x = torch.as_tensor(np.asarray(logits_or_probs), dtype=torch.float64)
    p = x if probs else torch.softmax(x, dim=1)
    # torchmetrics (and lightning_utilities with it) loads only when an ECE is asked for
    from torchmetrics.classification import MulticlassCalibrationError

    metric = MulticlassCalibrationError(num_classes=p.shape[1], n_bins=n_bins, norm="l1")
    return float(metric(p, torch.as_tensor(np.asarray(labels), dtype=torch.int64)))


def binned_ece(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """L1 ECE with torchmetrics' binning, for one or many candidate columns at once.

    Args:
        conf: confidences ``(N,)`` or ``(N, G)`` (``G`` candidates).
        correct: 0/1 correctness of the same shape.
        n_bins: number of equal-width bins on ``[0, 1]``.

    Returns:
        ECE as a float array of shape ``()`` or ``(G,)``.
    """
    conf = np.asarray(conf)
    squeeze = conf.ndim == 1
    conf = conf.reshape(len(conf), -1)
    correct = np.asarray(correct).reshape(conf.shape)
    n, g = conf.shape
    # torch.bucketize(conf, linspace(0, 1, n_bins + 1), right=True) - 1: bin floor(conf * n_bins);
    # a confidence of exactly 1.0 lands in an extra bin n_bins
    idx = np.minimum((conf * n_bins).astype(np.int64), n_bins)
    flat = (idx + np.arange(g) * (n_bins + 1)).ravel()
    size = g * (n_bins + 1)
    weights = correct.ravel().astype(np.float64) - conf.ravel()
    diff = np.bincount(flat, weights=weights, minlength=size)
    ece = np.abs(diff.reshape(g, n_bins + 1)).sum(axis=1) / max(n, 1)
    return ece[0] if squeeze else ece


def _top2(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices and values of the two largest entries of each row (ties: lower index first)."""
    order = np.argsort(-s, axis=1, kind="stable")[:, :2]
    rows = np.arange(len(s))[:, None]
    vals = s[rows, order]
    return order[:, 0], vals[:, 0], order[:, 1], vals[:, 1]


def fit_classwise_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    init: float | None = None,
    grid: np.ndarray | None = None,
    passes: int = 1,
    n_bins: int = 15,
) -> np.ndarray:
    """Class-wise temperatures ``T_1..T_C`` by greedy grid search (eq. 3, Frenkel & Goldberger).

    Starting from one temperature for every class (``init``, by default the NLL-optimal scalar
    temperature), each class in turn tries every value of ``grid`` for its own temperature and
    keeps the one with the lowest validation ECE among those that do not lower the validation
    accuracy; ``passes`` sweeps over all classes. Each candidate is scored in ``O(N)`` by
    updating one column of the scaled logits.

    Args:
        logits: ``(N, C)`` validation logits.
        labels: ``(N,)`` validation labels.
        init: starting temperature for all classes (default: :func:`fit_temperature`).
        grid: candidate temperatures (default ``init * geomspace(1/4, 4, 25)``).
        passes: number of sweeps over the classes.
        n_bins: ECE bins.

    Returns:
        Temperatures ``(C,)``; validation accuracy with them is at least that with ``init``.
    """
    z = np.asarray(logits, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    n, c = z.shape
    t0 = fit_temperature(z, y) if init is None else float(init)
    grid = t0 * np.geomspace(0.25, 4.0, 25) if grid is None else np.asarray(grid, np.float64)
    grid = grid.astype(np.float32)
    if (grid <= 0).any():
        raise ValueError(f"temperatures must be > 0; the grid holds {grid[grid <= 0][:5]}")
    temps = np.full(c, t0)
    s = z / np.float32(t0)
    lse = np.logaddexp.reduce(s, axis=1)
    i1, v1, i2, v2 = _top2(s)
    n_correct = int((i1 == y).sum())
    cur_ece = float(binned_ece(np.exp(v1 - lse), i1 == y, n_bins))
    for _ in range(passes):
        for k in range(c):
            sk = s[:, k]
            m_ex = np.where(i1 == k, v2, v1)
            idx_ex = np.where(i1 == k, i2, i1)
            # log-sum-exp over the other classes; exact where class k dominates the row
            pk = np.exp(sk - lse)
            lse_ex = lse + np.log1p(-np.minimum(pk, 0.5))
            dom = np.flatnonzero(pk >= 0.5)
            if len(dom):
                other = np.delete(s[dom], k, axis=1)
                lse_ex[dom] = np.logaddexp.reduce(other, axis=1) if c > 1 else -np.inf
            new = z[:, k : k + 1] / grid[None, :]  # (N, G)
            d = new - m_ex[:, None]
            wins = (d > 0) | ((d == 0) & (k < idx_ex[:, None]))
            cand_pred = np.where(wins, k, idx_ex[:, None])
            # conf = exp(max(new, m_ex) - logsumexp); with a = sum_{j != k} exp(s_j - m_ex) >= 1
            # and e = exp(-|d|): conf = 1 / (a e + 1) if d > 0 (class k on top) else 1 / (a + e)
            a = np.exp(lse_ex - m_ex)[:, None]
            e = np.exp(-np.abs(d))
            conf = np.where(d > 0, 1.0 / (a * e + 1.0), 1.0 / (a + e))
            correct = cand_pred == y[:, None]
            cand_correct = correct.sum(axis=0)
            cand_ece = binned_ece(conf, correct, n_bins)
            ok = cand_correct >= n_correct
            if not ok.any():
                continue
            g = int(np.flatnonzero(ok)[np.argmin(cand_ece[ok])])
            if cand_ece[g] >= cur_ece - 1e-12:
                continue
            temps[k] = float(grid[g])
            s[:, k] = new[:, g]
            lse = np.logaddexp(lse_ex, s[:, k])
            touched = np.flatnonzero((i1 == k) | (i2 == k) | (s[:, k] >= v2))
            if len(touched):
                a, b, cc, d = _top2(s[touched])
                i1[touched], v1[touched], i2[touched], v2[touched] = a, b, cc, d
            n_correct, cur_ece = int(cand_correct[g]), float(cand_ece[g])
    return temps
