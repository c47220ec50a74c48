"""Measurement: the ⊕R cascade of trained models against the full fusion on the test splits.

L2R² names the cascade as future work: run the FG model first and the second model (FULL or BG)
only for the images whose calibrated FG confidence is not above the fitted threshold ``t``. This
script classifies each test split of the embedded benchmark with the models and fitted fusion of a
finished ``python -m occam_l2r pipeline --config configs/synthetic/pipeline.yaml`` run, through the
``classify`` command (:func:`occam_l2r.cli.main`), once with ``cascade: false`` (both models on
every image) and once with ``cascade: true``, and prints per seed, pair and split: the images, the
share that needed the second model, the accuracy of the cascade and of the full fusion (labels
from the dataset's records), the accuracy ``fuse`` recorded for that cell in ``results.jsonl``, and
the images/s of each (the whole ``classify`` call: model loading, image reading, views, models,
output files; best of ``--repeats``, after one untimed call that takes first-use costs).

It checks on every image that the cascade's class equals the full fusion's, and that both equal
the class ``fuse``'s fitted threshold gives on ``predict``'s saved logits
(:func:`occam_l2r.reporting.predictions.fused_split`); it exits with status 1 if any differs.

**Image ids.** ``classify`` names an image of a list file by the line as written and resolves a
relative line against the list file's folder; the gt store that ``predict`` used is keyed by the
paths relative to the dataset root (``images/test_id/zero/001400.png``). So each list file goes
into a temporary folder holding, per top-level folder of those paths, a symbolic link to the
dataset root's folder (``<tmp>/images -> <root>/images``), and lists the store keys: the ids
match the store and nothing is written into the dataset.

The view settings (``image_size``, ``crop_box``, ...) and the dataset come from the FG run's
``config.yaml``, as its ``predict`` used them::

    python benchmarks/cascade_accuracy.py --run_dir checkpoints/pipeline/synthetic_rho097 \\
        [--pair FG_C+FULL FG_C+BG_S] [--seed 0 1 2] [--split test_id test_shift test_random] \\
        [--threads 1] [--repeats 1] [--batch_size 32] [--json rows.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from occam_l2r import cli
from occam_l2r.data.records import RecordDataset
from occam_l2r.errors import UserError
from occam_l2r.fusion.inputs import LogitsCache
from occam_l2r.fusion.saved import load_fusion
from occam_l2r.reporting.predictions import fused_split
from occam_l2r.store import SegmentationStore

#: non-empty once a ``classify`` call has run in this process (:func:`run_classify`)
_WARM: list[bool] = []
#: the views' settings a classify config takes from the FG run's DataModule
VIEW_KEYS = ("image_size", "score_threshold", "foreground", "fill", "crop_box", "fg_aspect")


@dataclass
class Row:
    """One (seed, pair, split) measurement."""

    seed: int
    pair: str
    t: float
    split: str
    images: int
    share: float
    acc_cascade: float
    acc_full: float
    acc_fuse: float
    ips_cascade: float
    ips_full: float
    same_as_full: bool
    same_as_fuse: bool


def data_settings(run: Path) -> dict[str, Any]:
    """The DataModule ``init_args`` of a ``fit`` run (its ``config.yaml``)."""
    path = run / "config.yaml"
    if not path.is_file():
        raise SystemExit(
            f"{path} not found: --run_dir must hold the pipeline's <view>/seed<k> runs"
        )
    return yaml.safe_load(path.read_text())["data"]["init_args"]


def load_dataset(data: dict[str, Any]) -> RecordDataset:
    """The dataset of a run's DataModule (``class_path`` + ``init_args``), as it was trained."""
    spec = data["dataset"]
    module, name = spec["class_path"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**(spec.get("init_args") or {}))


