"""Interpretability of fusion: per-sample reports and the weighted-logits weights (Figure 8).

- :func:`sample_report`: one row per sample with both inputs' predictions and confidences,
  the fused prediction and which input decided it.
- :func:`weights_table` / :func:`plot_weights`: the per-class weights ``w1, w2`` of the
  weighted-logits head, as a CSV-ready table and a plot like the paper's Figure 8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

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
    predicts a third class.
    """
    y1, p1 = predict_confidence(data.z1)
    y2, p2 = predict_confidence(data.z2)
    decided = np.where(
        out.chosen == 0,
        name1,
        np.where(
            out.chosen == 1,
            name2,
            np.where(
                (out.pred == y1) & (out.pred == y2),
                "both",
                np.where(out.pred == y1, name1, np.where(out.pred == y2, name2, "neither")),
            ),
        ),
    )
    return pd.DataFrame(
        {
            "id": data.ids,
            "group": data.groups,
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


def plot_weights(
    table: pd.DataFrame, path: str | Path, name1: str = "FG", name2: str = "BG"
) -> Path:
    """Figure 8: per-class weights of both inputs, classes sorted by ``w1 - w2``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.assign(diff=table.w1 - table.w2).sort_values("diff", ascending=False)
    x = np.arange(len(t))
    frac2 = float((t.w2 > t.w1).mean()) if len(t) else 0.0
    fig, ax = plt.subplots(figsize=(max(6.0, min(20.0, 0.06 * len(t) + 4)), 3.5))
    ax.bar(x, t.w1, width=1.0, alpha=0.7, label=f"w ({name1})")
    ax.bar(x, t.w2, width=1.0, alpha=0.7, label=f"w ({name2})")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("class (sorted by w1 - w2)")
    ax.set_ylabel("weight")
    ax.set_title(f"Weighted logits: {name2} weighs more for {100 * frac2:.1f}% of classes")
    if len(t) <= 40:
        ax.set_xticks(x, t["name"], rotation=90, fontsize=7)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
