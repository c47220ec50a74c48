"""Sections of the report, each adding tables and figures to the page of a
:class:`~occam_l2r.reporting.builder.ReportBuilder` (their order: :data:`occam_l2r.reporting.build.SECTIONS`).

Here: ``fuse``'s tables, the metric per split and method, calibration, fallback and detection
statistics, and the closing notes. The sections about fused rows (Fig. 8, Fig. 12, the image
grid) live in :mod:`occam_l2r.reporting.fused_sections`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from occam_l2r.fusion.fusers import method_labels
from occam_l2r.fusion.pairs import Pair
from occam_l2r.fusion.tables import topk_display
from occam_l2r.fusion.topk import nonempty_candidates
from occam_l2r.reporting.figures import (
    plot_accuracy,
    plot_nonempty_histogram,
    plot_rates,
    plot_reliability,
)
from occam_l2r.reporting.sources import read_tables
from occam_l2r.reporting.stats import reliability, share_true, temperature

if TYPE_CHECKING:
    from occam_l2r.reporting.builder import ReportBuilder


def row_label(kind: str, name: str, method: str) -> str:
    """A row's label in the figures: ``FG_C ⊕ BG_S: Max conf``, ``FULL × 2: ...``, ``FULL``."""
    if kind == "topk":
        return f"top-k {topk_display(name, method)}"
    if kind in ("pair", "ensemble"):
        return f"{Pair.parse(name).display()}: {method_labels().get(method, method)}"
    return name


def pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{100 * x:.2f}"


def model_label(config: dict) -> str:
    """What model a logits file is of, from its ``config`` (:meth:`BaseTask.prediction_metadata`):
    ``classifier convnextv2_atto``, ``linear probe on frozen open_clip:...``, ``shared backbone
    convnextv2_atto (FULL+FG_C)``; the task's name for any other."""
    model = config.get("model", {}) or {}
    task = str(config.get("task") or str(model.get("_class_path", "")).rsplit(".", 1)[-1])
    if task == "ProbeTask":
        hidden = int(model.get("hidden_dim") or 0)
        head = f"MLP ({hidden} hidden)" if hidden else "linear"
        return f"{head} probe on {config.get('backbone', 'a frozen backbone')}"
    if task == "SharedBackboneTask":
        views = "+".join(model.get("views") or [])
        return f"shared backbone {model.get('model_name', '')} ({views})".replace(" ()", "")
    if model.get("model_name"):
        return f"classifier {model['model_name']}"
    return task or "–"


def models(b: ReportBuilder) -> None:
    """The model behind each view's rows: a classifier, a probe on a frozen backbone, or one
    shared backbone giving several views (docs/cheaper.md), and its number of seeds."""
    rows = []
    for view, runs in b.require_runs().items():
        labels = sorted({model_label(b.cache.get(r, b.config.val_split).config) for r in runs})
        rows.append([view, "; ".join(labels), str(len(runs))])
    b.page.table(["view", "model", "seeds"], rows,
                 caption="the model behind each view's rows")  # fmt: skip


def fuse_tables(b: ReportBuilder) -> None:
    """``fuse``'s Markdown tables, cell for cell."""
    found = read_tables(b.outputs.folder)
    if not found:
        b.page.paragraph(f"{b.outputs.folder} holds no Markdown table.", note=True)
    for t in found:
        b.page.table(t.header, t.rows, caption=t.title or t.stem, source=f"{t.stem}.md")


def accuracy(b: ReportBuilder) -> None:
    """The metric of every row per split, mean ± std over seeds (``metrics_long.csv``)."""
    m = b.outputs.metrics
    splits = [s for s in [b.config.val_split, *b.test_splits] if s in set(m.split)]
    rows = m[(m.metric == b.metric) & m.split.isin(splits)].copy()
    rows["label"] = [row_label(k, n, x) for k, n, x in zip(rows.kind, rows.name, rows.method,
                                                            strict=True)]  # fmt: skip
    png = plot_accuracy(rows, splits, b.metric, b.figure_path("accuracy"))
    seeds = sorted(set(rows.n_seeds.astype(int)))
    b.page.figure(png, f"{b.metric} of every row of the fusion table per split; error bars: the "
                  f"sample std over seeds ({', '.join(map(str, seeds))} seeds per row).")  # fmt: skip


