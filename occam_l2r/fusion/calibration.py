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

from occam_l2r.logits import row_blocks


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, max_iter: int = 100, init: float = 1.0
) -> float:
    """Temperature ``T`` minimising the cross entropy of ``softmax(logits / T)``.

    The loss and its gradient in ``log T`` (``mean(z_y / T - sum_k p_k z_k / T)``) are summed
    over blocks of rows in float64 (:func:`occam_l2r.logits.row_blocks`): no ``N x C`` copy of
    the logits, whatever their dtype (float16/float32, in memory or mapped), and none per step.

    Args:
        logits: ``(N, C)`` logits of one model on the validation split.
        labels: ``(N,)`` class indices.
        max_iter: L-BFGS iterations.
        init: starting temperature.

    Returns:
        The fitted temperature (a positive float).
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    shape = tuple(np.shape(logits))
    if len(shape) != 2 or shape[0] == 0 or len(y) != shape[0]:
        raise ValueError(
            f"fit_temperature needs (N, C) logits and N labels with N > 0; got logits "
            f"{shape} and {len(y)} labels"
        )
    if (y < 0).any() or (y >= shape[1]).any():
        raise ValueError(
            f"labels must lie in [0, {shape[1]}) to fit a temperature; got min {int(y.min())}, "
            f"max {int(y.max())}. Unlabelled samples (-1) cannot be used for calibration."
        )
    blocks = row_blocks(shape[0], shape[1])
    single = len(blocks) == 1  # a small split: one float64 copy for the whole fit
    held = torch.as_tensor(np.asarray(logits, np.float64)) if single else None
    log_t = torch.tensor([float(np.log(init))], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        with torch.no_grad():
            inv_t = torch.exp(-log_t.detach())
            loss = torch.zeros((), dtype=torch.float64)
            grad = torch.zeros((), dtype=torch.float64)
            for rows in blocks:
                z = held if single else torch.as_tensor(np.asarray(logits[rows], np.float64))
                s = z * inv_t
                logp = torch.log_softmax(s, dim=1)
                s_y = s.gather(1, y[rows, None])[:, 0]
                loss -= logp.gather(1, y[rows, None]).sum()
                # d loss_i / d log T = s_y - sum_k p_k s_k
                grad += (s_y - (logp.exp() * s).sum(dim=1)).sum()
            log_t.grad = (grad / shape[0]).reshape(1)
        return loss / shape[0]

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


def _top2(st: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices and values of the two largest entries of each COLUMN of ``st`` (classes x rows;
    ties: lower index first, as a stable sort of ``-s`` gives): two argmaxes, no sort."""
    cols = np.arange(st.shape[1])
    i1 = st.argmax(axis=0)
    v1 = st[i1, cols]
    if len(st) < 2:
        return i1, v1, i1, np.full_like(v1, -np.inf)
    rest = st.copy()
    rest[i1, cols] = -np.inf
    i2 = rest.argmax(axis=0)
    return i1, v1, i2, st[i2, cols]


