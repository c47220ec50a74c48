"""Interpretability of fusion: per-sample reports and the weighted-logits weights (Figure 8's data).

- :func:`sample_report`: one row per sample with both inputs' predictions and confidences,
  the fused prediction and which input decided it.
- :func:`weights_table`: the per-class weights ``w1, w2`` of the weighted-logits head, as a
  CSV-ready table (plotted by :func:`occam_l2r.reporting.figures.plot_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from occam_l2r.fusion.fallback import FALLBACK_CHOSEN
from occam_l2r.fusion.inputs import LogitsPair
from occam_l2r.fusion.methods import FusionOutput, predict_confidence


def _names(idx: np.ndarray, class_names: Sequence[str] | None) -> np.ndarray:
    if not class_names:
        return idx.astype(str)
    lookup = np.asarray(list(class_names) + ["?"], dtype=object)
    return lookup[np.where((idx >= 0) & (idx < len(class_names)), idx, -1)]


def sample_report(
    data: LogitsPair,
    out: FusionOutput,
    name1: str = "input1",
    name2: str = "input2",
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-sample report of one fused split.

    ``decided_by`` is the input whose choice the fusion took (selection methods: max conf,
    threshold, oracle). For combining methods (averages, learnt heads) it is the input whose own
    prediction equals the fused one: ``both`` when they agree, ``neither`` when the combination
    predicts a third class. A sample that fell back to the FULL model (``fallback``) says
    ``FULL (fallback)``.
    """
    y1, p1 = predict_confidence(data.z1)
    y2, p2 = predict_confidence(data.z2)
    combined = np.where(
        (out.pred == y1) & (out.pred == y2),
        "both",
        np.where(out.pred == y1, name1, np.where(out.pred == y2, name2, "neither")),
    )
    decided = np.select(
        [out.chosen == FALLBACK_CHOSEN, out.chosen == 0, out.chosen == 1],
        ["FULL (fallback)", name1, name2],
        combined,
    )
    return pd.DataFrame(
        {
            "id": data.ids,
            "group": data.groups,
            "fallback": data.fallback,
            "label": data.labels,
            "label_name": _names(data.labels, class_names),
            f"pred_{name1}": y1,
            f"conf_{name1}": p1,
            f"pred_{name2}": y2,
            f"conf_{name2}": p2,
            "fused_pred": out.pred,
            "fused_name": _names(out.pred, class_names),
            "fused_conf": out.conf,
            "decided_by": decided,
            "correct": out.pred == data.labels,
        }
    )


def weights_table(
    w1: np.ndarray, w2: np.ndarray, class_names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Per-class weights of the weighted-logits head, with the share of input 1."""
    w1, w2 = np.asarray(w1, np.float64), np.asarray(w2, np.float64)
    if w1.shape != w2.shape:
        raise ValueError(f"w1 and w2 must have the same shape, got {w1.shape} and {w2.shape}")
    denom = np.abs(w1) + np.abs(w2)
    share = np.divide(np.abs(w1), denom, out=np.full_like(w1, 0.5), where=denom > 0)
    idx = np.arange(len(w1))
    return pd.DataFrame(
        {"class": idx, "name": _names(idx, class_names), "w1": w1, "w2": w2, "share1": share}
    )
