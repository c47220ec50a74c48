"""The metrics of one group of cells of a fusion sweep (called by :mod:`occam_l2r.fusion.runner`
with the :class:`SweepContext` the cells share).

A group is the cells that share their inputs (:attr:`occam_l2r.fusion.plan.Cell.group`):

- ``single``: one model's own predictions (its ``fallback_rate`` is its view's);
- ``pair`` / ``ensemble``: every fused method of one (pair, seed), fitted together so that they
  share the aligned inputs and the temperatures; with ``fallback: full`` the samples flagged in
  either input get the FULL model's prediction (:func:`occam_l2r.fusion.fallback.apply_fallback`);
  what is fitted (temperatures, ``t``, ``α``, the heads) sees the inputs as they are. The learnt
  heads are trained in the batches :func:`plan_heads` records (every learnt cell of the sweep,
  :func:`occam_l2r.fusion.plan.head_batches`) when their first cell comes up, and wait in
  :attr:`SweepContext.fitted` for their own group; without a plan, a group's heads train together;
- ``metadata``: one model with a metadata prior counted on train; a flagged sample gets the FULL
  model's prediction with the same prior (the metadata does not depend on the detection);
- ``topk``: the eq. 5 variants of one seed, ``k`` chosen on val for each (val and the test
  splits only: the candidate views need no train export).

Every function returns ``(cell, metrics per split, learnt parameters, seconds)`` per cell.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam_l2r.errors import UserError
from occam_l2r.fusion import report
from occam_l2r.fusion.config import SweepConfig, eval_splits, topk_splits
from occam_l2r.fusion.fallback import apply_fallback, split_metrics
from occam_l2r.fusion.fusers import (
    Calibration,
    FitSettings,
    FusionMethod,
    HeadConfig,
    LearntHead,
    build_method,
    fit_learnt,
    method_class,
)
from occam_l2r.fusion.inputs import LogitsCache, LogitsPair, align_pair
from occam_l2r.fusion.metadata import MetadataPrior, align_metadata, metadata_fusion
from occam_l2r.fusion.methods import score
from occam_l2r.fusion.plan import Cell, head_batches
from occam_l2r.fusion.topk import choose_k, exported_k, missing_message, topk_fusion
from occam_l2r.logits import LogitsFile

Outcome = tuple[Cell, dict[str, Any], dict[str, Any], float]


@dataclass
class SweepContext:
    """What the cells of one sweep share (built by :class:`occam_l2r.fusion.runner.Runner`).

    Attributes:
        config: the sweep, its metrics resolved.
        out: its output folder (per-sample reports go to ``out/samples``).
        logits: the loaded logits files, checked against their runs' declared views.
        temps: the temperatures memo shared by the pairs (a run is calibrated once per sweep).
        head_batch: cell id -> the learnt cells it trains with (:func:`plan_heads`).
        fitted: cell id -> its fitted learnt method and its share of the training seconds,
            until its group is computed.
    """

    config: SweepConfig
    out: Path
    logits: LogitsCache
    temps: dict[tuple[str, str], Any] = field(default_factory=dict)
    head_batch: dict[str, list[Cell]] = field(default_factory=dict)
    fitted: dict[str, tuple[FusionMethod, float]] = field(default_factory=dict)


def plan_heads(ctx: SweepContext, cells: list[Cell]) -> None:
    """Record which learnt cells of ``cells`` (the cells a run computes) train together."""
    together = (ctx.config.heads or HeadConfig()).together
    ctx.head_batch.clear()
    for batch in head_batches(cells, together):
        for cell in batch:
            ctx.head_batch[cell.cell_id] = batch


def _settings(cfg: SweepConfig, cell: Cell) -> FitSettings:
    return FitSettings(
        cfg.select_metric or "acc", cell.seed, cfg.heads or HeadConfig(), cfg.threshold_t
    )


def fit_heads(ctx: SweepContext, batch: list[Cell]) -> None:
    """Train the heads of ``batch`` together; each waits in ``ctx.fitted`` for its group."""
    t0 = time.perf_counter()
    cfg, pairs = ctx.config, {}
    items = []
    for cell in batch:
        for split in (cfg.train_split, cfg.val_split):
            if (cell.runs, split) not in pairs:
                pairs[cell.runs, split] = pair_of(ctx, cell, split)
        method = build_method(cell.method, _settings(cfg, cell))
        assert isinstance(method, LearntHead)
        items.append((method, pairs[cell.runs, cfg.train_split], pairs[cell.runs, cfg.val_split]))
    fit_learnt(items)
    share = (time.perf_counter() - t0) / len(batch)
    for cell, (method, _, _) in zip(batch, items, strict=True):
        ctx.fitted[cell.cell_id] = (method, share)


class FallbackError(UserError, ValueError):
    """Samples fell back, but the sweep has no FULL run to take their prediction from."""


def full_logits_for(ctx: SweepContext, cell: Cell, split: str, like: LogitsFile, flags: np.ndarray):
    """FULL's logits aligned with ``like``, when ``fallback: full`` and a sample is flagged."""
    cfg = ctx.config
    if cfg.fallback != "full" or not np.asarray(flags).any():
        return None
    if cell.fallback_run is None:
        raise FallbackError(
            f"{int(np.sum(flags))} samples of {cell.name} ({split}) fell back to the FULL image, "
            f"but `runs` has no {cfg.fallback_view!r} view to take their prediction from; add "
            f"its runs, set `fallback_view`, or keep the fused prediction with `fallback: none`"
        )
    full = ctx.logits.get(cell.fallback_run, split)
    return align_pair(like, full, f"{cell.name} {split}", f"FULL {cell.fallback_run}").z2


