"""Non-parametric fusion of two classifiers' logits (L2R² §3.3 and appendix B.3).

Every function here is pure: numpy arrays in, numpy arrays out, no Lightning and no state.
Inputs are two logits matrices ``z1, z2`` of shape ``(N, C)`` from models Φ1 and Φ2 (Φ1 is
the robust input, typically FG). Conventions shared by all functions:

- the prediction of one model is ``argmax_k z^(k)``; ties between classes go to the lowest class
  index (``numpy.argmax``);
- when the two inputs are equally confident, the first input (Φ1) decides;
- a :class:`FusionOutput` also says which input decided each sample (``chosen``: 0 for Φ1,
  1 for Φ2, -1 when the output is a combination of both).

The inputs may be float16 or float32, in memory or mapped from a logits file: every pass goes in
blocks of rows (:func:`occam_l2r.logits.row_blocks`), so a method holds ``O(N)`` per-sample values
and one block of ``C``-wide float64 rows, never an ``N x C`` float64 copy per input (only
:func:`ts_weighted_average` returns its ``N x C`` fused scores). The searches
(:func:`fit_threshold`, :func:`fit_alpha`) make no ``N x C`` copy per candidate either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occam_l2r.logits import row_blocks

#: the metrics of a split that selection and fitting can maximise.
METRICS = ("acc", "macro_acc")
#: two scores closer than this are a tie (accuracies are ratios of sample counts).
TIE_ATOL = 1e-9


@dataclass
class FusionOutput:
    """Fused predictions of one method on one split.

    Attributes:
        pred: predicted class per sample, int64 ``(N,)``.
        conf: confidence of the fused prediction, float ``(N,)``.
        chosen: which input decided (0: Φ1, 1: Φ2, -1: a combination of both), int8 ``(N,)``.
        probs: fused class scores ``(N, C)`` when the method defines them, else ``None``.
    """

    pred: np.ndarray
    conf: np.ndarray
    chosen: np.ndarray
    probs: np.ndarray | None = None


def softmax(z: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """Numerically stable softmax of ``z / temperature`` over the last axis.

    Args:
        z: logits ``(N, C)``.
        temperature: a scalar, or one temperature per class ``(C,)`` (class-wise scaling, eq. 3).
    """
    s = np.asarray(z, dtype=np.float64) / np.asarray(temperature, dtype=np.float64)
    s = s - s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


def predict_confidence(
    z: np.ndarray, temperature: float | np.ndarray = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Prediction ``ŷ = argmax_k z^(k)`` and its confidence ``p̂ = max_k σ(z/T)^(k)`` (computed
    in blocks of rows)."""
    n = len(z)
    pred, conf = np.zeros(n, np.int64), np.zeros(n, np.float64)
    for rows in row_blocks(n, z.shape[1]):
        p = softmax(z[rows], temperature)
        pred[rows] = p.argmax(axis=1)
        conf[rows] = p[np.arange(len(p)), pred[rows]]
    return pred, conf


def max_conf(
    z1: np.ndarray, z2: np.ndarray, t1: float | np.ndarray = 1.0, t2: float | np.ndarray = 1.0
) -> FusionOutput:
    """⊕max: the prediction of the more confident input (Φ1 on ties).

    With temperatures ``t1, t2`` this is the temperature-scaled variant (B.3 method 2);
    per-class temperature vectors give the class-wise scaled variant.
    """
    y1, p1 = predict_confidence(z1, t1)
    y2, p2 = predict_confidence(z2, t2)
    take2 = p2 > p1
    return FusionOutput(
        pred=np.where(take2, y2, y1), conf=np.where(take2, p2, p1), chosen=take2.astype(np.int8)
    )


