"""Benchmark: GPU throughput of training and segmentation, with random weights (speed needs none).

1. **train**: ConvNeXtV2-B at 224 px (batch ``--batch-size``, bf16 autocast on a GPU,
   channels-last with ``--channels-last``, ``torch.compile`` with ``--compile``) trained through
   the toolkit's :class:`~occam_l2r.tasks.classifier.ClassifierTask` and a Lightning ``Trainer``
   against a bare timm loop (same model, AdamW, same uint8 batches moved to the device and
   normalised there). Both read one pinned batch over and over, so the data loader is not timed
   (``benchmarks/bench_loader.py`` times it). Target: the task within 10 % of the bare loop.
2. **models**: images/s of SAM ViT-H (box-prompted, one box per image), SAM 2.1 Hiera-L (the
   same) and GroundingDINO-B (one caption per image), each at real size, random-initialised,
   through the toolkit's segmenter classes, in batches of ``--seg-batch``.
3. **segment end to end**: the ``segment`` verb (``python -m occam_l2r segment``: DataLoader
   workers reading and preprocessing, GroundingDINO-B + SAM ViT-H on the device, the store
   writer) on ``--seg-images`` images, in batches of ``--seg-batch`` against one image at a time;
   images/s from the verb's own summary (wall time of its predict loop, model loading
   included). Target: batched >= 1.5x one at a time.

``--tiny`` runs every part at a tiny size on the CPU (convnextv2_atto at 32 px; the tiny SAM,
SAM 2 and GroundingDINO of :mod:`occam_l2r.segment.tiny`; a few images): the test suite runs it
that way. The numbers of a ``--tiny`` run say nothing about a GPU.

    python benchmarks/bench_gpu.py                # on a GPU machine (real sizes)
    python benchmarks/bench_gpu.py --tiny         # CPU smoke run of every code path
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import yaml

from occam_l2r.data.base import BaseDataModule

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model is random and local

TARGET_TRAIN_RATIO = 0.9  # the task's images/s over the bare loop's
TARGET_SEGMENT_SPEEDUP = 1.5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------- training
class _RepeatedBatch(torch.utils.data.Dataset):
    """``steps`` copies of one batch (uint8 images, labels), as a loader with batch_size=None."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batch


class _BenchData(BaseDataModule):
    """A DataModule of one repeated batch: no dataset, no eval splits, no groups."""

    val_split_names: list[str] = []  # type: ignore[assignment]
    test_split_names: list[str] = []  # type: ignore[assignment]
    predict_split_names: list[str] = []  # type: ignore[assignment]
    group_names: list[str] = []  # type: ignore[assignment]
    headline_metric = "acc"  # type: ignore[assignment]

    def __init__(self, batch: dict[str, torch.Tensor], steps: int, pin: bool) -> None:
        super().__init__()
        self.data, self.pin = _RepeatedBatch(batch, steps), pin

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(self.data, batch_size=None, pin_memory=self.pin)


