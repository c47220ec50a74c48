"""Benchmark: the whole fusion ablation at FungiTastic's size.

Random logits with a spurious background (:mod:`occam_l2r.fusion.synthetic`) for FULL, FG_C
and BG_S, 3 seeds, 47k train / 9.5k val / 11k test samples and 215 classes; every fusion method
on FG_C+BG_S and FG_C+FULL (optionally the FULL×2 / FG_C×2 ensembles too). Target: <= 60 s on 2
CPU cores, for the ``fuse`` run only (writing the random logits files is not timed).

    .venv/bin/python benchmarks/bench_fusion.py [--threads 2] [--ensembles]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from occam_l2r.commands.fuse import SweepConfig, fuse
from occam_l2r.fusion.synthetic import write_synthetic_runs

TARGET_S = 60.0
SIZES = {"train": 47_000, "val": 9_500, "test": 11_000}
NUM_CLASSES = 215


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ensembles", action="store_true", help="also FULL×2 and FG_C×2")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        t0 = time.perf_counter()
        runs = write_synthetic_runs(
            root / "runs", num_classes=NUM_CLASSES, seeds=args.seeds, sizes=SIZES, noise=2.0
        )
        print(f"wrote random logits in {time.perf_counter() - t0:.1f} s (not timed)")
        t0 = time.perf_counter()
        result = fuse(
            SweepConfig(
                runs,
                output_dir=str(root / "out"),
                pairs=[("FG_C", "BG_S"), ("FG_C", "FULL")],
                ensembles=["FULL", "FG_C"] if args.ensembles else [],
                test_splits=["test"],
                summary_metric="macro_acc",
                select_metric="macro_acc",
            )
        )
        secs = time.perf_counter() - t0
        print((root / "out" / "summary.md").read_text())
        print(
            f"fusion ablation: {secs:.1f} s for {result['computed']} cells "
            f"({args.threads} threads); target {TARGET_S:.0f} s, ratio {secs / TARGET_S:.2f}"
        )


if __name__ == "__main__":
    main()
