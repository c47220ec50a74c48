"""Runs the cells of a fusion sweep, resumably, against ``<output_dir>/results.jsonl``.

Each finished cell is appended to ``results.jsonl`` as one JSON line (its metrics per split and
its learnt parameters) with a fingerprint of its input files (path, size, mtime) and settings;
a rerun recomputes only the cells that are missing or whose fingerprint changed. A line cut
short by an interrupted run is skipped (that cell is redone).

The cells of a group (:attr:`occam_l2r.fusion.plan.Cell.group`) are computed together by
:mod:`occam_l2r.fusion.compute` (single models, fused pairs and ensembles, metadata priors,
top-k candidates), sharing a :class:`~occam_l2r.fusion.compute.SweepContext`: loaded logits files
are kept in a small LRU (:class:`~occam_l2r.fusion.inputs.LogitsCache`) that checks each file's
recorded view against the view its run is declared under in ``runs:``.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from occam_l2r.fusion import compute
from occam_l2r.fusion.compute import SweepContext
from occam_l2r.fusion.config import (
    SweepConfig,
    eval_splits,
    image_views,
    topk_splits,
    with_metrics,
)
from occam_l2r.fusion.inputs import LogitsCache, headline_metric, resolve_logits_path
from occam_l2r.fusion.plan import Cell, plan

#: columns of the long results table.
LONG_COLUMNS = ["kind", "name", "method", "seed", "split", "metric", "value"]


@dataclass
class SweepResult:
    """The outcome of a sweep.

    Attributes:
        cells: the planned cells, in table order.
        records: the ``results.jsonl`` record of each cell (same order).
        long: one row per (kind, name, method, seed, split, metric) with its ``value``.
        computed: cells computed in this run.
        cached: cells taken from ``results.jsonl``.
    """

    cells: list[Cell]
    records: list[dict[str, Any]]
    long: pd.DataFrame
    computed: int
    cached: int


#: version of the records of ``results.jsonl``; a record of another version is recomputed.
RESULTS_VERSION = 2


def fingerprint(files: list[Path], settings: dict[str, Any]) -> str:
    """Hash of the input files (path, size, mtime), the settings of a cell and
    :data:`RESULTS_VERSION`."""
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"files": stats, "settings": settings, "version": RESULTS_VERSION},
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def load_done(path: Path) -> dict[str, dict[str, Any]]:
    """Records of ``results.jsonl`` by cell id; unreadable (cut short) lines are skipped."""
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run: that cell is redone
            if isinstance(rec, dict) and "cell" in rec:
                done[rec["cell"]] = rec
    return done


def _terminate_last_line(path: Path) -> None:
    if path.is_file() and path.stat().st_size:
        with path.open("rb+") as fh:
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")  # terminate a line cut short by an interrupted run


def resolve_metrics(config: SweepConfig) -> SweepConfig:
    """``config`` with ``select_metric`` / ``summary_metric`` left ``None`` set to the dataset's
    headline metric that ``predict`` stored in the logits files (``acc`` if none is stored)."""
    if config.select_metric and config.summary_metric:
        return config
    runs = [r for v in image_views(config) for r in config.runs[v]]
    return with_metrics(config, headline_metric(runs, config.val_split))


class Runner:
    """Computes the cells of one sweep; see the module docstring.

    Args:
        config: the sweep configuration; metrics left ``None`` are resolved on construction
            (:func:`resolve_metrics`), :attr:`config` is the resolved one.
    """

    def __init__(self, config: SweepConfig) -> None:
        self.config = resolve_metrics(config)
        self.out = Path(config.output_dir)
        self.results = self.out / "results.jsonl"
        declared: dict[str, list[str]] = {}
        for view, runs in self.config.runs.items():
            for run in runs:
                declared.setdefault(str(run), []).append(view)
        #: what the cells share: the config, the loaded logits, the temperatures memo
        self.ctx = SweepContext(self.config, self.out, LogitsCache(views=declared))

    def files_of(self, cell: Cell) -> list[Path]:
        """The input files of a cell (logits of every split it reads, the metadata table)."""
        splits = topk_splits(self.config) if cell.kind == "topk" else eval_splits(self.config)
        if cell.needs_train:
            splits = [self.config.train_split, *splits]
        runs = [*cell.runs, *([cell.fallback_run] if cell.fallback_run else [])]
        files = [resolve_logits_path(r, s) for r in runs for s in dict.fromkeys(splits)]
        if cell.kind == "metadata" and self.config.metadata is not None:
            files.append(Path(self.config.metadata.table))
        return files

    def fingerprint(self, cell: Cell) -> str:
        return fingerprint(self.files_of(cell), cell.settings)

    def run(self, cells: list[Cell] | None = None) -> SweepResult:
        """Compute every missing cell and append it to ``results.jsonl``.

        Args:
            cells: the cells to run; default: the whole :func:`~occam_l2r.fusion.plan.plan`.
        """
        cells = plan(self.config) if cells is None else cells
        self.out.mkdir(parents=True, exist_ok=True)
        done = load_done(self.results)
        records: dict[str, dict[str, Any]] = {}
        todo: OrderedDict[tuple[str, str, int], list[Cell]] = OrderedDict()
        cached = computed = 0
        for cell in cells:
            rec = done.get(cell.cell_id)
            if rec is not None and rec.get("fingerprint") == self.fingerprint(cell):
                records[cell.cell_id] = rec
                cached += 1
            else:
                todo.setdefault(cell.group, []).append(cell)
        compute.plan_heads(self.ctx, [c for group in todo.values() for c in group])
        _terminate_last_line(self.results)
        with self.results.open("a") as fh:
            for group in todo.values():
                for rec in self._run_group(group):
                    try:
                        fh.write(json.dumps(rec) + "\n")
                        fh.flush()
                    except OSError as err:  # a full disk: name the file (a torn last line is
                        # ended by the next run's _terminate_last_line, the cell recomputed)
                        raise OSError(err.errno, err.strerror, str(self.results)) from err
                    records[rec["cell"]] = rec
                    computed += 1
        self.ctx.logits.clear()
        ordered = [records[c.cell_id] for c in cells]
        return SweepResult(cells, ordered, self._long(ordered), computed, cached)

    def _long(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        splits = eval_splits(self.config)
        rows = [
            (r["kind"], r["name"], r["method"], r["seed"], split, metric, value)
            for r in records
            for split, ms in r["metrics"].items()
            if split in splits
            for metric, value in ms.items()
        ]
        return pd.DataFrame(rows, columns=LONG_COLUMNS)

    def _run_group(self, group: list[Cell]) -> list[dict[str, Any]]:
        kind = group[0].kind
        if kind == "single":
            outcomes = [compute.run_single(self.ctx, c) for c in group]
        elif kind == "metadata":
            outcomes = [compute.run_metadata(self.ctx, c) for c in group]
        elif kind == "topk":
            outcomes = compute.run_topk(self.ctx, group)
        else:
            outcomes = compute.run_fused(self.ctx, group)
        return [self._record(c, m, p, secs) for c, m, p, secs in outcomes]

    def _record(
        self, cell: Cell, metrics: dict[str, Any], params: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        return {
            "cell": cell.cell_id,
            "fingerprint": self.fingerprint(cell),
            "kind": cell.kind,
            "name": cell.name,
            "method": cell.method,
            "seed": cell.seed,
            "runs": list(cell.runs),
            "metrics": metrics,
            "params": params,
            "seconds": round(seconds, 4),
        }


def run_sweep(config: SweepConfig, cells: list[Cell] | None = None) -> SweepResult:
    """Run the cells of ``config`` (default: all of them) resumably; see :class:`Runner`."""
    return Runner(config).run(cells)