def threshold(
    z1: np.ndarray,
    z2: np.ndarray,
    t: float,
    t1: float | np.ndarray = 1.0,
    t2: float | np.ndarray = 1.0,
) -> FusionOutput:
    """⊕R (robust prediction): ŷ1 if ``p̂1 > t`` (strict), otherwise the more confident input.

    A sample with ``p̂1 == t`` therefore falls back to max confidence.
    """
    y1, p1 = predict_confidence(z1, t1)
    y2, p2 = predict_confidence(z2, t2)
    take2 = (p1 <= t) & (p2 > p1)
    return FusionOutput(
        pred=np.where(take2, y2, y1), conf=np.where(take2, p2, p1), chosen=take2.astype(np.int8)
    )


def fit_threshold(
    z1: np.ndarray,
    z2: np.ndarray,
    labels: np.ndarray,
    t1: float | np.ndarray = 1.0,
    t2: float | np.ndarray = 1.0,
    metric: str = "acc",
) -> float:
    """The threshold ``t`` of :func:`threshold` that maximises ``metric`` on ``(z1, z2, labels)``.

    The metric only changes at the observed values of ``p̂1``, so the candidates are ``0``
    (always Φ1; equivalent to any ``0 < t < min p̂1``, as ``p̂1 >= 1/C``) and every distinct
    ``p̂1``. Ties go to the smallest ``t`` (the most weight on the robust input Φ1).

    Args:
        z1, z2: logits of Φ1 and Φ2 ``(N, C)``.
        labels: ``(N,)`` class indices (-1: unlabelled, never counted).
        t1, t2: temperatures of the inputs.
        metric: ``acc`` or ``macro_acc`` (a weighted accuracy, see :func:`metric_weights`).
    """
    y1, p1 = predict_confidence(z1, t1)
    y2, p2 = predict_confidence(z2, t2)
    labels = np.asarray(labels)
    w = metric_weights(labels, metric)
    c1 = (y1 == labels) * w
    cmax = np.where(p2 > p1, y2 == labels, y1 == labels) * w
    order = np.argsort(p1, kind="stable")
    ps, gain = p1[order], (cmax - c1)[order]
    # score(t) = sum(c1) + sum over samples with p1 <= t of (cmax - c1)
    cum = np.cumsum(gain)
    last = np.r_[ps[1:] != ps[:-1], True]  # last index of each run of equal p1 values
    cand_t = np.r_[0.0, ps[last]]
    cand_gain = np.r_[0.0, cum[last]]
    return float(cand_t[_first_best(cand_gain)])


def ts_weighted_average(
    z1: np.ndarray,
    z2: np.ndarray,
    alpha: float = 0.5,
    t1: float | np.ndarray = 1.0,
    t2: float | np.ndarray = 1.0,
) -> FusionOutput:
    """``α σ(z1/T1) + (1 - α) σ(z2/T2)``; ``α = 0.5`` is the temperature-scaled average."""
    probs = np.empty(np.shape(z1), np.float64)
    for rows in row_blocks(len(z1), probs.shape[1]):
        probs[rows] = alpha * softmax(z1[rows], t1) + (1.0 - alpha) * softmax(z2[rows], t2)
    pred = probs.argmax(axis=1)
    return FusionOutput(
        pred=pred.astype(np.int64),
        conf=probs[np.arange(len(pred)), pred],
        chosen=np.full(len(pred), -1, np.int8),
        probs=probs,
    )


def ts_average(
    z1: np.ndarray, z2: np.ndarray, t1: float | np.ndarray = 1.0, t2: float | np.ndarray = 1.0
) -> FusionOutput:
    """Temperature-scaled average ``(σ(z1/T1) + σ(z2/T2)) / 2`` (B.3 method 4)."""
    return ts_weighted_average(z1, z2, 0.5, t1, t2)


