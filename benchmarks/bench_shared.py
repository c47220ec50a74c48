"""Benchmark: inference images/s of one shared backbone for FULL and FG_C against two separate
classifiers (issue 18: L2R² §4.2's "unified model with a shared backbone").

Random weights (speed needs no pretrained ones), eval mode, no gradients, float32 on the CPU (or
``--device cuda``): per image, both views' logits — :class:`~occam_l2r.tasks.shared.SharedBackboneTask`
(one backbone, each view's batch through it separately, a head per view) against two
:class:`~occam_l2r.tasks.classifier.ClassifierTask` models. Prints images/s of each, the ratio,
and the parameter counts. The FG view must not see the FULL pixels, so the shared model still
runs two backbone passes per image: the expected ratio is ~1.0, the parameters 0.5.

    .venv/bin/python benchmarks/bench_shared.py [--model convnextv2_atto] [--size 64] [--batch 64]
"""

from __future__ import annotations

import argparse
import time

import torch

from occam_l2r.tasks.classifier import ClassifierTask
from occam_l2r.tasks.shared import SharedBackboneTask


def images_per_s(fn, batch: torch.Tensor, repeats: int) -> float:
    """Images/s of ``fn(batch)`` (best of ``repeats`` timed calls after one warm-up)."""
    with torch.no_grad():
        fn(batch)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(batch)
            best = min(best, time.perf_counter() - t0)
    return len(batch) / best


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnextv2_atto")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    shared = SharedBackboneTask(["FULL", "FG_C"], args.model).eval().to(dev)
    full = ClassifierTask(args.model).eval().to(dev)
    fg = ClassifierTask(args.model).eval().to(dev)
    x = torch.rand(args.batch, 3, args.size, args.size, device=dev)
    y = torch.rand(args.batch, 3, args.size, args.size, device=dev)
    shared_ips = images_per_s(lambda b: shared({"FULL": b, "FG_C": y}), x, args.repeats)
    separate_ips = images_per_s(lambda b: (full(b), fg(y)), x, args.repeats)
    n_shared = sum(p.numel() for p in shared.parameters())
    n_separate = sum(p.numel() for m in (full, fg) for p in m.parameters())
    print(
        f"{args.model} at {args.size} px, batch {args.batch}, {args.device}, both views per image"
    )
    print(f"shared backbone: {shared_ips:.1f} images/s, {n_shared:,} parameters")
    print(f"two separate models: {separate_ips:.1f} images/s, {n_separate:,} parameters")
    print(f"ratio shared / separate: images/s {shared_ips / separate_ips:.2f}, "
          f"parameters {n_shared / n_separate:.2f}")  # fmt: skip
    return {"shared": shared_ips, "separate": separate_ips, "params": n_shared / n_separate}


if __name__ == "__main__":
    main()
