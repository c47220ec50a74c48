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
prompted class in the ``candidates`` field of :class:`occam_l2r.logits.LogitsFile`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occam_l2r.logits import LogitsFile


@dataclass
class TopKResult:
    """Predictions of every top-k variant; ``candidates`` holds ``i_1..i_k`` per sample."""

    ids: np.ndarray
    labels: np.ndarray
    candidates: np.ndarray  # (N, k)
    preds: dict[str, np.ndarray]


def topk_candidates(full_logits: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` classes of highest FULL logit per row, best first (ties: lower class first)."""
    if not 1 <= k <= full_logits.shape[1]:
        raise ValueError(f"k must be in [1, {full_logits.shape[1]}], got {k}")
    return np.argsort(-full_logits, axis=1, kind="stable")[:, :k]


def gather_candidate_logits(
    full: LogitsFile, prompted: LogitsFile, cand: np.ndarray, name: str = "FG"
) -> np.ndarray:
    """Eq. 5: entry ``i_j`` of the logits of the view prompted with candidate ``i_j``.

    Raises:
        ValueError: ``prompted`` carries no candidate index, or lacks a (sample, candidate) row.
    """
    if (prompted.candidates < 0).all():
        raise ValueError(
            f"{name} logits file ({prompted.run}/{prompted.view}/{prompted.split}) carries no "
            "candidate class (all -1); export the top-k candidate-prompted views with `predict`"
        )
    if prompted.num_classes != full.num_classes:
        raise ValueError(
            f"class counts differ: FULL has {full.num_classes}, {name} has {prompted.num_classes}"
        )
    rows = {
        (i, int(c)): r
        for r, (i, c) in enumerate(zip(prompted.ids, prompted.candidates, strict=True))
    }
    n, k = cand.shape
    out = np.empty((n, k), dtype=np.float64)
    missing = []
    for r in range(n):
        sid = full.ids[r]
        for j in range(k):
            row = rows.get((sid, int(cand[r, j])))
            if row is None:
                missing.append((str(sid), int(cand[r, j])))
                continue
            out[r, j] = prompted.logits[row, cand[r, j]]
    if missing:
        raise ValueError(
            f"{name} logits lack {len(missing)} (sample, candidate) rows needed for top-{k} "
            f"fusion (first: {missing[:3]}); export the candidate-prompted views for the top-{k} "
            "FULL predictions of every sample"
        )
    return out


def topk_fusion(
    full: LogitsFile, fg: LogitsFile, bg: LogitsFile | None = None, k: int = 3
) -> TopKResult:
    """FULL, FG, BG and their 2-/3-way fusions over the top-``k`` FULL candidates (eq. 5).

    Returns:
        A :class:`TopKResult` with predictions ``FULL``, ``FG``, ``FULL+FG`` and, with ``bg``,
        ``BG`` and ``FULL+FG+BG``.
    """
    cand = topk_candidates(full.logits, k)
    rows = np.arange(len(cand))[:, None]
    z_full = full.logits[rows, cand].astype(np.float64)
    z_fg = gather_candidate_logits(full, fg, cand, "FG")

    def pick(z: np.ndarray) -> np.ndarray:
        return cand[np.arange(len(cand)), z.argmax(axis=1)]

    preds = {"FULL": pick(z_full), "FG": pick(z_fg), "FULL+FG": pick((z_full + z_fg) / 2)}
    if bg is not None:
        z_bg = gather_candidate_logits(full, bg, cand, "BG")
        preds["BG"] = pick(z_bg)
        preds["FULL+FG+BG"] = pick((z_full + z_fg + z_bg) / 3)
    return TopKResult(ids=full.ids, labels=full.labels, candidates=cand, preds=preds)
