"""Benchmark: the cost of FG/BG views relative to FULL on the same images.

Two measurements over the embedded benchmark's train split:
- data only: one pass of the DataLoader (read, store look-up + RLE decode, view, augment);
- a training epoch: the same loader feeding ``convnextv2_atto`` forward/backward.
Target: a training epoch on FG/BG views costs at most 1.15x the FULL epoch.

    python benchmarks/bench_views.py [--image_size 64] [--batch_size 32] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.models.backbones import create_classifier

VIEWS = ["FULL", "FG_C", "FG_M", "BG_S", "BG_B"]


def loader(view: str, args: argparse.Namespace):
    dm = ViewDataModule(
        SyntheticSpurious(),
        view=view,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=0,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm.train_dataloader()


def data_epoch(view: str, args: argparse.Namespace) -> float:
    dl = loader(view, args)
    torch.manual_seed(0)
    start = time.perf_counter()
    for _ in dl:
        pass
    return time.perf_counter() - start


def train_epoch(view: str, args: argparse.Namespace) -> float:
    dl = loader(view, args)
    torch.manual_seed(0)
    model = create_classifier("convnextv2_atto", 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for batch in dl:
        x = batch["image"].float() / 255.0
        loss = torch.nn.functional.cross_entropy(model(x), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name, fn in [("data-only pass", data_epoch), ("training epoch", train_epoch)]:
        times = {v: float("inf") for v in VIEWS}
        for _ in range(args.repeats):  # round-robin, so drifts of the machine hit every view alike
            for v in VIEWS:
                times[v] = min(times[v], fn(v, args))
        results[name] = times
        print(f"\n{name} (best of {args.repeats}), {args.image_size}px, batch {args.batch_size}")
        print("| view | seconds | ratio to FULL |\n|---|---|---|")
        for v in VIEWS:
            print(f"| {v} | {times[v]:.2f} | {times[v] / times['FULL']:.3f} |")
    # The network's work is the same for every view (same input size), so an epoch's extra cost is
    # the extra data time; this estimate is immune to the run-to-run noise of the compute part.
    data, train = results["data-only pass"], results["training epoch"]
    est = {v: 1 + (data[v] - data["FULL"]) / train["FULL"] for v in VIEWS[1:]}
    print(
        "\nestimated training-epoch ratio = 1 + (data_view - data_FULL) / epoch_FULL (num_workers=0)"
    )
    print(" | ".join(f"{v} {r:.3f}" for v, r in est.items()))
    worst = max(est.values())
    print(
        f"worst FG/BG ratio {worst:.3f} (target <= 1.15): {'OK' if worst <= 1.15 else 'ABOVE TARGET'}"
    )


if __name__ == "__main__":
    main()
