"""Table 9 / Table 1 formatting from a hand-made long table: mean ± std, ⊕*, deltas."""

from __future__ import annotations

import pandas as pd
import pytest

from occam_l2r.fusion import tables
from occam_l2r.fusion.fusers import method_labels


def long_table() -> pd.DataFrame:
    rows = []

    def add(kind, name, method, val, test):
        for seed, (v, t) in enumerate(zip(val, test, strict=True)):
            for metric in ("acc", "macro_acc"):
                rows.append((kind, name, method, seed, "val", metric, v))
                rows.append((kind, name, method, seed, "test", metric, t))

    add("single", "FULL", "model", [0.80, 0.82], [0.50, 0.52])
    add("single", "FG_C", "model", [0.70, 0.72], [0.70, 0.74])
    # max_conf wins on val on average (0.85 vs 0.84) although threshold wins seed 1
    add("pair", "FG_C+FULL", "max_conf", [0.86, 0.84], [0.60, 0.60])
    add("pair", "FG_C+FULL", "threshold", [0.82, 0.86], [0.72, 0.72])
    add("pair", "FG_C+FULL", "oracle", [0.99, 0.99], [0.95, 0.95])
    return pd.DataFrame(
        rows, columns=["kind", "name", "method", "seed", "split", "metric", "value"]
    )


def test_aggregate_best_and_table9():
    agg = tables.aggregate(long_table())
    full = agg[(agg.name == "FULL") & (agg.split == "val") & (agg.metric == "acc")].iloc[0]
    assert full["mean"] == pytest.approx(0.81) and full["std"] == pytest.approx(0.0141421356)
    best = tables.best_methods(agg, "val", "acc")
    assert best == {"FG_C+FULL": ("max_conf",)}  # the oracle is never selected
    wide, md = tables.table9(agg, ["val", "test"], best, method_labels())
    assert list(wide.columns) == [
        "model", "val acc", "val macro acc", "val fallback %", "test acc", "test macro acc",
        "test fallback %",
    ]  # fmt: skip
    rows = dict(zip(wide.model, wide["test acc"], strict=True))
    assert rows["FULL"] == "51.00 ± 1.41" and rows["Best - Max conf"] == "60.00 ± 0.00"
    assert rows["Oracle"] == "95.00 ± 0.00" and "**FG_C ⊕ FULL**" in rows
    assert md.splitlines()[0].startswith("| model | val acc")


def test_summary_deltas_vs_baseline():
    agg = tables.aggregate(long_table())
    best = tables.best_methods(agg, "val", "acc")
    wide, _ = tables.summary_table(
        agg, ["test"], "acc", "FULL", best, ["best", "threshold", "weighted_logits"]
    )
    rows = dict(zip(wide.model, wide.test, strict=True))
    assert rows["FULL"] == "51.00"
    assert rows["FG_C"] == "+21.00 72.00"
    assert rows["FG_C ⊕* FULL (Max conf)"] == "+9.00 60.00"
    assert rows["FG_C ⊕R FULL"] == "+21.00 72.00"
    assert not any("⊕WL" in m for m in rows)  # a method that was not run gets no row
    with pytest.raises(ValueError, match="baseline view 'BG_S' has no results"):
        tables.summary_table(agg, ["test"], "acc", "BG_S", best, ["best"])