def store_dir(dataset: RecordDataset, data: dict[str, Any]) -> Path:
    """The segmentation store ``predict`` read (the DataModule's rule for ``segmentation``)."""
    seg = data.get("segmentation")
    if seg == "gt":
        path = Path(data.get("gt_store_dir") or Path(dataset.root) / "segmentations" / "gt")
    else:
        path = Path(str(seg))
    if not (path / "manifest.json").is_file():
        raise SystemExit(f"no segmentation store at {path}: run the pipeline (or predict) first")
    return path


def write_list(folder: Path, root: Path, split: str, ids: list[str]) -> Path:
    """A list file of ``ids`` (paths relative to ``root``) in ``folder``, whose lines resolve
    through links ``folder/<top> -> root/<top>``: the ids ``classify`` gives are ``ids`` (an
    absolute id is read as written)."""
    folder.mkdir(parents=True, exist_ok=True)
    for top in sorted({Path(i).parts[0] for i in ids if not Path(i).is_absolute()}):
        link = folder / top
        if not link.exists():
            link.symlink_to(root / top, target_is_directory=True)
    path = folder / f"{split}.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


def run_classify(config: dict[str, Any], path: Path, repeats: int) -> tuple[dict, float]:
    """``python -m occam_l2r classify --config path`` (best wall seconds of ``repeats``; the
    process's first call runs once more, untimed, so that no timing holds first-use costs)."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    best, out = float("inf"), None
    if not _WARM:
        cli.main(["classify", "--config", str(path)])
        _WARM.append(True)
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = cli.main(["classify", "--config", str(path)])
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return out, best


def measure(args: argparse.Namespace, tmp: Path) -> list[Row]:
    """Classify every (seed, pair, split) with and without the cascade."""
    run_dir, fusion_dir = Path(args.run_dir), Path(args.run_dir) / "fusion"
    rows, cache = [], LogitsCache(size=None)
    for seed in args.seed:
        runs = {v: run_dir / v / f"seed{seed}" for v in ("FG_C", "FULL", "BG_S")}
        data = data_settings(runs["FG_C"])
        dataset = load_dataset(data)
        store = store_dir(dataset, data)
        keys = set(SegmentationStore(store).ids())
        for pair in args.pair:
            fusion = load_fusion(fusion_dir, pair, "threshold", seed)
            record = dict(fusion.record)
            for view, given in zip(fusion.views, record["runs"], strict=True):
                if Path(given).parts[-2:] != runs[view].parts[-2:]:
                    raise SystemExit(f"{pair} seed {seed} was fused from {given}, not {runs[view]}")
            record["runs"] = [str(runs[v]) for v in fusion.views]
            for split in args.split:
                recs = dataset.records(split)
                ids = [r.image_id for r in recs]
                lacking = [i for i in ids if i not in keys]
                if lacking:
                    raise SystemExit(f"{store} lacks {len(lacking)} {split} ids, e.g. {lacking[0]}")
                labels = {r.image_id: r.label for r in recs}
                images = write_list(tmp / f"lists{seed}", Path(dataset.root), split, ids)
                base = {
                    "images": str(images), "checkpoints": {v: str(p) for v, p in runs.items()},
                    "fusion_dir": str(fusion_dir), "pair": pair, "method": "threshold",
                    "seed": seed, "segmentation": str(store), "fallback": "full",
                    "fallback_view": "FULL", "class_names": list(dataset.class_names),
                    "batch_size": args.batch_size, "device": "cpu",
                    **{k: data[k] for k in VIEW_KEYS},
                }  # fmt: skip
                out: dict[bool, tuple[dict, float]] = {}
                for cascade in (False, True):
                    name = f"s{seed}_{pair}_{split}_{'cascade' if cascade else 'full'}"
                    config = {**base, "output_dir": str(tmp / "out" / name), "cascade": cascade}
                    out[cascade] = run_classify(config, tmp / f"{name}.yaml", args.repeats)
                rows.append(
                    compare(seed, pair, split, out, labels, cache, record, runs, fusion_dir)
                )
                print(format_row(rows[-1]), flush=True)
    return rows


def compare(seed, pair, split, out, labels, cache, record, runs, fusion_dir) -> Row:  # noqa: ANN001
    """The :class:`Row` of one split from the two ``classify`` results."""
    (full, full_s), (cas, cas_s) = out[False], out[True]
    for summary in (full, cas):
        if summary["errors"]:
            raise SystemExit(f"{pair} {split}: {summary['errors']} images could not be classified")
    fr, cr = full["result"], cas["result"]
    ids = [r.image_id for r in fr.items]
    if ids != [r.image_id for r in cr.items]:
        raise SystemExit(f"{pair} {split}: the two runs classified different images")
    y = np.array([labels[i] for i in ids], np.int64)
    ref = fused_split(cache, fusion_dir, record, split, str(runs["FULL"]))
    if ref is None:
        raise SystemExit(f"{pair} seed {seed}: predict+fuse predictions cannot be reproduced")
    pos = {s: k for k, s in enumerate(ref.ids.tolist())}
    missing = [i for i in ids if i not in pos]
    if missing or len(ids) != len(pos):
        raise SystemExit(f"{split}: predict's logits and the listed images differ ({missing[:3]})")
    ref_pred = ref.pred[[pos[i] for i in ids]]
    n = len(ids)
    return Row(
        seed=seed, pair=pair, t=float(record["params"]["t"]), split=split, images=n,
        share=float(cr.second.mean()),
        acc_cascade=float((cr.fused.pred == y).mean()), acc_full=float((fr.fused.pred == y).mean()),
        acc_fuse=float(record["metrics"][split]["acc"]), ips_cascade=n / cas_s, ips_full=n / full_s,
        same_as_full=bool(np.array_equal(cr.fused.pred, fr.fused.pred)),
        same_as_fuse=bool(np.array_equal(fr.fused.pred, ref_pred)) and ref.matches is not False,
    )  # fmt: skip


HEADER = (
    "| seed | pair | t | split | images | 2nd model | acc cascade | acc full ⊕R | acc `fuse` "
    "| images/s cascade | images/s full | cascade = full | full = predict+fuse |"
)


def format_row(r: Row) -> str:
    """One Markdown table row."""
    yes = {True: "yes", False: "**NO**"}
    return (
        f"| {r.seed} | {r.pair} | {r.t:.3f} | {r.split} | {r.images} | {100 * r.share:.1f} % "
        f"| {100 * r.acc_cascade:.2f} | {100 * r.acc_full:.2f} | {100 * r.acc_fuse:.2f} "
        f"| {r.ips_cascade:.1f} | {r.ips_full:.1f} | {yes[r.same_as_full]} "
        f"| {yes[r.same_as_fuse]} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run_dir", default="checkpoints/pipeline/synthetic_rho097",
                    help="the pipeline's experiment_dir (<view>/seed<k> runs, fusion/)")  # fmt: skip
    ap.add_argument("--pair", nargs="+", default=["FG_C+FULL", "FG_C+BG_S"])
    ap.add_argument("--seed", nargs="+", type=int, default=[0])
    ap.add_argument("--split", nargs="+", default=["test_id", "test_shift", "test_random"])
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--repeats", type=int, default=1, help="images/s: best of this many runs")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threshold fusion (⊕R) of {args.run_dir}, CPU, {args.threads} thread(s)")
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    with tempfile.TemporaryDirectory() as d:
        try:
            rows = measure(args, Path(d))
        except UserError as err:  # a missing fusion cell, logits file, checkpoint, ...
            raise SystemExit(f"error: {err}") from None
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    bad = [r for r in rows if not (r.same_as_full and r.same_as_fuse)]
    for r in bad:
        print(f"{r.pair} seed {r.seed} {r.split}: predictions differ", file=sys.stderr)
    print("cascade = full fusion = predict+fuse on every image" if not bad else "MISMATCH")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