def calibration(b: ReportBuilder) -> None:
    """Reliability diagrams before / after temperature scaling per view, and the ECE table."""
    c = b.config
    splits = [c.val_split, *b.test_splits]
    where = c.reliability_split or (b.test_splits[0] if b.test_splits else c.val_split)
    rows = []
    for view, runs in b.require_runs().items():
        for seed, run in enumerate(runs):
            val = b.cache.get(run, c.val_split)
            t = temperature(val.logits, val.labels)
            for split in splits:
                lf = b.cache.get(run, split)
                before = reliability(lf.logits, lf.labels, 1.0, c.n_bins)
                after = reliability(lf.logits, lf.labels, t, c.n_bins)
                rows.append((view, seed, split, t, before.ece, after.ece))
                if seed == 0 and split == where:
                    png = plot_reliability(
                        before, after, f"{view} (seed 0) on {split}, T fitted on {c.val_split}",
                        b.figure_path(f"reliability_{view}"),
                    )  # fmt: skip
                    b.page.figure(png, f"{view}: reliability on {split} before and after "
                                  f"temperature scaling (T = {t:.3f}, fitted on {c.val_split}).")  # fmt: skip
    cols = ["view", "seed", "split", "temperature", "ece_before", "ece_after"]
    long = pd.DataFrame(rows, columns=cols)
    b.out.mkdir(parents=True, exist_ok=True)
    long.to_csv(b.out / "calibration.csv", index=False)
    table = []
    for view, part in long.groupby("view", sort=False):
        temps = part.drop_duplicates("seed").temperature
        line = [view, f"{temps.mean():.3f} ± {temps.std(ddof=1) if len(temps) > 1 else 0:.3f}"]
        for split in splits:
            s = part[part.split == split]
            line.append(f"{pct(s.ece_before.mean())} → {pct(s.ece_after.mean())}")
        table.append(line)
    b.page.table(["view", "T (mean ± std)", *[f"{s} ECE %" for s in splits]], table,
                 caption=f"ECE (%, {c.n_bins} bins) before → after temperature scaling, mean "
                 "over seeds (calibration.csv has every seed)")  # fmt: skip


def fallback_detection(b: ReportBuilder) -> None:
    """Fallback rate per view and split (the logits files' flags); Fig. 11 where top-k rows are."""
    splits = [s for s in b.outputs.splits() if s in {b.config.val_split, *b.test_splits}]
    rates, table = {}, []
    for view, runs in b.require_runs().items():
        line = [view]
        for split in splits:
            flags = [b.cache.get(r, split).fallback for r in runs]
            rates[view, split] = float(np.mean([share_true(f) for f in flags]))
            line.append(f"{pct(rates[view, split])} ({sum(int(f.sum()) for f in flags)} of "
                        f"{sum(len(f) for f in flags)})")  # fmt: skip
        table.append(line)
    frame = pd.DataFrame(
        [[rates[v, s] for s in splits] for v in b.runs], index=list(b.runs), columns=splits
    )
    frame.rename_axis("view").to_csv(b.out / "fallback_rates.csv")
    b.page.table(["view", *splits], table, caption="Fallback rate % (samples of all seeds whose "
                 "view fell back to the full image), mean over seeds")  # fmt: skip
    if np.nan_to_num(frame.to_numpy(float)).any():
        png = plot_rates(frame, "fallback rate (%)", "Samples that fell back to the full "
                                 "image, per view and split", b.figure_path("fallback_rates"))  # fmt: skip
        b.page.figure(png, "Fallback rate per view and split. The fused rows' rates are the "
                      "`fallback %` columns of the tables above.")  # fmt: skip
    else:  # an all-zero bar chart shows nothing: say it in words
        b.page.paragraph("No sample fell back to the full image (every view, split and seed): "
                         "no fallback chart.")  # fmt: skip
    topk_histogram(b, splits)


def topk_histogram(b: ReportBuilder, splits: list[str]) -> None:
    """Fig. 11: non-empty candidates per image of the top-k runs."""
    runs = dict(b.config.topk_runs or {})
    if not runs:
        for rec in b.outputs.cells(kind="topk")[:1]:
            runs[rec["name"].split("+")[1]] = rec["runs"][1]
    if not runs:
        b.page.paragraph("No top-k candidate rows in this sweep: no Fig. 11 histogram (set "
                         "`topk` in the fuse config, or `topk_runs` here).", note=True)  # fmt: skip
        return
    table = []
    for split in splits:
        counts = {
            label: nonempty_candidates(b.cache.get(run, split)) for label, run in runs.items()
        }
        png = plot_nonempty_histogram(
            counts, b.figure_path(f"nonempty_candidates_{split}"),
            f"Non-empty candidates per image ({split})",
        )  # fmt: skip
        b.page.figure(png, f"Fig. 11 on {split}: the share of images by their number of "
                      "candidates with a detection.")  # fmt: skip
        for label, c in counts.items():
            share = np.bincount(c, minlength=2) / max(1, len(c))
            table.append([label, split, len(c), f"{c.mean():.2f}" if len(c) else "–",
                          pct(share[0]), pct(share[1])])  # fmt: skip
    b.page.table(["detector / run", "split", "images", "mean non-empty", "0 (%)", "1 (%)"],
                 table, caption="Non-empty candidates per image")  # fmt: skip


def notes(b: ReportBuilder) -> None:
    """How the fused per-sample predictions were obtained and whether they match ``fuse``."""
    b.page.heading("Notes")
    ok = sum(m for _, _, m in b.checks)
    b.page.paragraph(
        f"Fusion folder {b.outputs.folder}; ⊕* selected on {b.config.val_split} {b.metric}; "
        f"fallback of recomputed fused rows: {b.config.fallback}. Fused per-sample predictions "
        "come from fuse's per-sample reports or from the parameters fuse fitted "
        f"(results.jsonl), never refitted: their accuracy equals fuse's on {ok} of "
        f"{len(b.checks)} (cell, split)."
    )
    for cell, split, good in b.checks:
        if not good:
            b.page.paragraph(f"{cell} on {split}: the recomputed accuracy differs from fuse's "
                             "(check `fallback` / `fallback_view`).", note=True)  # fmt: skip
    for note in b.notes:
        b.page.paragraph(note, note=True)