class _Timer(L.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        if batch_idx == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        _sync(pl_module.device)
        self.end = time.perf_counter()


def _batch(size: int, image_size: int, classes: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randint(
            0, 256, (size, 3, image_size, image_size), dtype=torch.uint8, generator=g
        ),
        "label": torch.randint(0, classes, (size,), generator=g),
    }


def train_task(args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of ConvNeXtV2 training through ClassifierTask + Lightning."""
    from occam_l2r.tasks.classifier import ClassifierTask

    L.seed_everything(0, verbose=False)
    batch = _batch(args.batch_size, args.image_size, args.classes)
    task = ClassifierTask(
        model_name=args.model,
        num_classes=args.classes,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    timer = _Timer(args.warmup)
    trainer = L.Trainer(
        accelerator=device.type,
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
        callbacks=[timer],
    )
    data = _BenchData(batch, args.warmup + args.steps, pin=device.type == "cuda")
    trainer.fit(task, datamodule=data)
    return args.steps * args.batch_size / (timer.end - timer.start)


def train_bare(args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of the same training in a bare timm loop."""
    import timm

    torch.manual_seed(0)
    batch = _batch(args.batch_size, args.image_size, args.classes)
    if device.type == "cuda":
        batch = {k: v.pin_memory() for k, v in batch.items()}
    model = timm.create_model(args.model, pretrained=False, num_classes=args.classes).to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if args.compile:
        model.compile()
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1) * 255
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    autocast = args.precision == "bf16-mixed"
    model.train()
    start = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            _sync(device)
            start = time.perf_counter()
        x = batch["image"].to(device, non_blocking=True).float()
        x = ((x - mean) / std).contiguous(memory_format=memory_format)
        y = batch["label"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return args.steps * args.batch_size / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------- models
def _timed(fn, rounds: int, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    """Best seconds of ``rounds`` calls of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _images(n: int, height: int, width: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(n)]


def _autocast(device: torch.device, precision: str):  # type: ignore[no-untyped-def]
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def box_prompter_ips(prompter: Any, args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of a box prompter (SAM or SAM 2) with one box per image (encoder + decoder)."""
    h, w = args.photo
    images = _images(args.seg_batch, h, w)
    pre = prompter.preprocessor()
    resized = [pre(im)["sam_image"].to(device) for im in images]
    boxes = [torch.tensor([[w * 0.2, h * 0.2, w * 0.8, h * 0.8]], device=device)] * len(images)
    sizes = [(h, w)] * len(images)

    def run() -> None:
        with torch.inference_mode(), _autocast(device, args.precision):
            prompter.masks(resized, sizes, boxes)

    return len(images) / _timed(run, args.rounds, device)


def gdino_ips(detector: Any, args: argparse.Namespace, device: torch.device) -> float:
    """Images/s of GroundingDINO with one caption per image."""
    from occam_l2r.segment.prompts import Query

    h, w = args.photo
    images = _images(args.seg_batch, h, w)
    pre = detector.preprocessor()
    inputs = [{k: v.to(device) for k, v in pre(im).items()} for im in images]
    queries = [[Query(texts=("dog",))]] * len(images)

    def run() -> None:
        with torch.inference_mode(), _autocast(device, args.precision):
            detector.detect(inputs, [(h, w)] * len(images), queries)

    return len(images) / _timed(run, args.rounds, device)


def model_throughput(
    args: argparse.Namespace, device: torch.device, work: Path
) -> dict[str, float]:
    from occam_l2r.segment.detectors import GroundingDino
    from occam_l2r.segment.sam import SamBoxPrompter, build_sam
    from occam_l2r.segment.sam2 import Sam2BoxPrompter
    from occam_l2r.segment.tiny import (
        SAM2_HIERA_LARGE,
        SAM_VIT_H,
        TINY_SAM,
        TINY_SAM2,
        tiny_grounding_dino,
        tiny_sam2,
    )

    out: dict[str, float] = {}
    sam_arch = TINY_SAM if args.tiny else SAM_VIT_H
    sam = SamBoxPrompter("random", model_type="custom", arch=sam_arch)
    torch.manual_seed(0)
    sam.model = build_sam(sam_arch).to(device)
    out["sam_vit_h" if not args.tiny else "sam_tiny"] = box_prompter_ips(sam, args, device)
    del sam
    sam2 = Sam2BoxPrompter(
        str(tiny_sam2(work / "sam2", arch=TINY_SAM2 if args.tiny else SAM2_HIERA_LARGE))
    )
    sam2.load().to(device)
    out["sam2_hiera_l" if not args.tiny else "sam2_tiny"] = box_prompter_ips(sam2, args, device)
    del sam2
    gdino = GroundingDino(str(tiny_grounding_dino(work / "gdino", full_size=not args.tiny)))
    gdino.load().to(device)
    out["gdino_b" if not args.tiny else "gdino_tiny"] = gdino_ips(gdino, args, device)
    return out


# ---------------------------------------------------------------------------------- segment
def segment_end_to_end(
    args: argparse.Namespace, device: torch.device, work: Path
) -> dict[str, float]:
    """Images/s of the ``segment`` verb in batches of ``--seg-batch`` and one image at a time."""
    from occam_l2r.cli import main
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.segment.tiny import SAM_VIT_H, TINY_SAM, tiny_grounding_dino, tiny_sam

    per_class = max(1, args.seg_images // 4)
    root = work / "synthetic"
    SyntheticSpurious(root=str(root), num_classes=4, train_per_class=per_class,
                      val_per_class=1, test_per_class=1).prepare()  # fmt: skip
    arch = TINY_SAM if args.tiny else SAM_VIT_H
    sam_path = tiny_sam(work / "sam.pth", arch=arch)
    gdino = work / "gdino"
    if not (gdino / "config.json").is_file():
        tiny_grounding_dino(gdino, full_size=not args.tiny)
    rates = {}
    for batch in (args.seg_batch, 1):
        cfg = {
            "model": {
                "segmenter": {
                    "class_path": "occam_l2r.segment.segmenters.DetectAndSegment",
                    "init_args": {
                        "detector": {
                            "class_path": "occam_l2r.segment.detectors.GroundingDino",
                            "init_args": {"model": str(gdino), "box_threshold": 0.0},
                        },
                        "prompts": {
                            "class_path": "occam_l2r.segment.prompts.MetaPrompt",
                            "init_args": {"prompts": ["dog"]},
                        },
                        "sam": {
                            "checkpoint": str(sam_path),
                            "model_type": "custom",
                            "arch": asdict(arch),
                        },  # fmt: skip
                        "keep": "top1",
                    },
                },
                "store": str(work / f"store_b{batch}"),
            },
            "data": {
                "dataset": {
                    "class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
                    "init_args": {
                        "root": str(root),
                        "num_classes": 4,
                        "train_per_class": per_class,
                        "val_per_class": 1,
                        "test_per_class": 1,
                    },
                },  # fmt: skip
                "splits": ["train"],
                "limit": args.seg_images,
                "batch_size": batch,
                "num_workers": args.workers,
            },
            "trainer": {
                "accelerator": device.type,
                "devices": 1,
                "precision": args.precision,
                "enable_progress_bar": False,
            },
        }
        conf = work / f"segment_b{batch}.yaml"
        conf.write_text(yaml.safe_dump(cfg))
        summary = main(["segment", "--config", str(conf)])
        rates[batch] = summary["computed"] / summary["seconds"]
    return {"batched": rates[args.seg_batch], "single": rates[1]}


# ---------------------------------------------------------------------------------- main
def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse ``argv``, run every part, print the table; returns the numbers."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (a test)")
    parser.add_argument(
        "--device", default=None, help="default: cuda when there is one (cpu with --tiny)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="training batch (128; 8 tiny)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (50; 3 tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (10; 1 tiny)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--seg-batch", type=int, default=None, help="segmentation batch (8; 4 tiny)"
    )
    parser.add_argument(
        "--seg-images", type=int, default=None, help="images of the segment run (256; 8 tiny)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="segment DataLoader workers (8; 0 tiny)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="timed rounds per model (best counts)"
    )
    parser.add_argument("--parts", default="train,models,segment")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    tiny = args.tiny
    device = torch.device(
        args.device or ("cuda" if torch.cuda.is_available() and not tiny else "cpu")
    )
    defaults = {
        "batch_size": (128, 8), "steps": (50, 3), "warmup": (10, 1), "seg_batch": (8, 4),
        "seg_images": (256, 8), "workers": (8, 0),
    }  # fmt: skip
    for key, (full, small) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, small if tiny else full)
    args.model = "convnextv2_atto" if tiny else "convnextv2_base"
    args.image_size = 32 if tiny else 224
    args.classes = 4 if tiny else 1000
    args.photo = (48, 64) if tiny else (375, 500)
    args.precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    parts = set(args.parts.split(","))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"device: {name} ({'tiny models' if tiny else 'real sizes'}, random weights, {args.precision})"
    )
    results: dict[str, Any] = {"device": name, "tiny": tiny, "precision": args.precision}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "train" in parts:
            task, bare = train_task(args, device), train_bare(args, device)
            ratio = task / bare
            results["train"] = {"task": task, "bare": bare, "ratio": ratio}
            flags = f"{' channels_last' if args.channels_last else ''}{' compile' if args.compile else ''}"
            print(f"train {args.model} {args.image_size} px, batch {args.batch_size}{flags}: "
                  f"ClassifierTask {task:.1f} images/s | bare timm loop {bare:.1f} images/s | "
                  f"ratio {ratio:.3f} (target >= {TARGET_TRAIN_RATIO}) "
                  f"{'OK' if ratio >= TARGET_TRAIN_RATIO else 'MISSED'}")  # fmt: skip
        if "models" in parts:
            results["models"] = model_throughput(args, device, work)
            for key, ips in results["models"].items():
                print(
                    f"{key}: {ips:.1f} images/s ({args.photo[1]}x{args.photo[0]}, batches of {args.seg_batch})"
                )
        if "segment" in parts:
            seg = segment_end_to_end(args, device, work)
            speedup = seg["batched"] / seg["single"]
            results["segment"] = {**seg, "speedup": speedup}
            print(f"segment end to end ({args.seg_images} images, {args.workers} workers): "
                  f"batches of {args.seg_batch} {seg['batched']:.1f} images/s | one at a time "
                  f"{seg['single']:.1f} images/s | {speedup:.2f}x (target >= {TARGET_SEGMENT_SPEEDUP}x) "
                  f"{'OK' if speedup >= TARGET_SEGMENT_SPEEDUP else 'MISSED'}")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run()
