"""Benchmark: zero-shot FULL + FG_C + FG_C⊕max FULL against FULL alone, on the same images.

Batches of the embedded benchmark's ``test_id`` split are rendered once through the real data
path (``ViewDataModule`` with ``view: [FULL, FG_C]``, ground-truth store) and kept in memory; then
the zero-shot task's own forward (:meth:`ZeroShotTask.outputs_of`: every view encoded once, ⊕max
by :func:`occam_l2r.fusion.methods.max_conf`) runs on them with

- FULL: ``views [FULL]``, no fusion;
- FULL + FG + ⊕max: ``views [FULL, FG_C]``, fusion ``FG_C+FULL``.

It prints images/s of each (best of ``--repeats`` passes) and the ratio of their times. Target:
at most 2.05x (the second encoding and nothing else). Then OCCAM's throughput per mask: images/s
and applied masks/s of the OCCAM task end to end on the regions store of ``test_shift``, and
its encode + score time per applied mask against FULL's per image (``bench_occam.py`` with its
defaults, which prints every pass; ``--no-occam`` skips it). The model defaults to the embedded CLIP's
architecture with random weights (timing does not depend on the weights); ``--model ViT-B-32
--image_size 224`` times a real architecture.

    python benchmarks/bench_zeroshot.py [--model occam-tiny-convnext] [--image_size 64]
        [--batch_size 64] [--batches 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.fusion.methods import max_conf
from occam_l2r.models.zeroshot import ZeroShotClassifier, load_clip
from occam_l2r.tasks.zeroshot import ZeroShotTask


def batches(args: argparse.Namespace) -> list[dict]:
    """``--batches`` batches of FULL and FG_C views of test_id, rendered once."""
    dm = ViewDataModule(
        SyntheticSpurious(),
        view=["FULL", "FG_C"],
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=0,
        test_splits=["test_id"],
    )
    dm.prepare_data()
    dm.setup("test")
    out = []
    for batch in dm.test_dataloader()[0]:
        out.append(batch)
        if len(out) == args.batches:
            break
    return out


def task_for(views: list[str], fusions: list[tuple[str, str]], zs: ZeroShotClassifier, args):
    """The zero-shot task's forward, wired without a Trainer."""
    task = ZeroShotTask(model_name=args.model, num_classes=4, prototype_cache=None)
    task.views, task.fusions, task.zeroshot = views, fusions, zs
    return task


@torch.inference_mode()
def timings(tasks: dict[str, ZeroShotTask], data: list[dict], repeats: int) -> dict:
    """Best-of-``repeats`` (wall, CPU) seconds of one pass of each task's ``outputs_of`` over
    ``data``; the tasks take turns in every repeat, so a busy machine slows them alike."""
    best = {name: [float("inf"), float("inf")] for name in tasks}
    for task in tasks.values():
        task.outputs_of(data[0])  # warm-up
    for _ in range(repeats):
        for name, task in tasks.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for batch in data:
                task.outputs_of(batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return best


@torch.inference_mode()
def fusion_seconds(task: ZeroShotTask, data: list[dict], repeats: int) -> float:
    """Best-of-``repeats`` time of the fused output alone, from the views' logits."""
    assert task.zeroshot is not None
    logits = [
        {v: task.zeroshot(b["views"][v]) for v in ("FULL", "FG_C")} for b in data
    ]  # the views' logits, as outputs_of has them before fusing
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for z in logits:
            za, zb = z["FG_C"], z["FULL"]
            chosen = max_conf(za.numpy(), zb.numpy()).chosen
            torch.where(torch.from_numpy(chosen).bool().unsqueeze(1), zb, za)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="occam-tiny-convnext")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--no-occam", dest="occam", action="store_false", help="skip OCCAM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = batches(args)
    n = sum(len(b["label"]) for b in data)
    clip = load_clip(args.model)
    zs = ZeroShotClassifier(clip, ["zero", "one", "two", "three"], "a photo of the digit {c}.")
    zs.build_prototypes()  # once, outside the timing (as the task does at the start)
    tasks = {
        "FULL": task_for(["FULL"], [], zs, args),
        "FULL + FG_C + ⊕max": task_for(["FULL", "FG_C"], [("FG_C", "FULL")], zs, args),
    }
    t = timings(tasks, data, args.repeats)
    print(
        f"model {clip.name} at {clip.image_size} px, {n} images of test_id, {args.threads} thread(s)"
    )
    for name, (wall, cpu) in t.items():
        print(f"{name:20s}: {n / wall:8.1f} images/s ({wall:.3f} s wall, {cpu:.3f} s CPU)")
    fusion = fusion_seconds(tasks["FULL + FG_C + ⊕max"], data, args.repeats)
    print(f"of which ⊕max itself: {1000 * fusion:.2f} ms for the {n} images")
    (w1, c1), (w2, c2) = t.values()
    verdict = "ok" if w2 / w1 <= 2.05 else "ABOVE TARGET"
    print(f"ratio {w2 / w1:.3f}x wall, {c2 / c1:.3f}x CPU (target <= 2.05x): {verdict}")
    if args.occam:
        occam_per_mask()


def occam_per_mask() -> None:
    """OCCAM's images/s and applied masks/s (``bench_occam.py`` with its defaults)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_occam

    logging.getLogger("lightning").setLevel(logging.WARNING)
    occam_args = bench_occam.parser().parse_args([])
    m = bench_occam.measure(occam_args)
    images, encoded = m["images"], m["encoded"]
    print(
        f"OCCAM ({occam_args.model_name}, {', '.join(occam_args.modes)}) on "
        f"{occam_args.split}: {images / m['occam']:.1f} images/s end to end with "
        f"{encoded / images:.1f} applied masks per image ({encoded / m['occam']:.1f} masks/s); "
        f"encode + score {1000 * m['compute'] / encoded:.2f} ms per applied mask vs FULL "
        f"{1000 * m['full'] / images:.2f} ms per image"
    )


if __name__ == "__main__":
    main()
