"""Ablation tables: the paper's Table 9 (every method, mean ± std over seeds) and Table 1.

Both are built from the long table of cell results (one row per kind, name, method, seed,
split, metric) that :mod:`occam_l2r.fusion.runner` collects, and written as Markdown + CSV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from occam_l2r.fusion.fusers import METHOD_LABELS
from occam_l2r.fusion.methods import select_best

#: Table-1 operator symbols of the methods.
SYMBOLS: dict[str, str] = {
    "best": "⊕*",
    "max_conf": "⊕max",
    "max_conf_ts": "⊕maxTS",
    "max_conf_cts": "⊕maxCTS",
    "threshold": "⊕R",
    "ts_average": "⊕avg",
    "ts_weighted_average": "⊕wavg",
    "concat_fc": "⊕FC",
    "weighted_logits": "⊕WL",
    "oracle": "⊕oracle",
}

METRIC_LABELS = {"acc": "acc", "macro_acc": "macro acc"}


def _std(x: pd.Series) -> float:
    return float(np.std(x.to_numpy(), ddof=1)) if len(x) > 1 else 0.0


def aggregate(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (sample std, 0 for one seed) and seed count per (kind, name, method, split, metric)."""
    keys = ["kind", "name", "method", "split", "metric"]
    g = long.groupby(keys, sort=False)["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.agg(_std), "n_seeds": g.size()}).reset_index()


def best_methods(agg: pd.DataFrame, val_split: str, metric: str) -> dict[str, str]:
    """⊕*: per fused pair, the non-oracle method with the highest mean validation ``metric``."""
    out: dict[str, str] = {}
    fused = agg[agg.kind.isin(["pair", "ensemble"]) & (agg.method != "oracle")]
    sel = fused[(fused.split == val_split) & (fused.metric == metric)]
    for name, rows in sel.groupby("name", sort=False):
        scores = dict(zip(rows.method, rows["mean"], strict=True))
        if any(np.isfinite(v) for v in scores.values()):
            out[str(name)] = select_best(scores)
    return out


def _fmt(mean: float, std: float) -> str:
    return "–" if not np.isfinite(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _display(kind: str, name: str) -> str:
    if kind == "ensemble":
        return f"{name.removesuffix('x2')} × 2"
    return name.replace("+", " ⊕ ")


def table9(
    agg: pd.DataFrame, splits: list[str], best: dict[str, str], label_of: dict[str, str]
) -> tuple[pd.DataFrame, str]:
    """Table 9: rows = single models, then per pair every method, ``Best - X`` and ``Oracle``.

    Returns:
        The wide table (for CSV) and its Markdown.
    """
    cols = [(s, m) for s in splits for m in ("acc", "macro_acc")]
    header = ["model"] + [f"{s} {METRIC_LABELS[m]}" for s, m in cols]
    idx = agg.set_index(["kind", "name", "method", "split", "metric"])

    def cells(kind: str, name: str, method: str) -> list[str]:
        out = []
        for s, m in cols:
            key = (kind, name, method, s, m)
            out.append(_fmt(idx.loc[key, "mean"], idx.loc[key, "std"]) if key in idx.index else "–")
        return out

    rows: list[list[str]] = []
    names = agg[["kind", "name"]].drop_duplicates()
    for kind in ("single", "metadata"):
        for name in names[names.kind == kind].name:
            method = agg[(agg.kind == kind) & (agg.name == name)].method.iloc[0]
            rows.append([name] + cells(kind, name, method))
    for kind in ("pair", "ensemble"):
        for name in names[names.kind == kind].name:
            rows.append([f"**{_display(kind, name)}**"] + [""] * len(cols))
            methods = [m for m in label_of if m != "oracle"]
            present = set(agg[(agg.kind == kind) & (agg.name == name)].method)
            for m in methods:
                if m in present:
                    rows.append([label_of[m]] + cells(kind, name, m))
            if name in best:
                rows.append([f"Best - {label_of[best[name]]}"] + cells(kind, name, best[name]))
            if "oracle" in present:
                rows.append([label_of["oracle"]] + cells(kind, name, "oracle"))
    wide = pd.DataFrame(rows, columns=header)
    return wide, _markdown(wide)


def summary_table(
    agg: pd.DataFrame,
    test_splits: list[str],
    metric: str,
    baseline: str,
    best: dict[str, str],
    methods: list[str],
) -> tuple[pd.DataFrame, str]:
    """Table 1: each row as ``+delta value`` vs the ``baseline`` single model, one column per split."""
    sel = agg[agg.metric == metric].set_index(["kind", "name", "method", "split"])["mean"]
    base_key = ("single", baseline, "model")
    if not any(k[:3] == base_key for k in sel.index):
        raise ValueError(
            f"baseline view {baseline!r} has no results; list it under `runs` or change `baseline`"
        )

    def row(label: str, kind: str, name: str, method: str, absolute: bool = False) -> list[str]:
        out = [label]
        for s in test_splits:
            v = sel.get((kind, name, method, s), np.nan)
            b = sel.get(base_key + (s,), np.nan)
            if not np.isfinite(v):
                out.append("–")
            elif absolute or not np.isfinite(b):
                out.append(f"{100 * v:.2f}")
            else:
                out.append(f"{100 * (v - b):+.2f} {100 * v:.2f}")
        return out

    rows = [row(baseline, "single", baseline, "model", absolute=True)]
    names = agg[["kind", "name", "method"]].drop_duplicates()
    for _, r in names[names.kind.isin(["single", "metadata"])].iterrows():
        if r["name"] != baseline:
            rows.append(row(r["name"], r["kind"], r["name"], r["method"]))
    for kind in ("pair", "ensemble"):
        for name in names[names.kind == kind].name.drop_duplicates():
            v1, _, v2 = _display(kind, name).partition(" ⊕ ")
            for m in methods:
                method = best.get(name) if m == "best" else m
                if method is None or method not in set(names[names.name == name].method):
                    continue
                sym = SYMBOLS.get(m, m)
                label = f"{v1} {sym} {v2}" if kind == "pair" else f"{v1} {sym}"
                if m == "best" and kind == "pair":
                    label += f" ({METHOD_LABELS.get(method, method)})"
                rows.append(row(label, kind, name, method))
    wide = pd.DataFrame(rows, columns=["model"] + list(test_splits))
    return wide, _markdown(wide)


def _markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, markdown: str, stem: Path, title: str) -> None:
    """Write ``<stem>.md`` (with a title line) and ``<stem>.csv``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(f"{title}\n\n{markdown}")
    df.to_csv(stem.with_suffix(".csv"), index=False)
