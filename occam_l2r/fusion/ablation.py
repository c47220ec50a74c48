"""The ``fuse`` verb: every fusion method on every pair of views, over seeds, as tables.

``python -m occam_l2r fuse --config configs/<dataset>/fusion.yaml`` loads the logits of FULL,
FG and BG runs (one run dir per seed, ``<run_dir>/logits/<split>.npz``), and evaluates

- every single view (the base rows),
- every method of :data:`occam_l2r.fusion.fusers.METHOD_LABELS` on every pair (FG+BG, FG+FULL)
  with the runs of the same seed index, and on same-view ensembles (FULL×2, FG×2: seed ``s``
  with seed ``s+1``),
- optionally metadata prior fusion (FULL/FG + habitat, ...),

then writes ``fusion_table.{md,csv}`` (the paper's Table 9), ``summary.{md,csv}`` (Table 1:
deltas vs FULL, one column per test split) and the weighted-logits weights (CSV + Figure 8).

Resumable: each finished (kind, pair, method, seed) cell is appended to ``results.jsonl`` with a
fingerprint of its input files (path, size, mtime) and settings; a rerun recomputes only cells
that are missing or whose fingerprint changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from occam_l2r.fusion import methods as M
from occam_l2r.fusion import report, tables
from occam_l2r.fusion.fusers import METHOD_LABELS, Calibration, HeadConfig, build_fuser
from occam_l2r.fusion.inputs import LogitsPair, align_pair, load_run_split, resolve_logits_path
from occam_l2r.fusion.metadata import MetadataPrior, align_metadata, metadata_fusion
from occam_l2r.logits import LogitsFile

Metric = Literal["acc", "macro_acc"]


@dataclass
class MetadataConfig:
    """Metadata prior fusion rows (L2R² Table 4).

    Attributes:
        table: CSV or parquet file with one row per sample: an id column and metadata columns.
        fields: metadata columns to use (e.g. ``[habitat, substrate, month]``).
        id_column: the column holding the sample ids of the logits files.
        views: the image models to combine with the prior.
        smoothing: additive smoothing of the train counts.
    """

    table: str
    fields: list[str]
    id_column: str = "image_id"
    views: list[str] = field(default_factory=lambda: ["FULL", "FG_C"])
    smoothing: float = 1.0


@dataclass
class Cell:
    """One unit of work: a (kind, name, method, seed) and the runs it reads."""

    kind: str  # single | pair | ensemble | metadata
    name: str
    method: str
    seed: int
    runs: tuple[str, ...]
    settings: dict[str, Any]

    @property
    def cell_id(self) -> str:
        return f"{self.kind}|{self.name}|{self.method}|seed{self.seed}"


def _fingerprint(files: list[Path], settings: dict[str, Any]) -> str:
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    blob = json.dumps({"files": stats, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _metrics(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    known = labels >= 0
    return {
        "acc": M.accuracy(pred[known], labels[known]),
        "macro_acc": M.macro_accuracy(pred[known], labels[known]),
    }


class Ablation:
    """Plans, runs (resumably) and tabulates the fusion ablation; see the module docstring."""

    def __init__(
        self,
        runs: dict[str, list[str]],
        output_dir: str = "results/fusion",
        pairs: list[tuple[str, str]] | None = None,
        ensembles: list[str] | None = None,
        baseline: str = "FULL",
        methods: list[str] | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_splits: list[str] | None = None,
        select_metric: Metric = "acc",
        summary_metric: Metric = "acc",
        summary_methods: list[str] | None = None,
        heads: HeadConfig | None = None,
        metadata: MetadataConfig | None = None,
        sample_reports: list[str] | None = None,
    ) -> None:
        self.runs = {v: [str(r) for r in rs] for v, rs in runs.items()}
        self.out = Path(output_dir)
        self.pairs = [tuple(p) for p in (pairs if pairs is not None else self._default_pairs())]
        self.ensembles = list(ensembles if ensembles is not None else [])
        self.baseline = baseline
        self.methods = list(methods if methods is not None else METHOD_LABELS)
        self.train_split, self.val_split = train_split, val_split
        self.test_splits = list(test_splits if test_splits is not None else ["test"])
        self.select_metric, self.summary_metric = select_metric, summary_metric
        self.summary_methods = summary_methods or [
            "best",
            "max_conf",
            "weighted_logits",
            "threshold",
        ]
        self.heads = heads or HeadConfig()
        self.metadata = metadata
        self.sample_reports = list(sample_reports or [])
        self._validate()
        self._files: OrderedDict[tuple[str, str], LogitsFile] = OrderedDict()
        self._temps: dict[tuple[str, str], Any] = {}
        self.computed = 0
        self.cached = 0
        self.records: list[dict[str, Any]] = []

    def _default_pairs(self) -> list[tuple[str, str]]:
        fg = [v for v in self.runs if v.startswith("FG")]
        other = [v for v in self.runs if v.startswith("BG")] + [v for v in self.runs if v == "FULL"]
        return [(f, o) for f in fg[:1] for o in other]

    def _validate(self) -> None:
        if not self.runs:
            raise ValueError("`runs` is empty: give run dirs per view, e.g. {FULL: [dir_seed0]}")
        unknown = [m for m in self.methods if m not in METHOD_LABELS]
        if unknown:
            raise ValueError(f"unknown fusion methods {unknown}; choose from {list(METHOD_LABELS)}")
        for view in [v for p in self.pairs for v in p] + self.ensembles + [self.baseline]:
            if view not in self.runs:
                raise ValueError(
                    f"view {view!r} is used in pairs/ensembles/baseline but has no runs; "
                    f"`runs` lists {list(self.runs)}"
                )
        for view in self.ensembles:
            if len(self.runs[view]) < 2:
                raise ValueError(
                    f"ensemble {view}x2 needs runs of at least 2 seeds, {view} has "
                    f"{len(self.runs[view])}; add seeds or remove it from `ensembles`"
                )

    # ----------------------------------------------------------------------------- planning
    def splits(self) -> list[str]:
        return [self.val_split] + self.test_splits

    def plan(self) -> list[Cell]:
        """All cells of the ablation, in table order."""
        cells: list[Cell] = []
        for view, rs in self.runs.items():
            cells += [Cell("single", view, "model", s, (r,), {}) for s, r in enumerate(rs)]
        if self.metadata is not None:
            md = asdict(self.metadata)
            for f in self.metadata.fields:
                for view in self.metadata.views:
                    if view not in self.runs:
                        raise ValueError(f"metadata view {view!r} has no runs in `runs`")
                    cells += [
                        Cell("metadata", f"{view} + {f}", "prior", s, (r,), {**md, "field": f})
                        for s, r in enumerate(self.runs[view])
                    ]
        groups = [("pair", f"{a}+{b}", a, b, 0) for a, b in self.pairs]
        groups += [("ensemble", f"{v}x2", v, v, 1) for v in self.ensembles]
        for kind, name, a, b, shift in groups:
            n = min(len(self.runs[a]), len(self.runs[b]))
            seeds = range(1) if (shift and n == 2) else range(n)
            for s in seeds:
                ra, rb = self.runs[a][s], self.runs[b][(s + shift) % n]
                for m in self.methods:
                    st = asdict(self.heads) if m in ("concat_fc", "weighted_logits") else {}
                    cells.append(Cell(kind, name, m, s, (ra, rb), st))
        return cells

    def _files_of(self, cell: Cell) -> list[Path]:
        splits = self.splits()
        if cell.method in ("concat_fc", "weighted_logits") or cell.kind == "metadata":
            splits = [self.train_split] + splits
        files = [resolve_logits_path(r, s) for r in cell.runs for s in splits]
        if cell.kind == "metadata":
            files.append(Path(self.metadata.table))
        return files

    # ------------------------------------------------------------------------------ running
    def _load(self, run: str, split: str) -> LogitsFile:
        key = (run, split)
        if key not in self._files:
            self._files[key] = load_run_split(run, split)
            while len(self._files) > 12:
                self._files.popitem(last=False)
        self._files.move_to_end(key)
        return self._files[key]

    def _pair(self, cell: Cell, split: str) -> LogitsPair:
        ra, rb = cell.runs
        v1, v2 = cell.name.split("+") if cell.kind == "pair" else (cell.name, cell.name)
        return align_pair(self._load(ra, split), self._load(rb, split), f"{v1} {ra}", f"{v2} {rb}")

    def _run_fused(self, cells: list[Cell]) -> list[dict[str, Any]]:
        """Fit and evaluate the methods of one (pair, seed) group."""
        c0 = cells[0]
        needs_train = any(c.method in ("concat_fc", "weighted_logits") for c in cells)
        train = self._pair(c0, self.train_split) if needs_train else None
        data = {s: self._pair(c0, s) for s in self.splits()}
        calib = Calibration(data[self.val_split], keys=c0.runs, store=self._temps)
        out = []
        for cell in cells:
            t0 = time.perf_counter()
            fuser = build_fuser(cell.method, self.heads, seed=cell.seed)
            fuser.fit(train, data[self.val_split], calib)
            metrics = {}
            for split, pair in data.items():
                fused = fuser.predict(pair)
                metrics[split] = _metrics(fused.pred, pair.labels)
                if cell.method in self.sample_reports:
                    v1, v2 = (cell.name.split("+") + [cell.name])[:2]
                    df = report.sample_report(pair, fused, v1, v2 if v2 != v1 else f"{v1}_b")
                    dest = self.out / "samples" / cell.name / f"seed{cell.seed}"
                    dest.mkdir(parents=True, exist_ok=True)
                    df.to_csv(dest / f"{cell.method}_{split}.csv", index=False)
            out.append(self._record(cell, metrics, fuser.params(), time.perf_counter() - t0))
        return out

    def _run_single(self, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        metrics = {}
        for split in self.splits():
            lf = self._load(cell.runs[0], split)
            metrics[split] = _metrics(lf.logits.argmax(1), lf.labels)
        return self._record(cell, metrics, {}, time.perf_counter() - t0)

    def _run_metadata(self, cell: Cell) -> dict[str, Any]:
        t0 = time.perf_counter()
        md = self.metadata
        path = Path(md.table)
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        fld = cell.settings["field"]
        for col in (md.id_column, fld):
            if col not in table.columns:
                raise ValueError(
                    f"metadata table {path} has no column {col!r} (columns: {list(table.columns)})"
                )
        mapping = dict(zip(table[md.id_column].astype(str), table[fld], strict=True))
        train = self._load(cell.runs[0], self.train_split)
        prior = MetadataPrior(md.smoothing).fit(
            train.labels, align_metadata(train.ids, mapping, fld), train.num_classes
        )
        metrics = {}
        for split in self.splits():
            lf = self._load(cell.runs[0], split)
            fused = metadata_fusion(lf.logits, align_metadata(lf.ids, mapping, fld), prior)
            metrics[split] = _metrics(fused.pred, lf.labels)
        return self._record(cell, metrics, {}, time.perf_counter() - t0)

    def _record(self, cell: Cell, metrics: dict, params: dict, seconds: float) -> dict[str, Any]:
        return {
            "cell": cell.cell_id,
            "fingerprint": _fingerprint(self._files_of(cell), cell.settings),
            "kind": cell.kind,
            "name": cell.name,
            "method": cell.method,
            "seed": cell.seed,
            "runs": list(cell.runs),
            "metrics": metrics,
            "params": params,
            "seconds": round(seconds, 4),
        }

    def _load_done(self) -> dict[str, dict[str, Any]]:
        path = self.out / "results.jsonl"
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

    def run(self) -> pd.DataFrame:
        """Compute every missing cell, append it to ``results.jsonl``; return the long table."""
        self.out.mkdir(parents=True, exist_ok=True)
        done = self._load_done()
        cells = self.plan()
        todo: OrderedDict[tuple[str, str, int], list[Cell]] = OrderedDict()
        records: dict[str, dict[str, Any]] = {}
        for cell in cells:
            rec = done.get(cell.cell_id)
            if rec is not None and rec["fingerprint"] == _fingerprint(
                self._files_of(cell), cell.settings
            ):
                records[cell.cell_id] = rec
                self.cached += 1
            else:
                todo.setdefault((cell.kind, cell.name, cell.seed), []).append(cell)
        results = self.out / "results.jsonl"
        if results.is_file() and results.stat().st_size:
            with results.open("rb+") as fh:
                fh.seek(-1, 2)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")  # terminate a line cut short by an interrupted run
        with results.open("a") as fh:
            for (kind, _, _), group in todo.items():
                if kind == "single":
                    new = [self._run_single(c) for c in group]
                elif kind == "metadata":
                    new = [self._run_metadata(c) for c in group]
                else:
                    new = self._run_fused(group)
                for rec in new:
                    fh.write(json.dumps(rec) + "\n")
                    fh.flush()
                    records[rec["cell"]] = rec
                    self.computed += 1
        self._files.clear()
        rows = [
            (r["kind"], r["name"], r["method"], r["seed"], split, metric, value)
            for c in cells
            for r in [records[c.cell_id]]
            for split, ms in r["metrics"].items()
            if split in self.splits()
            for metric, value in ms.items()
        ]
        self.records = [records[c.cell_id] for c in cells]
        return pd.DataFrame(
            rows, columns=["kind", "name", "method", "seed", "split", "metric", "value"]
        )

    # ------------------------------------------------------------------------------- output
    def write(self, long: pd.DataFrame) -> dict[str, Path]:
        """Write Table 9, the Table 1 summary and the weighted-logits weights."""
        long = long.astype({"value": float})
        agg = tables.aggregate(long)
        agg.to_csv(self.out / "metrics_long.csv", index=False)
        best = tables.best_methods(agg, self.val_split, self.select_metric)
        t9, md9 = tables.table9(agg, self.splits(), best, METHOD_LABELS)
        tables.write_table(
            t9, md9, self.out / "fusion_table",
            f"# Fusion ablation (mean ± std over seeds, %); Best selected on {self.val_split} "
            f"{self.select_metric}",
        )  # fmt: skip
        t1, md1 = tables.summary_table(
            agg, self.test_splits, self.summary_metric, self.baseline, best, self.summary_methods
        )
        tables.write_table(
            t1, md1, self.out / "summary",
            f"# Summary: {self.summary_metric} (%) as delta vs {self.baseline}, mean over seeds",
        )  # fmt: skip
        paths = {"fusion_table": self.out / "fusion_table.md", "summary": self.out / "summary.md"}
        for rec in self.records:
            if rec["method"] == "weighted_logits" and "w1" in rec["params"]:
                v1, v2 = (rec["name"].split("+") + [rec["name"]])[:2]
                lf = self._class_names(rec["runs"][0])
                wt = report.weights_table(rec["params"]["w1"], rec["params"]["w2"], lf)
                stem = self.out / "weights" / f"{rec['name']}_seed{rec['seed']}"
                stem.parent.mkdir(parents=True, exist_ok=True)
                wt.to_csv(stem.with_suffix(".csv"), index=False)
                if rec["seed"] == 0:
                    report.plot_weights(wt, stem.with_suffix(".png"), v1, v2)
        return paths

    def _class_names(self, run: str) -> list[str]:
        try:
            return LogitsFile.load(resolve_logits_path(run, self.val_split)).class_names
        except (OSError, ValueError):
            return []


def fuse(
    runs: dict[str, list[str]],
    output_dir: str = "results/fusion",
    pairs: list[tuple[str, str]] | None = None,
    ensembles: list[str] | None = None,
    baseline: str = "FULL",
    methods: list[str] | None = None,
    train_split: str = "train",
    val_split: str = "val",
    test_splits: list[str] | None = None,
    select_metric: Metric = "acc",
    summary_metric: Metric = "acc",
    summary_methods: list[str] | None = None,
    heads: HeadConfig | None = None,
    metadata: MetadataConfig | None = None,
    sample_reports: list[str] | None = None,
) -> dict[str, Any]:
    """Run the fusion ablation and write its tables.

    Args:
        runs: view name (FULL, FG_C, BG_S, ...) -> run dirs, one per seed, in seed order.
        output_dir: where results.jsonl, the tables and the weights go.
        pairs: ``(input 1, input 2)`` view pairs; input 1 is the robust one (⊕R trusts it).
            Default: the first FG view with every BG view and FULL.
        ensembles: views fused with themselves across seeds (``FULL`` -> FULL × 2).
        baseline: the view that Table 1 reports deltas against.
        methods: fusion methods (default: all, see ``METHOD_LABELS``).
        train_split: split the learnt heads are trained on (and metadata priors counted on).
        val_split: split temperatures, thresholds and α are fitted on; ⊕* selects on it.
        test_splits: evaluation splits (Table 1 has one column per split).
        select_metric: validation metric of the ⊕* selection.
        summary_metric: metric of the Table 1 summary (``macro_acc`` for imbalanced data).
        summary_methods: Table 1 rows per pair (``best`` is ⊕*).
        heads: training settings of concat_fc and weighted_logits.
        metadata: optional metadata prior fusion rows.
        sample_reports: methods whose per-sample reports are written (samples/...csv).

    Returns:
        Paths of the tables and the counts of computed / cached cells.
    """
    ab = Ablation(
        runs, output_dir, pairs, ensembles, baseline, methods, train_split, val_split,
        test_splits, select_metric, summary_metric, summary_methods, heads, metadata,
        sample_reports,
    )  # fmt: skip
    t0 = time.perf_counter()
    long = ab.run()
    paths = ab.write(long)
    secs = time.perf_counter() - t0
    print(
        f"fuse: {ab.computed} cells computed, {ab.cached} cached, {secs:.1f} s; "
        f"tables in {paths['fusion_table']} and {paths['summary']}"
    )
    return {**{k: str(v) for k, v in paths.items()}, "computed": ab.computed, "cached": ab.cached}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r fuse --config FILE`` (jsonargparse; ``--print_config`` works)."""
    from jsonargparse import CLI

    return CLI(fuse, args=argv, as_positional=False, prog="python -m occam_l2r fuse")