def run_single(ctx: SweepContext, cell: Cell) -> Outcome:
    t0 = time.perf_counter()
    metrics = {}
    for split in eval_splits(ctx.config):
        lf = ctx.logits.get(cell.runs[0], split)
        metrics[split] = split_metrics(lf.logits.argmax(1), lf.labels, lf.fallback)
    return cell, metrics, {}, time.perf_counter() - t0


def run_fused(ctx: SweepContext, cells: list[Cell]) -> list[Outcome]:
    """Fit and evaluate the methods of one (pair, seed) group."""
    c0, cfg = cells[0], ctx.config
    data = {s: pair_of(ctx, c0, s) for s in eval_splits(cfg)}
    learnt = [c for c in cells if method_class(c.method).learnt]
    train = None
    if any(c.needs_train and c not in learnt for c in cells):
        train = (
            data[cfg.train_split] if cfg.train_split in data else pair_of(ctx, c0, cfg.train_split)
        )
    like = {s: ctx.logits.get(c0.runs[0], s) for s in data}
    full = {s: full_logits_for(ctx, c0, s, like[s], p.fallback) for s, p in data.items()}
    calib = Calibration(data[cfg.val_split], keys=(c0.runs[0], c0.runs[1]), store=ctx.temps)
    out = []
    for cell in cells:
        t0, fit_secs = time.perf_counter(), 0.0
        if cell in learnt:
            if cell.cell_id not in ctx.fitted:
                fit_heads(ctx, ctx.head_batch.get(cell.cell_id) or learnt)
                t0 = time.perf_counter()
            fuser, fit_secs = ctx.fitted.pop(cell.cell_id)
        else:
            fuser = build_method(cell.method, _settings(cfg, cell))
            fuser.fit(train, data[cfg.val_split], calib)
        metrics = {}
        for split, pair in data.items():
            fused = fuser.apply(pair)
            if cfg.fallback == "full":
                fused = apply_fallback(fused, pair.fallback, full[split])
            metrics[split] = split_metrics(fused.pred, pair.labels, pair.fallback)
            if cell.method in (cfg.sample_reports or []):
                rep = report.sample_report(pair, fused, *cell.input_labels)
                _write_samples(ctx.out, cell, split, rep)
        out.append((cell, metrics, fuser.params(), time.perf_counter() - t0 + fit_secs))
    return out


def _write_samples(out: Path, cell: Cell, split: str, df: pd.DataFrame) -> None:
    dest = out / "samples" / cell.name / f"seed{cell.seed}"
    dest.mkdir(parents=True, exist_ok=True)
    df.to_csv(dest / f"{cell.method}_{split}.csv", index=False)