def fit_alpha(
    z1: np.ndarray,
    z2: np.ndarray,
    labels: np.ndarray,
    t1: float | np.ndarray = 1.0,
    t2: float | np.ndarray = 1.0,
    grid: int = 101,
    metric: str = "acc",
) -> float:
    """The ``α`` on ``linspace(0, 1, grid)`` maximising ``metric`` of the weighted average.

    Ties go to the ``α`` closest to 0.5 (the plain average), then to the smaller ``α``.

    Every candidate is scored in blocks of rows, on each row's few classes that can win for some
    ``α`` (:func:`_alpha_hits`): the same predictions as the argmax over all classes, without an
    ``N x C`` array per candidate.
    """
    if grid < 2:
        raise ValueError(f"alpha grid must have at least 2 points, got {grid}")
    labels = np.asarray(labels)
    w = metric_weights(labels, metric)
    alphas = np.linspace(0.0, 1.0, grid)
    scores = np.zeros(grid)
    for rows in row_blocks(len(z1), np.shape(z1)[1], 32 * 2**20):
        q1, q2 = softmax(z1[rows], t1), softmax(z2[rows], t2)
        scores += _alpha_hits(q1, q2, labels[rows], w[rows], alphas)
    best = np.flatnonzero(scores >= scores.max() - TIE_ATOL)
    return float(alphas[best[np.argmin(np.abs(alphas[best] - 0.5))]])


def _alpha_hits(
    q1: np.ndarray, q2: np.ndarray, labels: np.ndarray, w: np.ndarray, alphas: np.ndarray
) -> np.ndarray:
    """``sum_i w_i [argmax_k (α q1 + (1 - α) q2)_ik == y_i]`` for every ``α`` of ``alphas``.

    The score of class ``k`` is at most ``max(q1_k, q2_k)``, and for every ``α`` the best score
    is at least ``L``, the minimum over ``α`` of the better of the two classes ``argmax q1`` and
    ``argmax q2``. So only the classes with ``max(q1_k, q2_k) >= L`` can win: the row's top
    classes of ``max(q1, q2)``, kept in class order so that ties still go to the lowest class.
    Rows with more such classes than the widest subset are scored on all classes.
    """
    n, c = q1.shape
    hits = np.zeros(len(alphas))
    if n == 0:
        return hits
    r = np.arange(n)
    j1, j2 = q1.argmax(1), q2.argmax(1)
    x1, y1, x2, y2 = q1[r, j1], q2[r, j1], q1[r, j2], q2[r, j2]
    low = np.minimum(y2, x1)  # the envelope at alpha = 0 and 1
    den = (x1 - y1) - (x2 - y2)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = (y2 - y1) / den  # where the two lines meet
        inside = (den != 0) & (cross > 0) & (cross < 1)
        low = np.where(inside, np.minimum(low, y1 + cross * (x1 - y1)), low)
    can_win = np.maximum(q1, q2) >= low[:, None] - 1e-9  # never false for a class that wins
    count = can_win.sum(axis=1)  # >= 1: argmax q1 is always in
    todo = np.ones(n, bool)
    for m in (4, 16, 64, c):
        sel = np.flatnonzero(todo & (count <= m)) if m < c else np.flatnonzero(todo)
        if len(sel) == 0:
            continue
        todo[sel] = False
        if m < c:  # the row's classes that can win, in class order, padded with its first
            rr, cc = np.nonzero(can_win[sel])
            start = np.r_[0, np.cumsum(count[sel])[:-1]]
            idx = np.repeat(cc[start][:, None], m, axis=1)
            idx[rr, np.arange(len(rr)) - start[rr]] = cc
            rs = np.arange(len(sel))[:, None]
            s1, s2 = q1[sel][rs, idx], q2[sel][rs, idx]
            correct = idx == labels[sel][:, None]  # (rows, m): which subset column is the label
        else:
            s1, s2 = q1[sel], q2[sel]
            correct = np.arange(c)[None, :] == labels[sel][:, None]
        ws, rs1 = w[sel], np.arange(len(sel))
        for g, al in enumerate(alphas):
            best = (al * s1 + (1 - al) * s2).argmax(axis=1)
            hits[g] += (correct[rs1, best] * ws).sum()
        if m >= c:
            break
    return hits


