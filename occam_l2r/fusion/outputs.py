"""The files of a finished fusion sweep: tables, weighted-logits weights and plots.

:func:`write_outputs` writes, in ``output_dir``:

- ``metrics_long.csv``: mean, std and seed count per (kind, name, method, split, metric);
- ``fusion_table.{md,csv}``: the paper's Table 9 (:func:`occam_l2r.fusion.tables.table9`), with
  the top-k rows of Table 7 when the sweep has them;
- ``summary.{md,csv}``: Table 1, deltas vs the baseline
  (:func:`occam_l2r.fusion.tables.summary_table`), and ``summary_long.csv``, the same as data
  (what :func:`occam_l2r.fusion.crosstables.across_datasets_table` reads);
- ``metadata_table.{md,csv}``: Table 4, when the sweep has metadata rows;
- ``datasets_table.{md,csv}``: Table 1 across datasets, with ``across_datasets``;
- ``topk/nonempty_candidates.csv`` and ``topk/nonempty_candidates_<split>.png``: Figure 11's
  histogram of non-empty candidates per image, with ``topk``;
- ``weights/<pair>_seed<k>.csv`` for every weighted-logits cell, and for seed 0 a ``.png`` like
  the paper's Figure 8 (the plots: :mod:`occam_l2r.reporting.figures`).

The per-sample reports are written while the cells run (:mod:`occam_l2r.fusion.compute`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from occam_l2r.fusion import crosstables, report, tables, topk
from occam_l2r.fusion.config import SweepConfig, eval_splits, topk_candidates_note, topk_splits
from occam_l2r.fusion.fusers import method_labels
from occam_l2r.fusion.inputs import load_run_split, resolve_logits_path
from occam_l2r.fusion.runner import SweepResult
from occam_l2r.logits import LogitsFile
from occam_l2r.reporting.figures import plot_nonempty_histogram, plot_weights


def write_outputs(config: SweepConfig, result: SweepResult) -> dict[str, Path]:
    """Write the tables, the weighted-logits weights and the plots of a finished sweep.

    Args:
        config: the sweep configuration (its metrics resolved, as ``Runner.config``).
        result: what :class:`occam_l2r.fusion.runner.Runner` returned.

    Returns:
        The paths of the Markdown tables written: ``fusion_table`` and ``summary``, and
        ``metadata_table`` / ``datasets_table`` when written.
    """
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    select, summary = config.select_metric or "acc", config.summary_metric or "acc"
    agg = tables.aggregate(result.long.astype({"value": float}))
    agg.to_csv(out / "metrics_long.csv", index=False)
    best = tables.best_methods(agg, config.val_split, select)
    labels = method_labels()
    if config.threshold_t is not None:
        labels["threshold"] = f"{labels['threshold']} (t={config.threshold_t:g})"
    t9, md9 = tables.table9(agg, eval_splits(config), best, labels, _topk_notes(result))
    tables.write_table(
        t9, md9, out / "fusion_table",
        f"# Fusion ablation (mean ± std over seeds, %); Best selected on {config.val_split} "
        f"{select}; {_fallback_and_topk_note(config)}",
    )  # fmt: skip
    splits = config.test_splits or []
    t1, md1 = tables.summary_table(
        agg, splits, summary, config.baseline, best, config.summary_methods or []
    )
    tables.write_table(
        t1, md1, out / "summary",
        f"# Summary: {summary} (%) as delta vs {config.baseline}, mean over seeds; "
        f"{_fallback_and_topk_note(config)}",
    )  # fmt: skip
    rows = tables.summary_rows(agg, config.baseline, best, config.summary_methods or [])
    long = tables.summary_long(agg, rows, splits, summary)
    long.to_csv(out / crosstables.SUMMARY_LONG, index=False)
    paths = {"fusion_table": out / "fusion_table.md", "summary": out / "summary.md"}
    if config.metadata is not None:
        md = config.metadata
        t4, md4 = crosstables.metadata_table(agg, md.views, md.fields, splits, summary)
        tables.write_table(t4, md4, out / "metadata_table",
                           f"# Metadata priors: {summary} (%) and the increment over the image "
                           "model alone, mean over seeds")  # fmt: skip
        paths["metadata_table"] = out / "metadata_table.md"
    if config.across_datasets is not None:
        paths["datasets_table"] = write_datasets_table(config, long)
    write_weights(config, result)
    write_topk_histogram(config)
    return paths


def _fallback_note(config: SweepConfig) -> str:
    if config.fallback == "full":
        return f"fused rows fall back to {config.fallback_view} for flagged samples"
    return "no fallback at the output"


def _fallback_and_topk_note(config: SweepConfig) -> str:
    """The tables' title note: the fallback, and which FULL run gave the top-k candidates."""
    topk_note = topk_candidates_note(config)
    return _fallback_note(config) + (f"; top-k {topk_note}" if topk_note else "")


