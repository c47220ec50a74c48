"""The ``discover`` verb: object discovery (OCCAM Table 1), FG-ARI and mBO of mask sources.

``python -m occam_l2r discover --config configs/movi/discover.yaml`` scores segmentation stores
of class-agnostic masks (``python -m occam_l2r segment`` writes them) against the ground-truth
instance masks of one or more datasets, with the conventions of :mod:`occam_l2r.discovery`::

    benchmarks:
      - name: MOVi-C                       # a column pair of the table
        dataset:
          class_path: occam_l2r.data.datasets.movi.MOVi
          init_args: {root: /data/movi, level: C}
        stores:                            # table rows: mask source -> store (name or path)
          SAM: /data/movi/segmentations/movi_c_sam_auto
          GT: gt                           # <dataset root>/segmentations/gt, built on first use
    output_dir: results/discovery

It writes, under ``output_dir`` (atomically): ``per_image.csv`` (benchmark, source, image_id,
split, gt_objects, pred_masks, fg_ari, mbo), ``summary.json`` (per benchmark and source: the
means over images, overall and per split, the store and the conventions) and ``table.md`` (one
row per mask source, FG-ARI and mBO in % per benchmark, like Table 1). Other code calls
:func:`discover`; the command line goes through :func:`main`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from occam_l2r.commands import run_function
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.discovery import (
    CONVENTIONS,
    FORK_CONVENTIONS,
    Convention,
    ImageScore,
    markdown_table,
    score_records,
    score_rows,
    summarize,
)
from occam_l2r.gt_store import build_gt_store
from occam_l2r.store import SegmentationStore, atomic_write_text
from occam_l2r.store_location import GT_STORE, open_store, resolve_store

__all__ = ["Benchmark", "discover", "main"]

CSV_FIELDS = [
    "benchmark",
    "source",
    "image_id",
    "split",
    "gt_objects",
    "pred_masks",
    "fg_ari",
    "mbo",
]


@dataclass
class Benchmark:
    """One dataset of the table and the mask sources scored on it.

    Attributes:
        name: the benchmark's name in the table (``MOVi-C``).
        dataset: the dataset module; its ground-truth instance masks are the reference.
        stores: mask source (a row of the table) -> segmentation store: a bare name is
            ``<dataset root>/segmentations/<name>``, a value with a ``/`` a path
            (:func:`occam_l2r.store_location.resolve_store`). ``gt`` stands for the dataset's
            ground-truth store, built (or completed) on first use: it scores 1.0 on both
            metrics, a check of the setup.
        splits: the splits scored (default: the dataset's test splits).
        limit: score at most this many images of each split (the first ones; default: all).
        gt_store_dir: where the ``gt`` store lives; default ``<dataset root>/segmentations/gt``.
        conventions: mask source -> how its masks become one prediction per pixel
            (:data:`occam_l2r.discovery.Convention`): ``ocl`` (default) or ``occam_fork`` (the
            OCCAM authors' fork, their Table 1 CropFormer row).
        channels: ``occam_fork``: the ground truth's channel count (11 for MOVi-C, 24 for
            MOVi-E in the fork's configs); default the image's objects + 1.
    """

    name: str
    dataset: RecordDataset
    stores: dict[str, str] = field(default_factory=dict)
    splits: list[str] | None = None
    limit: int | None = None
    gt_store_dir: str | None = None
    conventions: dict[str, Convention] = field(default_factory=dict)
    channels: int | None = None


def _records(bench: Benchmark) -> dict[str, list[Record]]:
    splits = bench.splits if bench.splits is not None else list(bench.dataset.test_splits)
    if not splits:
        raise ValueError(
            f"benchmark {bench.name!r}: {type(bench.dataset).__name__} has no test split; "
            "set splits"
        )
    out = {}
    for split in splits:
        records = bench.dataset.records(split)
        out[split] = records if bench.limit is None else records[: bench.limit]
    return out


def _open_store(bench: Benchmark, spec: str, records: list[Record]) -> SegmentationStore:
    root, gt_dir = bench.dataset.root, bench.gt_store_dir
    if spec == GT_STORE:
        build_gt_store(bench.dataset, resolve_store(GT_STORE, root, gt_dir), records=records)
    return open_store(spec, root, gt_dir)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        )
    return buf.getvalue()


def discover(
    benchmarks: list[Benchmark],
    output_dir: str = "results/discovery",
    on_missing: Literal["error", "skip"] = "error",
) -> dict[str, Any]:
    """Score every mask source of every benchmark; write the per-image CSV, summary and table.

    Prints the table and ``discover: N images scored ... in S s; results in DIR``.

    Args:
        benchmarks: the datasets (table columns) and their mask sources (table rows).
        output_dir: where ``per_image.csv``, ``summary.json`` and ``table.md`` are written.
        on_missing: an image absent from a store stops the run with an error naming it
            (``error``) or is left out of that source's means and counted (``skip``).

    Returns:
        ``results`` (benchmark -> source -> means), and the paths ``per_image``, ``summary``
        and ``table`` (as strings).
    """
    names = [b.name for b in benchmarks]
    if not benchmarks or len(set(names)) != len(names):
        raise ValueError(f"discover needs benchmarks with distinct names; got {names}")
    for bench in benchmarks:
        if not bench.stores:
            raise ValueError(f"benchmark {bench.name!r} has no stores (mask source -> folder)")
        unknown = sorted(set(bench.conventions) - set(bench.stores))
        if unknown:
            raise ValueError(f"benchmark {bench.name!r}: conventions for unknown sources {unknown}")
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    results: dict[str, dict[str, dict[str, Any]]] = {}
    details: dict[str, Any] = {}
    for bench in benchmarks:
        bench.dataset.prepare()
        by_split = _records(bench)
        records = [r for recs in by_split.values() for r in recs]
        results[bench.name] = {}
        details[bench.name] = {
            "dataset": type(bench.dataset).__name__,
            "root": str(bench.dataset.root),
            "splits": {s: len(r) for s, r in by_split.items()},
            "sources": {},
        }
        for source, path in bench.stores.items():
            store = _open_store(bench, path, records)
            convention = bench.conventions.get(source, "ocl")
            scores, missing = score_records(
                bench.dataset, store, records, on_missing, convention, bench.channels
            )
            summary = summarize(scores)
            results[bench.name][source] = summary
            per_split = {s: summarize(_of_split(scores, s)) for s in by_split}
            details[bench.name]["sources"][source] = {
                "store": str(store.path),
                "segmenter": store.segmenter,
                "convention": convention,
                **summary,
                "missing": len(missing),
                "per_split": per_split,
            }
            rows += score_rows(bench.name, source, scores)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "per_image": out / "per_image.csv",
        "summary": out / "summary.json",
        "table": out / "table.md",
    }
    table = markdown_table(results)
    atomic_write_text(_csv_text(rows), paths["per_image"])
    body: dict[str, Any] = {"conventions": CONVENTIONS, "benchmarks": details}
    if any("occam_fork" in b.conventions.values() for b in benchmarks):
        body["conventions_occam_fork"] = FORK_CONVENTIONS
    atomic_write_text(json.dumps(_json_safe(body), indent=2) + "\n", paths["summary"])
    atomic_write_text(table, paths["table"])
    secs = time.perf_counter() - t0
    print(table, end="")
    print(f"discover: {len(rows)} images scored in {secs:.1f} s; results in {out}")
    return {"results": results, **{k: str(v) for k, v in paths.items()}}


def _of_split(scores: list[ImageScore], split: str) -> list[ImageScore]:
    return [s for s in scores if s.split == split]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m occam_l2r discover --config FILE`` (``--print_config`` and ``--help`` work).

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    return run_function(discover, argv, prog="python -m occam_l2r discover")