def fit_classwise_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    init: float | None = None,
    grid: np.ndarray | None = None,
    passes: int = 1,
    n_bins: int = 15,
    block_rows: int = 2**16,
) -> np.ndarray:
    """Class-wise temperatures ``T_1..T_C`` by greedy grid search (eq. 3, Frenkel & Goldberger).

    Starting from one temperature for every class (``init``, by default the NLL-optimal scalar
    temperature), each class in turn tries every value of ``grid`` for its own temperature and
    keeps the one with the lowest validation ECE among those that do not lower the validation
    accuracy; ``passes`` sweeps over all classes. Each candidate is scored in ``O(N)`` by
    updating one column of the scaled logits.

    Vectorised: the scaled logits are held transposed (classes x rows, one working float32
    copy), so a class's column is contiguous; all candidates of a class are scored at once as a
    ``G x rows`` block (its prediction, confidence and ECE bins), in blocks of ``block_rows``
    rows; the top-2 bookkeeping uses argmaxes, not sorts. Same arithmetic as the per-row
    formulation, so the same temperatures.

    Args:
        logits: ``(N, C)`` validation logits.
        labels: ``(N,)`` validation labels.
        init: starting temperature for all classes (default: :func:`fit_temperature`).
        grid: candidate temperatures (default ``init * geomspace(1/4, 4, 25)``).
        passes: number of sweeps over the classes.
        n_bins: ECE bins.
        block_rows: rows scored at a time (bounds the ``G x rows`` temporaries).

    Returns:
        Temperatures ``(C,)``; validation accuracy with them is at least that with ``init``.
    """
    y = np.asarray(labels, dtype=np.int64)
    n, c = np.shape(logits)
    t0 = fit_temperature(logits, y) if init is None else float(init)
    grid = t0 * np.geomspace(0.25, 4.0, 25) if grid is None else np.asarray(grid, np.float64)
    grid = grid.astype(np.float32)
    if (grid <= 0).any():
        raise ValueError(f"temperatures must be > 0; the grid holds {grid[grid <= 0][:5]}")
    g_count = len(grid)
    zt = np.empty((c, n), np.float32)  # the logits, transposed
    for rows in row_blocks(n, c, itemsize=4):
        zt[:, rows] = np.asarray(logits[rows], np.float32).T
    temps = np.full(c, t0)
    st = zt / np.float32(t0)
    lse = np.logaddexp.reduce(st, axis=0)
    i1, v1, i2, v2 = _top2(st)
    n_correct = int((i1 == y).sum())
    cur_ece = float(binned_ece(np.exp(v1 - lse), i1 == y, n_bins))
    offsets = (np.arange(g_count) * (n_bins + 1))[:, None]
    size = g_count * (n_bins + 1)
    blocks = [slice(lo, min(lo + block_rows, n)) for lo in range(0, n, block_rows)]
    for _ in range(passes):
        for k in range(c):
            sk = st[k]
            top_k = i1 == k
            m_ex = np.where(top_k, v2, v1)
            idx_ex = np.where(top_k, i2, i1)
            # log-sum-exp over the other classes; exact where class k dominates the row
            pk = np.exp(sk - lse)
            lse_ex = lse + np.log1p(-np.minimum(pk, 0.5))
            dom = np.flatnonzero(pk >= 0.5)
            if len(dom):
                other = np.delete(st[:, dom], k, axis=0)
                lse_ex[dom] = np.logaddexp.reduce(other, axis=0) if c > 1 else -np.inf
            # conf = exp(max(new, m_ex) - logsumexp); with a = sum_{j != k} exp(s_j - m_ex) >= 1
            # and e = exp(-|d|): conf = 1 / (a e + 1) if d > 0 (class k on top) else 1 / (a + e)
            a = np.exp(lse_ex - m_ex)
            right_k, right_ex = y == k, idx_ex == y
            cand_correct = np.zeros(g_count, np.int64)
            diff = np.zeros(size)
            for rows in blocks:
                new = zt[k, rows][None, :] / grid[:, None]  # (G, rows)
                d = new - m_ex[None, rows]
                up = d > 0
                wins = up | ((d == 0) & (k < idx_ex[None, rows]))
                correct = np.where(wins, right_k[None, rows], right_ex[None, rows])
                e = np.exp(-np.abs(d))
                ar = a[None, rows]
                conf = 1.0 / np.where(up, ar * e + 1.0, ar + e)
                cand_correct += correct.sum(axis=1)
                # binned_ece's bins, candidates as rows (the same sums, in the same order)
                idx = np.minimum((conf * n_bins).astype(np.int64), n_bins) + offsets
                diff += np.bincount(idx.ravel(), weights=correct.ravel() - conf.ravel().astype(np.float64), minlength=size)  # fmt: skip
            cand_ece = np.abs(diff.reshape(g_count, n_bins + 1)).sum(axis=1) / max(n, 1)
            ok = cand_correct >= n_correct
            if not ok.any():
                continue
            g = int(np.flatnonzero(ok)[np.argmin(cand_ece[ok])])
            if cand_ece[g] >= cur_ece - 1e-12:
                continue
            temps[k] = float(grid[g])
            st[k] = zt[k] / grid[g]
            lse = np.logaddexp(lse_ex, st[k])
            touched = np.flatnonzero((i1 == k) | (i2 == k) | (st[k] >= v2))
            if len(touched):
                a1, b1, c1, d1 = _top2(st[:, touched])
                i1[touched], v1[touched], i2[touched], v2[touched] = a1, b1, c1, d1
            n_correct, cur_ece = int(cand_correct[g]), float(cand_ece[g])
    return temps
