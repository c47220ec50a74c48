"""Runs the cells of a fusion sweep, resumably, against ``<output_dir>/results.jsonl``.

Each finished cell is appended to ``results.jsonl`` as one JSON line (its metrics per split and
its learnt parameters) with a fingerprint of its input files (path, size, mtime) and settings;
a rerun recomputes only the cells that are missing or whose fingerprint changed. A line cut
short by an interrupted run is skipped (that cell is redone).

Three kinds of cell (:class:`occam_l2r.fusion.plan.Cell`):

- ``single``: one model's own predictions;
- ``pair`` / ``ensemble``: the fused methods of one (pair, seed) group, fitted together so that
  they share the aligned inputs and the temperatures (and the per-sample reports are written);
- ``metadata``: one model with a metadata prior counted on the train split.

Loaded logits files are kept in a small LRU (:class:`LogitsCache`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam_l2r.fusion import methods as M
from occam_l2r.fusion import report
from occam_l2r.fusion.fusers import Calibration, build_fuser
from occam_l2r.fusion.inputs import LogitsPair, align_pair, load_run_split, resolve_logits_path
from occam_l2r.fusion.metadata import MetadataPrior, align_metadata, metadata_fusion
from occam_l2r.fusion.plan import Cell, SweepConfig, eval_splits, plan
from occam_l2r.logits import LogitsFile

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


class LogitsCache:
    """Least-recently-used memo of loaded (and checked) logits files, by (run dir, split).

    Args:
        size: how many files are kept.
    """

    def __init__(self, size: int = 12) -> None:
        self.size = size
        self._files: OrderedDict[tuple[str, str], LogitsFile] = OrderedDict()

    def get(self, run: str, split: str) -> LogitsFile:
        """The logits file of ``run`` and ``split`` (loaded on first use)."""
        key = (run, split)
        if key not in self._files:
            self._files[key] = load_run_split(run, split)
            while len(self._files) > self.size:
                self._files.popitem(last=False)
        self._files.move_to_end(key)
        return self._files[key]

    def clear(self) -> None:
        self._files.clear()


def fingerprint(files: list[Path], settings: dict[str, Any]) -> str:
    """Hash of the input files (path, size, mtime) and the settings of a cell."""
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"files": stats, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def split_metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``acc`` and ``macro_acc`` over the labelled samples (label ``>= 0``)."""
    known = labels >= 0
    return {
        "acc": M.accuracy(pred[known], labels[known]),
        "macro_acc": M.macro_accuracy(pred[known], labels[known]),
    }


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


class Runner:
    """Computes the cells of one sweep; see the module docstring.

    Args:
        config: the sweep configuration.
    """

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.out = Path(config.output_dir)
        self.results = self.out / "results.jsonl"
        self.logits = LogitsCache()
        self._temps: dict[tuple[str, str], Any] = {}

    def files_of(self, cell: Cell) -> list[Path]:
        """The input files of a cell (logits of every split it reads, the metadata table)."""
        splits = eval_splits(self.config)
        if cell.needs_train:
            splits = [self.config.train_split, *splits]
        files = [resolve_logits_path(r, s) for r in cell.runs for s in splits]
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
        _terminate_last_line(self.results)
        with self.results.open("a") as fh:
            for group in todo.values():
                for rec in self._run_group(group):
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()
                    records[rec["cell"]] = rec
                    computed += 1
        self.logits.clear()
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
            return [self._run_single(c) for c in group]
        if kind == "metadata":
            return [self._run_metadata(c) for c in group]
        return self._run_fused(group)

    def _pair(self, cell: Cell, split: str) -> LogitsPair:
        (ra, rb), (n1, n2) = cell.runs, cell.input_labels
        z1, z2 = self.logits.get(ra, split), self.logits.get(rb, split)
        return align_pair(z1, z2, f"{n1} {ra}", f"{n2} {rb}")

    def _run_fused(self, cells: list[Cell]) -> list[dict[str, Any]]:
        """Fit and evaluate the methods of one (pair, seed) group."""
        c0, cfg = cells[0], self.config
        needs_train = any(c.needs_train for c in cells)
        train = self._pair(c0, cfg.train_split) if needs_train else None
        data = {s: self._pair(c0, s) for s in eval_splits(cfg)}
        calib = Calibration(data[cfg.val_split], keys=(c0.runs[0], c0.runs[1]), store=self._temps)
        out = []
        for cell in cells:
            t0 = time.perf_counter()
            fuser = build_fuser(cell.method, cfg.heads, seed=cell.seed)
            fuser.fit(train, data[cfg.val_split], calib)
            metrics = {}
            for split, pair in data.items():
                fused = fuser.predict(pair)
                metrics[split] = split_metrics(fused.pred, pair.labels)
                if cell.method in (cfg.sample_reports or []):
                    self._write_samples(
                        cell, split, report.sample_report(pair, fused, *cell.input_labels)
                    )
            out.append(self._record(cell, metrics, fuser.params(), time.perf_counter() - t0))
        return out

    def _write_samples(self, cell: Cell, split: str, df: pd.DataFrame) -> None:
        dest = self.out / "samples" / cell.name / f"seed{cell.seed}"
        dest.mkdir(parents=True, exist_ok=True)
        df.to_csv(dest / f"{cell.method}_{split}.csv", index=False)

    def _run_single(self, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        metrics = {}
        for split in eval_splits(self.config):
            lf = self.logits.get(cell.runs[0], split)
            metrics[split] = split_metrics(lf.logits.argmax(1), lf.labels)
        return self._record(cell, metrics, {}, time.perf_counter() - t0)

    def _run_metadata(self, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        md = self.config.metadata
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
        train = self.logits.get(cell.runs[0], self.config.train_split)
        prior = MetadataPrior(md.smoothing).fit(
            train.labels, align_metadata(train.ids, mapping, fld), train.num_classes
        )
        metrics = {}
        for split in eval_splits(self.config):
            lf = self.logits.get(cell.runs[0], split)
            fused = metadata_fusion(lf.logits, align_metadata(lf.ids, mapping, fld), prior)
            metrics[split] = split_metrics(fused.pred, lf.labels)
        return self._record(cell, metrics, {}, time.perf_counter() - t0)

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