def oracle(z1: np.ndarray, z2: np.ndarray, labels: np.ndarray) -> FusionOutput:
    """Oracle: correct if either input is correct (an upper bound, never a real prediction).

    The prediction is the label when Φ1 or Φ2 predicts it, otherwise ŷ1.
    """
    y1, p1 = predict_confidence(z1)
    y2, p2 = predict_confidence(z2)
    labels = np.asarray(labels)
    take2 = (y1 != labels) & (y2 == labels)
    return FusionOutput(
        pred=np.where(take2, y2, y1), conf=np.where(take2, p2, p1), chosen=take2.astype(np.int8)
    )


def tied_best(
    val_scores: dict[str, float], exclude: tuple[str, ...] = ("oracle",), atol: float = TIE_ATOL
) -> list[str]:
    """⊕*: every method whose validation score ties with the highest one, in the given order.

    Args:
        val_scores: method name -> validation metric (higher is better).
        exclude: methods that may not be selected (the oracle uses test labels).
        atol: scores closer than this to the best count as a tie.
    """
    candidates = {k: v for k, v in val_scores.items() if k not in exclude and np.isfinite(v)}
    if not candidates:
        raise ValueError(
            f"no method to select from: scores {val_scores}, excluded {exclude}. "
            "Evaluate at least one non-oracle method on the validation split."
        )
    top = max(candidates.values())
    return [k for k, v in candidates.items() if v >= top - atol]


def select_best(val_scores: dict[str, float], exclude: tuple[str, ...] = ("oracle",)) -> str:
    """⊕*: the method with the highest validation score (the first one listed on ties; use
    :func:`tied_best` to see the ties)."""
    return tied_best(val_scores, exclude)[0]


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of correct predictions."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((np.asarray(pred) == labels).mean())


def macro_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean of per-class accuracies over the classes PRESENT in ``labels``.

    Classes absent from a split (rare species in FungiTastic's val/test) are left out of the
    mean instead of counting as zero, as in the paper's appendix C.1.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    correct = (np.asarray(pred) == labels).astype(np.float64)
    n = labels.max() + 1
    hits = np.bincount(labels, weights=correct, minlength=n)
    counts = np.bincount(labels, minlength=n)
    present = counts > 0
    return float((hits[present] / counts[present]).mean())


def score(pred: np.ndarray, labels: np.ndarray, metric: str = "acc") -> float:
    """``acc`` or ``macro_acc`` (see :func:`macro_accuracy`) over the labelled samples."""
    labels = np.asarray(labels)
    known = labels >= 0
    if metric == "acc":
        return accuracy(np.asarray(pred)[known], labels[known])
    if metric == "macro_acc":
        return macro_accuracy(np.asarray(pred)[known], labels[known])
    raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")


def metric_weights(labels: np.ndarray, metric: str = "acc") -> np.ndarray:
    """Per-sample weights ``w`` with ``metric = sum_i w_i [pred_i == y_i]`` (0 for label -1).

    ``acc``: ``1 / N``; ``macro_acc``: ``1 / (n_y K)`` with ``n_y`` the count of the sample's
    class and ``K`` the number of classes present, so both are weighted accuracies.
    """
    labels = np.asarray(labels, dtype=np.int64)
    known = labels >= 0
    w = np.zeros(len(labels))
    if not known.any():
        return w
    if metric == "acc":
        w[known] = 1.0 / known.sum()
    elif metric == "macro_acc":
        counts = np.bincount(labels[known])
        w[known] = 1.0 / (counts[labels[known]] * (counts > 0).sum())
    else:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    return w


def _first_best(scores: np.ndarray) -> int:
    """Index of the first score within :data:`TIE_ATOL` of the maximum."""
    return int(np.flatnonzero(scores >= scores.max() - TIE_ATOL)[0])
