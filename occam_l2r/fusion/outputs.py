"""The files of a finished fusion sweep: tables, weighted-logits weights and their plots.

:func:`write_outputs` writes, in ``output_dir``:

- ``metrics_long.csv``: mean, std and seed count per (kind, name, method, split, metric);
- ``fusion_table.{md,csv}``: the paper's Table 9 (:func:`occam_l2r.fusion.tables.table9`);
- ``summary.{md,csv}``: Table 1, deltas vs the baseline
  (:func:`occam_l2r.fusion.tables.summary_table`);
- ``weights/<pair>_seed<k>.csv`` for every weighted-logits cell, and for seed 0 a ``.png`` like
  the paper's Figure 8 (:mod:`occam_l2r.fusion.report`).

The per-sample reports are written while the cells run (:mod:`occam_l2r.fusion.runner`).
"""

from __future__ import annotations

from pathlib import Path

from occam_l2r.fusion import report, tables
from occam_l2r.fusion.fusers import METHOD_LABELS
from occam_l2r.fusion.inputs import resolve_logits_path
from occam_l2r.fusion.plan import SweepConfig, eval_splits
from occam_l2r.fusion.runner import SweepResult
from occam_l2r.logits import LogitsFile


def write_outputs(config: SweepConfig, result: SweepResult) -> dict[str, Path]:
    """Write Table 9, the Table 1 summary and the weighted-logits weights of a finished sweep.

    Args:
        config: the sweep configuration.
        result: what :class:`occam_l2r.fusion.runner.Runner` returned.

    Returns:
        The paths of the two tables' Markdown files, as ``fusion_table`` and ``summary``.
    """
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    agg = tables.aggregate(result.long.astype({"value": float}))
    agg.to_csv(out / "metrics_long.csv", index=False)
    best = tables.best_methods(agg, config.val_split, config.select_metric)
    t9, md9 = tables.table9(agg, eval_splits(config), best, METHOD_LABELS)
    tables.write_table(
        t9, md9, out / "fusion_table",
        f"# Fusion ablation (mean ± std over seeds, %); Best selected on {config.val_split} "
        f"{config.select_metric}",
    )  # fmt: skip
    t1, md1 = tables.summary_table(
        agg, config.test_splits or [], config.summary_metric, config.baseline, best,
        config.summary_methods or [],
    )  # fmt: skip
    tables.write_table(
        t1, md1, out / "summary",
        f"# Summary: {config.summary_metric} (%) as delta vs {config.baseline}, mean over seeds",
    )  # fmt: skip
    write_weights(config, result)
    return {"fusion_table": out / "fusion_table.md", "summary": out / "summary.md"}


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
            report.plot_weights(wt, stem.with_suffix(".png"), *cell.input_labels)
    return written


def _class_names(run: str, split: str) -> list[str]:
    try:
        return LogitsFile.load(resolve_logits_path(run, split)).class_names
    except (OSError, ValueError):
        return []
