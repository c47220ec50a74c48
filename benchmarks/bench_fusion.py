"""Benchmark: the whole fusion ablation at FungiTastic's size, or at ImageNet-1k's.

Random logits with a spurious background (:mod:`occam_l2r.fusion.synthetic`) for FULL, FG_C
and BG_S; every fusion method on FG_C+BG_S and FG_C+FULL (optionally the FULL×2 / FG_C×2
ensembles too). Writing the random logits files is not timed.

- ``--size fungitastic`` (default): 3 seeds, 47k train / 9.5k val / 11k test samples and 215
  classes. Target: <= 30 s on 2 CPU cores for the ``fuse`` run, with the heads' default epochs
  (it was 60 s before the learnt heads trained together on in-memory batches).
- ``--size imagenet``: one seed, 1,281,167 train / 50,000 val / 50,000 test samples and 1000
  classes, stored as float16 (format 3; ``--dtype float32`` for the 5.1 GB-per-file format 2).
  The files are written streamed and ``fuse`` maps them (``LogitsCache``), so the target is
  memory: peak RSS (``ru_maxrss`` of this process; no children are spawned) <= 12 GiB on the
  24 GiB machine. The learnt heads run ``--epochs`` epochs (default 1 at this size: ~5k steps
  per epoch and head; memory does not grow with epochs, time does linearly).

    .venv/bin/python benchmarks/bench_fusion.py [--threads 2] [--ensembles]
    nice -n 10 .venv/bin/python benchmarks/bench_fusion.py --size imagenet [--epochs 30]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from occam_l2r.commands.fuse import SweepConfig, fuse
from occam_l2r.fusion.fusers import HeadConfig
from occam_l2r.fusion.synthetic import write_synthetic_runs

#: the time target of ``--size fungitastic``; ``--size imagenet`` has only the memory target.
TARGET_S = 30.0
TARGET_RSS_GIB = 12.0
SIZES: dict[str, dict[str, Any]] = {
    "fungitastic": {"sizes": {"train": 47_000, "val": 9_500, "test": 11_000}, "classes": 215,
                    "seeds": 3, "dtype": "float32", "epochs": None},
    "imagenet": {"sizes": {"train": 1_281_167, "val": 50_000, "test": 50_000}, "classes": 1000,
                 "seeds": 1, "dtype": "float16", "epochs": 1},
}  # fmt: skip
#: FungiTastic's numbers, kept as names for callers of the default size.
NUM_CLASSES = SIZES["fungitastic"]["classes"]


def peak_rss_gib() -> tuple[float, float]:
    """Peak RSS of this process and of its waited-for children, GiB (``ru_maxrss`` is KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return own / 2**20, kids / 2**20


def run(
    root: Path,
    sizes: dict[str, int],
    num_classes: int,
    seeds: int,
    dtype: str = "float32",
    epochs: int | None = None,
    ensembles: bool = False,
    noise: float = 2.0,
) -> dict[str, Any]:
    """Write the random runs under ``root`` and fuse them; the ``fuse`` result and timings."""
    t0 = time.perf_counter()
    runs = write_synthetic_runs(
        root / "runs", num_classes=num_classes, seeds=seeds, sizes=sizes, noise=noise,
        dtype=np.dtype(dtype),
    )  # fmt: skip
    write_s = time.perf_counter() - t0
    rss_write = peak_rss_gib()[0]
    t0 = time.perf_counter()
    result = fuse(
        SweepConfig(
            runs,
            output_dir=str(root / "out"),
            pairs=[("FG_C", "BG_S"), ("FG_C", "FULL")],
            ensembles=["FULL", "FG_C"] if ensembles else [],
            test_splits=["test"],
            summary_metric="macro_acc",
            select_metric="macro_acc",
            heads=None if epochs is None else HeadConfig(max_epochs=epochs),
        )
    )
    return {"result": result, "write_s": write_s, "fuse_s": time.perf_counter() - t0,
            "rss_write_gib": rss_write, "summary": (root / "out" / "summary.md").read_text()}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="fungitastic")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seeds", type=int, default=None, help="default: 3 (fungitastic), 1")
    parser.add_argument("--dtype", choices=["float32", "float16"], default=None,
                        help="stored logits (default: float32 fungitastic, float16 imagenet)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the learnt heads (default: the heads' own, 1 for imagenet)")  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the split sizes (tests)")
    parser.add_argument("--ensembles", action="store_true", help="also FULL×2 and FG_C×2")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    args = parser.parse_args(argv)
    spec = SIZES[args.size]
    sizes = {k: max(2, int(v * args.scale)) for k, v in spec["sizes"].items()}
    seeds = args.seeds or spec["seeds"]
    dtype = args.dtype or spec["dtype"]
    epochs = args.epochs if args.epochs is not None else spec["epochs"]
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        out = run(Path(tmp), sizes, spec["classes"], seeds, dtype, epochs, args.ensembles)
    print(out["summary"])
    secs = out["fuse_s"]
    print(f"wrote random logits in {out['write_s']:.1f} s (not timed; peak RSS so far "
          f"{out['rss_write_gib']:.2f} GiB)")  # fmt: skip
    shape = " / ".join(f"{v:,}" for v in sizes.values())
    print(f"{args.size}: {shape} x {spec['classes']} classes, {seeds} seed(s), {dtype} logits, "
          f"head epochs {epochs if epochs is not None else HeadConfig().max_epochs}")  # fmt: skip
    timing = f"fusion ablation: {secs:.1f} s for {out['result']['computed']} cells ({args.threads} threads)"
    if args.size == "fungitastic":
        timing += f"; target {TARGET_S:.0f} s, ratio {secs / TARGET_S:.2f}"
    print(timing)
    own, kids = peak_rss_gib()
    print(f"peak RSS: {own:.2f} GiB (this process; children {kids:.2f} GiB); target "
          f"{TARGET_RSS_GIB:.0f} GiB, ratio {own / TARGET_RSS_GIB:.2f}")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
