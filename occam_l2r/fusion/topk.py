"""Top-k candidate fusion without ground truth (L2R² appendix C.1, eq. 5).

Without a ground-truth prompt, the detector is prompted with each of the top-k classes
``i_1..i_k`` of the FULL model (ranked by FULL confidence), giving one FG and one BG view per
candidate. The FG model Φ is applied to each candidate's FG view, and only the entry of the
prompted class is kept:

    z_FG = (Φ(x_FG_{i_1})^(i_1), ..., Φ(x_FG_{i_k})^(i_k)),   likewise z_BG with Ψ,

and ``z_Full = (z^(i_1), ..., z^(i_k))``. The fused prediction is ``i_ℓ`` with
``ℓ = argmax_j`` of ``z_Full + z_FG`` (2-way) or ``z_Full + z_FG + z_BG`` (3-way); averaging
does not change the argmax. Ties go to the higher-ranked candidate.

The FG/BG logits files hold one row per (sample, candidate): the same id repeated, with the
prompted class in the ``candidates`` field of :class:`occam_l2r.logits.LogitsFile`. A candidate
whose detection was empty has its row flagged ``fallback``: its FG and BG are the full image
(the footnote of C.1), so the row is used as it is, and it counts as an empty candidate. The
candidates must be the top-k of the same FULL run that prompted the candidate store (``fuse``'s
``topk.candidates_from``); a (sample, candidate) row absent from the FG/BG files (the store was
prompted from another FULL run, fewer candidates were exported than ``k``, or an older export
dropped empty candidates) takes FULL's logit of its class and counts as empty: never silently,
:attr:`TopKResult.missing` counts them, a warning names them, and ``fuse`` reports them per
split (:func:`missing_message`). A sample whose candidates are all empty had no detection at
all: with ``fallback_to_full`` it gets FULL's prediction (L2R² §3.1).

:func:`choose_k` picks ``k`` on validation (the caption of Figure 11);
:func:`nonempty_candidates` counts Figure 11's non-empty candidates per image (plotted by
:func:`occam_l2r.reporting.figures.plot_nonempty_histogram`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from occam_l2r.logits import LogitsFile


@dataclass
class TopKResult:
    """Predictions of every top-k variant; ``candidates`` holds ``i_1..i_k`` per sample.

    Attributes:
        ids, labels: the samples (FULL's order).
        candidates: ``(N, k)`` the top-k classes of FULL, best first.
        preds: variant (``FULL``, ``FG``, ``FULL+FG``, ``BG``, ``FULL+FG+BG``) -> ``(N,)``.
        empty: ``(N, k)`` candidates without a detection (flagged or missing rows).
        fallback: ``(N,)`` samples whose ``k`` candidates are all empty.
        missing: number of (sample, candidate) rows absent from the FG/BG files.
    """

    ids: np.ndarray
    labels: np.ndarray
    candidates: np.ndarray  # (N, k)
    preds: dict[str, np.ndarray]
    empty: np.ndarray | None = None
    fallback: np.ndarray | None = None
    missing: int = 0


def topk_candidates(full_logits: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` classes of highest FULL logit per row, best first (ties: lower class first)."""
    if not 1 <= k <= full_logits.shape[1]:
        raise ValueError(f"k must be in [1, {full_logits.shape[1]}], got {k}")
    return np.argsort(-full_logits, axis=1, kind="stable")[:, :k]


def _check_prompted(full: LogitsFile, prompted: LogitsFile, name: str) -> None:
    if (prompted.candidates < 0).all():
        raise ValueError(
            f"{name} logits file ({prompted.run}/{prompted.view}/{prompted.split}) carries no "
            "candidate class (all -1); export the top-k candidate-prompted views with `predict`"
        )
    if prompted.num_classes != full.num_classes:
        raise ValueError(
            f"class counts differ: FULL has {full.num_classes}, {name} has {prompted.num_classes}"
        )


def gather_candidate_logits(
    full: LogitsFile, prompted: LogitsFile, cand: np.ndarray, name: str = "FG"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Eq. 5: entry ``i_j`` of the logits of the view prompted with candidate ``i_j``.

    Returns:
        The ``(N, k)`` entries, the ``(N, k)`` empty candidates (a row flagged ``fallback``, or
        no row: then FULL's entry ``z^(i_j)`` stands in) and the number of missing rows.

    Raises:
        ValueError: ``prompted`` carries no candidate index, or another class count.
    """
    _check_prompted(full, prompted, name)
    rows = {
        (i, int(c)): r
        for r, (i, c) in enumerate(zip(prompted.ids, prompted.candidates, strict=True))
    }
    n, k = cand.shape
    out = np.empty((n, k), dtype=np.float64)
    empty = np.zeros((n, k), dtype=bool)
    missing = []
    for r in range(n):
        sid = full.ids[r]
        for j in range(k):
            c = int(cand[r, j])
            row = rows.get((sid, c))
            if row is None:
                missing.append((str(sid), c))
                out[r, j], empty[r, j] = full.logits[r, c], True
            else:
                out[r, j], empty[r, j] = prompted.logits[row, c], bool(prompted.fallback[row])
    if missing:
        warnings.warn(
            f"{name} logits {prompted.run} lack {len(missing)} (sample, candidate) rows for "
            f"top-{k} fusion with FULL {full.run} (first: {missing[:3]}): {_MISSING_CAUSES}. "
            "They count as empty candidates and take FULL's logit.",
            stacklevel=2,
        )
    return out, empty, len(missing)


_MISSING_CAUSES = (
    "the candidate store was prompted from another FULL run than the one fused "
    "(`topk.candidates_from`), fewer candidates were exported than k, or an older export "
    "dropped empty candidates"
)


def missing_message(label: str, counts: dict[str, int]) -> str:
    """The notice of (sample, candidate) rows that FULL's logit stood in for.

    Args:
        label: the cells (``FULL+FG_C_topk+BG_S_topk seed1``).
        counts: where (``val k=3``, a split and a number of candidates) -> missing rows.
    """
    where = ", ".join(f"{key}: {n}" for key, n in counts.items() if n)
    return (
        f"top-k {label}: (sample, candidate) rows missing from the FG/BG logits files took "
        f"FULL's logit ({where}): {_MISSING_CAUSES}"
    )


def topk_fusion(
    full: LogitsFile,
    fg: LogitsFile,
    bg: LogitsFile | None = None,
    k: int = 3,
    fallback_to_full: bool = False,
) -> TopKResult:
    """FULL, FG, BG and their 2-/3-way fusions over the top-``k`` FULL candidates (eq. 5).

    Args:
        full: FULL logits, one row per sample.
        fg, bg: candidate-prompted logits, one row per (sample, candidate).
        k: the number of candidates.
        fallback_to_full: a sample whose ``k`` candidates are all empty gets FULL's prediction
            in every variant (L2R² §3.1).

    Returns:
        A :class:`TopKResult` with predictions ``FULL``, ``FG``, ``FULL+FG`` and, with ``bg``,
        ``BG`` and ``FULL+FG+BG``.
    """
    cand = topk_candidates(full.logits, k)
    rows = np.arange(len(cand))[:, None]
    z_full = full.logits[rows, cand].astype(np.float64)
    z_fg, empty, missing = gather_candidate_logits(full, fg, cand, "FG")

    def pick(z: np.ndarray) -> np.ndarray:
        return cand[np.arange(len(cand)), z.argmax(axis=1)]

    preds = {"FULL": pick(z_full), "FG": pick(z_fg), "FULL+FG": pick((z_full + z_fg) / 2)}
    if bg is not None:
        z_bg, empty_bg, missing_bg = gather_candidate_logits(full, bg, cand, "BG")
        empty, missing = empty | empty_bg, missing + missing_bg
        preds["BG"] = pick(z_bg)
        preds["FULL+FG+BG"] = pick((z_full + z_fg + z_bg) / 3)
    fallback = empty.all(axis=1)
    if fallback_to_full:
        for v in preds:
            preds[v] = np.where(fallback, cand[:, 0], preds[v])
    return TopKResult(full.ids, full.labels, cand, preds, empty, fallback, missing)


def exported_k(prompted: LogitsFile) -> int:
    """The number of candidates exported per sample (the most rows of one sample id)."""
    if len(prompted.ids) == 0:
        return 0
    return int(np.unique(prompted.ids, return_counts=True)[1].max())


def choose_k(
    ks: list[int], score_of: Callable[[int], dict[str, float]], variants: list[str]
) -> tuple[dict[str, int], dict[str, dict[int, float]]]:
    """The ``k`` of each variant with the best validation score (ties: the smallest ``k``).

    Args:
        ks: the candidate counts to try (ascending order is not required).
        score_of: ``k`` -> validation score of every variant at that ``k``.
        variants: the variants to choose for.

    Returns:
        variant -> chosen ``k``, and variant -> (``k`` -> validation score).
    """
    scores: dict[str, dict[int, float]] = {v: {} for v in variants}
    for k in sorted(set(ks)):
        for v, value in score_of(k).items():
            if v in scores:
                scores[v][k] = value
    chosen = {}
    for v, by_k in scores.items():
        best = max(by_k.values())
        chosen[v] = min(k for k, s in by_k.items() if s >= best - 1e-9)
    return chosen, scores


def nonempty_candidates(prompted: LogitsFile) -> np.ndarray:
    """Per sample id, the number of candidates with a detection (rows not flagged fallback).

    Rows of empty candidates that an older export dropped are absent, so they are not counted
    either.
    """
    ids = prompted.ids[~np.asarray(prompted.fallback, bool)]
    counts = dict(zip(*np.unique(ids, return_counts=True), strict=True))
    return np.array([counts.get(i, 0) for i in np.unique(prompted.ids)], dtype=np.int64)