def run_metadata(ctx: SweepContext, cell: Cell) -> Outcome:
    t0 = time.perf_counter()
    md = ctx.config.metadata
    if md is None:
        raise ValueError(f"cell {cell.cell_id} needs `metadata` in the config")
    path = Path(md.table)
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    fld = cell.settings["field"]
    for col in (md.id_column, fld):
        if col not in table.columns:
            raise ValueError(
                f"metadata table {path} has no column {col!r} (columns: {list(table.columns)})"
            )
    mapping = dict(zip(table[md.id_column].astype(str), table[fld], strict=True))
    train = ctx.logits.get(cell.runs[0], ctx.config.train_split)
    prior = MetadataPrior(md.smoothing).fit(
        train.labels, align_metadata(train.ids, mapping, fld), train.num_classes
    )
    metrics = {}
    for split in eval_splits(ctx.config):
        lf = ctx.logits.get(cell.runs[0], split)
        values = align_metadata(lf.ids, mapping, fld)
        pred = metadata_fusion(lf.logits, values, prior).pred
        z_full = full_logits_for(ctx, cell, split, lf, lf.fallback)
        if z_full is not None:
            pred = np.where(lf.fallback, metadata_fusion(z_full, values, prior).pred, pred)
        metrics[split] = split_metrics(pred, lf.labels, lf.fallback)
    return cell, metrics, {}, time.perf_counter() - t0


def run_topk(ctx: SweepContext, cells: list[Cell]) -> list[Outcome]:
    """The eq. 5 variants of one seed; ``k`` is chosen on val for each variant."""
    t0 = time.perf_counter()
    c0, cfg = cells[0], ctx.config
    files = {s: [ctx.logits.get(r, s) for r in c0.runs] for s in topk_splits(cfg)}
    full_val, fg_val = files[cfg.val_split][:2]
    kmax = min(full_val.num_classes, exported_k(fg_val))
    ks = sorted({k for k in cfg.topk.ks if k <= kmax}) if cfg.topk else []
    if not ks:
        raise ValueError(
            f"top-k: none of topk.ks {cfg.topk.ks if cfg.topk else []} is <= {kmax}, the "
            f"candidates exported per sample in {c0.runs[1]} (or the class count); lower `ks`"
        )
    results: dict[tuple[str, int], Any] = {}

    def fused(split: str, k: int):
        if (split, k) not in results:
            full, fg, *bg = files[split]
            with warnings.catch_warnings():  # counted per split below (missing_message)
                warnings.simplefilter("ignore")
                results[split, k] = topk_fusion(
                    full, fg, bg[0] if bg else None, k, cfg.fallback == "full"
                )
        return results[split, k]

    variants = [c.method for c in cells]
    metric = cfg.select_metric or "acc"

    def val_scores(k: int) -> dict[str, float]:
        res = fused(cfg.val_split, k)
        return {v: score(res.preds[v], res.labels, metric) for v in variants}

    chosen, by_k = choose_k(ks, val_scores, variants)
    out = []
    for cell in cells:
        k = chosen[cell.method]
        metrics = {}
        for split in files:
            res = fused(split, k)
            metrics[split] = split_metrics(res.preds[cell.method], res.labels, res.fallback)
        params = {"k": k, "val_by_k": {str(kk): v for kk, v in by_k[cell.method].items()},
                  "missing_rows": fused(cfg.val_split, k).missing,
                  "missing_rows_by_split": {split: fused(split, k).missing for split in files},
                  "missing_rows_val_by_k": {str(kk): fused(cfg.val_split, kk).missing
                                            for kk in ks},
                  "full_run": c0.runs[0]}  # fmt: skip
        out.append((cell, metrics, params, (time.perf_counter() - t0) / len(cells)))
    missing = {f"{split} k={k}": r.missing for (split, k), r in results.items() if r.missing}
    if missing:
        warnings.warn(missing_message(f"{c0.name} seed{c0.seed}", missing), stacklevel=2)
    return out


def pair_of(ctx: SweepContext, cell: Cell, split: str) -> LogitsPair:
    """The aligned inputs of a fused cell on ``split``."""
    (ra, rb), (n1, n2) = cell.runs, cell.input_labels
    z1, z2 = ctx.logits.get(ra, split), ctx.logits.get(rb, split)
    return align_pair(z1, z2, f"{n1} {ra}", f"{n2} {rb}")
