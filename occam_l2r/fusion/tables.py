"""Ablation tables: the paper's Table 9 (every method, mean ± std over seeds) and Table 1.

Both are built from the long table of cell results (one row per kind, name, method, seed,
split, metric) that :mod:`occam_l2r.fusion.runner` collects, and written as Markdown + CSV.
Every split's accuracy comes with its fallback rate (the share of samples whose view fell back
to the FULL image). ⊕* is the method with the best mean validation metric; methods that tie
are all named, and their values shown as a range (Table 14 prints "65.81-66.15%").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from occam_l2r.fusion.fusers import REGISTRY, method_labels
from occam_l2r.fusion.methods import tied_best
from occam_l2r.fusion.pairs import Pair

#: Table 1's symbol of ⊕*, the best method on validation (a row, not a method).
BEST_SYMBOL = "⊕*"


def symbol(method: str) -> str:
    """A Table 1 row's operator: ``⊕*`` for ``best``, else the method's registered symbol."""
    if method == "best":
        return BEST_SYMBOL
    return REGISTRY[method].symbol if method in REGISTRY else method


METRIC_LABELS = {"acc": "acc", "macro_acc": "macro acc", "fallback_rate": "fallback %"}
#: the metrics of each split in Table 9, in column order.
TABLE9_METRICS = ("acc", "macro_acc", "fallback_rate")


def _std(x: pd.Series) -> float:
    return float(np.std(x.to_numpy(), ddof=1)) if len(x) > 1 else 0.0


def aggregate(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (sample std, 0 for one seed) and seed count per (kind, name, method, split, metric)."""
    keys = ["kind", "name", "method", "split", "metric"]
    g = long.groupby(keys, sort=False)["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.agg(_std), "n_seeds": g.size()}).reset_index()


def best_methods(agg: pd.DataFrame, val_split: str, metric: str) -> dict[str, tuple[str, ...]]:
    """⊕*: per fused pair, the non-oracle methods tied at the highest mean validation ``metric``
    (one method when there is no tie), in table order."""
    out: dict[str, tuple[str, ...]] = {}
    fused = agg[agg.kind.isin(["pair", "ensemble"]) & (agg.method != "oracle")]
    sel = fused[(fused.split == val_split) & (fused.metric == metric)]
    order = {m: i for i, m in enumerate(REGISTRY)}
    for name, rows in sel.groupby("name", sort=False):
        scores = dict(zip(rows.method, rows["mean"], strict=True))
        scores = dict(sorted(scores.items(), key=lambda kv: order.get(kv[0], len(order))))
        if any(np.isfinite(v) for v in scores.values()):
            out[str(name)] = tuple(tied_best(scores))
    return out


def best_label(methods: tuple[str, ...], label_of: dict[str, str]) -> str:
    """``X`` for one selected method, ``tie: X, Y`` for tied ones."""
    names = [label_of.get(m, m) for m in methods]
    return names[0] if len(names) == 1 else "tie: " + ", ".join(names)


def _fmt(mean: float, std: float) -> str:
    return "–" if not np.isfinite(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _range(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if np.isfinite(v)]
    return (min(finite), max(finite)) if finite else (np.nan, np.nan)


def topk_display(name: str, variant: str) -> str:
    """A top-k row's label: the variant with the cell's views (``FULL ⊕ FG_C_topk``)."""
    full, fg, *bg = name.split("+")
    views = {"FULL": full, "FG": fg, "BG": bg[0] if bg else "BG"}
    return " ⊕ ".join(views[v] for v in variant.split("+"))


@dataclass
class _Table9:
    agg: pd.DataFrame
    splits: list[str]

    def __post_init__(self) -> None:
        self.cols = [(s, m) for s in self.splits for m in TABLE9_METRICS]
        self.idx = self.agg.set_index(["kind", "name", "method", "split", "metric"])

    def value(self, key: tuple) -> tuple[float, float]:
        if key not in self.idx.index:
            return np.nan, np.nan
        return float(self.idx.loc[key, "mean"]), float(self.idx.loc[key, "std"])

    def cells(self, kind: str, name: str, methods: tuple[str, ...]) -> list[str]:
        out = []
        for s, m in self.cols:
            vals = [self.value((kind, name, x, s, m)) for x in methods]
            lo, hi = _range([v[0] for v in vals])
            if not np.isfinite(lo):
                out.append("–")
            elif m == "fallback_rate":
                out.append(f"{100 * hi:.2f}")
            elif hi - lo > 5e-7:
                out.append(f"{100 * lo:.2f}–{100 * hi:.2f}")
            else:
                out.append(_fmt(*vals[0]))
        return out


def table9(
    agg: pd.DataFrame,
    splits: list[str],
    best: dict[str, tuple[str, ...]],
    label_of: dict[str, str],
    notes: dict[tuple[str, str], str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Table 9: rows = single models, then per pair every method, ``Best - X`` and ``Oracle``,
    then the top-k rows (the bottom of Table 7).

    Args:
        agg: :func:`aggregate` of the long table.
        splits: the evaluated splits (train first with ``report_train``, as Tables 12 and 14).
        best: :func:`best_methods`.
        label_of: method -> row label.
        notes: (name, method) -> a note appended to the row label (e.g. the chosen ``k``).

    Returns:
        The wide table (for CSV) and its Markdown.
    """
    t = _Table9(agg, splits)
    notes = notes or {}
    header = ["model"] + [f"{s} {METRIC_LABELS[m]}" for s, m in t.cols]
    rows: list[list[str]] = []
    names = agg[["kind", "name"]].drop_duplicates()
    for kind in ("single", "metadata"):
        for name in names[names.kind == kind].name:
            method = agg[(agg.kind == kind) & (agg.name == name)].method.iloc[0]
            rows.append([name] + t.cells(kind, name, (method,)))
    for kind in ("pair", "ensemble"):
        for name in names[names.kind == kind].name:
            rows.append([f"**{Pair.parse(name).display()}**"] + [""] * len(t.cols))
            present = set(agg[(agg.kind == kind) & (agg.name == name)].method)
            for m in label_of:
                if m in present and m != "oracle":
                    rows.append([label_of[m]] + t.cells(kind, name, (m,)))
            if name in best:
                label = f"Best - {best_label(best[name], label_of)}"
                rows.append([label] + t.cells(kind, name, best[name]))
            if "oracle" in present:
                rows.append([label_of["oracle"]] + t.cells(kind, name, ("oracle",)))
    for name in names[names.kind == "topk"].name:
        rows.append([f"**Top-k candidates: {name.replace('+', ', ')}**"] + [""] * len(t.cols))
        for m in agg[(agg.kind == "topk") & (agg.name == name)].method.drop_duplicates():
            note = f" ({notes[name, m]})" if (name, m) in notes else ""
            rows.append([topk_display(name, m) + note] + t.cells("topk", name, (m,)))
    wide = pd.DataFrame(rows, columns=header)
    return wide, markdown(wide)


@dataclass(frozen=True)
class SummaryRow:
    """One row of Table 1: its label, a key that does not name ⊕*'s choice, and its cells."""

    key: str
    label: str
    kind: str
    name: str
    methods: tuple[str, ...]


def summary_rows(
    agg: pd.DataFrame, baseline: str, best: dict[str, tuple[str, ...]], methods: list[str]
) -> list[SummaryRow]:
    """The rows of Table 1: the baseline, the other single models and metadata rows, the
    ``methods`` of every pair and ensemble (``best`` is ⊕*) and the top-k rows."""
    names = agg[["kind", "name", "method"]].drop_duplicates()
    rows = [SummaryRow(baseline, baseline, "single", baseline, ("model",))]
    for _, r in names[names.kind.isin(["single", "metadata"])].iterrows():
        if r["name"] != baseline:
            rows.append(SummaryRow(r["name"], r["name"], r["kind"], r["name"], (r["method"],)))
    for kind in ("pair", "ensemble"):
        for name in names[names.kind == kind].name.drop_duplicates():
            pair = Pair.parse(name)
            have = set(names[names.name == name].method)
            for m in methods:
                chosen = best.get(name, ()) if m == "best" else (m,)
                if not chosen or not set(chosen) <= have:
                    continue
                sym = symbol(m)
                key = (
                    f"{pair.display()} {sym}"
                    if pair.ensemble
                    else f"{pair.first} {sym} {pair.second}"
                )
                label = key
                if m == "best" and (kind == "pair" or len(chosen) > 1):
                    label += f" ({best_label(chosen, method_labels())})"
                rows.append(SummaryRow(key, label, kind, name, chosen))
    for _, r in names[names.kind == "topk"].iterrows():
        label = f"top-k {topk_display(r['name'], r['method'])}"
        rows.append(SummaryRow(label, label, "topk", r["name"], (r["method"],)))
    return rows


def summary_long(
    agg: pd.DataFrame, rows: list[SummaryRow], splits: list[str], metric: str
) -> pd.DataFrame:
    """Table 1 as data: per row and split the ``metric`` (``lo``/``hi`` differ for a ⊕* tie)
    and the row's ``fallback_rate``."""
    sel = agg.set_index(["kind", "name", "method", "split", "metric"])["mean"]
    out = []
    for r in rows:
        for s in splits:
            lo, hi = _range([sel.get((r.kind, r.name, m, s, metric), np.nan) for m in r.methods])
            fb = _range([sel.get((r.kind, r.name, m, s, "fallback_rate"), np.nan)
                         for m in r.methods])[1]  # fmt: skip
            out.append((r.key, r.label, s, metric, lo, hi, fb))
    return pd.DataFrame(out, columns=["key", "label", "split", "metric", "lo", "hi", "fallback"])


def delta_cell(lo: float, hi: float, base: float, absolute: bool = False) -> str:
    """``+delta value`` (``+d1–+d2 v1–v2`` for a range), the value alone without a baseline."""
    if not np.isfinite(lo):
        return "–"
    value = f"{100 * lo:.2f}" if hi - lo <= 5e-7 else f"{100 * lo:.2f}–{100 * hi:.2f}"
    if absolute or not np.isfinite(base):
        return value
    delta = (
        f"{100 * (lo - base):+.2f}"
        if hi - lo <= 5e-7
        else f"{100 * (lo - base):+.2f}–{100 * (hi - base):+.2f}"
    )
    return f"{delta} {value}"


def summary_table(
    agg: pd.DataFrame,
    test_splits: list[str],
    metric: str,
    baseline: str,
    best: dict[str, tuple[str, ...]],
    methods: list[str],
) -> tuple[pd.DataFrame, str]:
    """Table 1: each row as ``+delta value`` vs the ``baseline`` single model, one column per
    split, each followed by its fallback rate (%)."""
    rows = summary_rows(agg, baseline, best, methods)
    long = summary_long(agg, rows, test_splits, metric)
    base = long[long.key == baseline].set_index("split")["lo"]
    if not np.isfinite(base.to_numpy(dtype=float)).any():
        raise ValueError(
            f"baseline view {baseline!r} has no results; list it under `runs` or change `baseline`"
        )
    cells = long.set_index(["key", "split"])
    out = []
    for i, r in enumerate(rows):
        line = [r.label]
        for s in test_splits:
            c = cells.loc[(r.key, s)]
            line.append(delta_cell(c["lo"], c["hi"], base.get(s, np.nan), absolute=i == 0))
            line.append("–" if not np.isfinite(c["fallback"]) else f"{100 * c['fallback']:.2f}")
        out.append(line)
    columns = ["model"] + [c for s in test_splits for c in (s, f"{s} fallback %")]
    wide = pd.DataFrame(out, columns=columns)
    return wide, markdown(wide)


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, markdown: str, stem: Path, title: str) -> None:
    """Write ``<stem>.md`` (with a title line) and ``<stem>.csv``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(f"{title}\n\n{markdown}")
    df.to_csv(stem.with_suffix(".csv"), index=False)