def _topk_notes(result: SweepResult) -> dict[tuple[str, str], str]:
    """(name, variant) -> ``k=2`` (or ``k=2,3`` when seeds chose differently) and the
    (sample, candidate) rows that FULL's logit stood in for (the title names the FULL run)."""
    ks: dict[tuple[str, str], set[int]] = {}
    missing: dict[tuple[str, str], int] = {}
    for cell, rec in zip(result.cells, result.records, strict=True):
        if cell.kind == "topk" and "k" in rec["params"]:
            key = (cell.name, cell.method)
            ks.setdefault(key, set()).add(int(rec["params"]["k"]))
            by_split = rec["params"].get("missing_rows_by_split", {})
            missing[key] = missing.get(key, 0) + sum(by_split.values())
    notes = {}
    for key, v in ks.items():
        note = f"k={','.join(map(str, sorted(v)))}"
        if missing.get(key):
            note += f"; {missing[key]} missing candidate rows took FULL's logit"
        notes[key] = note
    return notes


def write_datasets_table(config: SweepConfig, long: pd.DataFrame) -> Path:
    """``datasets_table.{md,csv}``: this sweep's Table 1 beside the other datasets' sweeps."""
    across = config.across_datasets
    assert across is not None
    longs = {across.name: long}
    for name, folder in across.others.items():
        longs[name] = crosstables.read_summary_long(folder)
    wide, md = crosstables.across_datasets_table(longs, config.baseline)
    stem = Path(config.output_dir) / "datasets_table"
    tables.write_table(wide, md, stem, "# Across datasets: each dataset's summary metric (%) as "
                       f"delta vs {config.baseline}; the mean over all columns")  # fmt: skip
    return stem.with_suffix(".md")


def write_topk_histogram(config: SweepConfig) -> list[Path]:
    """Figure 11: non-empty candidates per image of the first FG top-k run, per split.

    Returns:
        The PNG files written (none without ``topk``).
    """
    if config.topk is None:
        return []
    run = config.runs[config.topk.fg][0]
    dest = Path(config.output_dir) / "topk"
    counts, rows, written = {}, [], []
    for split in topk_splits(config):
        counts[split] = topk.nonempty_candidates(load_run_split(run, split))
        share = np.bincount(counts[split]) / max(1, len(counts[split]))
        rows += [(split, s, int(n), float(f)) for s, (n, f) in
                 enumerate(zip(np.bincount(counts[split]), share, strict=True))]  # fmt: skip
        written.append(
            plot_nonempty_histogram(
                {config.topk.fg: counts[split]}, dest / f"nonempty_candidates_{split}.png",
                f"Non-empty candidates per image ({split}, {len(counts[split])} images)",
            )
        )  # fmt: skip
    pd.DataFrame(rows, columns=["split", "nonempty", "images", "share"]).to_csv(
        dest / "nonempty_candidates.csv", index=False
    )
    return written


def write_weights(config: SweepConfig, result: SweepResult) -> list[Path]:
    """The per-class weights of every weighted-logits cell (CSV; plus a plot for seed 0).

    Returns:
        The CSV files written.
    """
    written = []
    for cell, rec in zip(result.cells, result.records, strict=True):
        if cell.method != "weighted_logits" or "w1" not in rec["params"]:
            continue
        names = _class_names(cell.runs[0], config.val_split)
        wt = report.weights_table(rec["params"]["w1"], rec["params"]["w2"], names)
        stem = Path(config.output_dir) / "weights" / f"{cell.name}_seed{cell.seed}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        wt.to_csv(stem.with_suffix(".csv"), index=False)
        written.append(stem.with_suffix(".csv"))
        if cell.seed == 0:
            plot_weights(wt, stem.with_suffix(".png"), *cell.input_labels)
    return written


def _class_names(run: str, split: str) -> list[str]:
    try:
        return LogitsFile.load(resolve_logits_path(run, split)).class_names
    except (OSError, ValueError):
        return []
