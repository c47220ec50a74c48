"""Benchmark: OCCAM's throughput (images/s and applied masks/s) beside the whole image alone.

On a test split of the embedded benchmark with the scikit-image regions store (built first if
absent, ``configs/segment/synthetic_regions.yaml``), passes over the same images:

- data only: the OCCAM DataLoader (read, decode every mask, apply it every way, fit the square);
- OCCAM: ``trainer.test`` of :class:`~occam_l2r.tasks.occam.OccamTask` (data + every mask of
  every mode encoded, every score, the table), end to end;
- OCCAM encode + score and FULL only encode on the cached batches of the first pass: the model's
  share, and the zero-shot model on the whole images alone (the cost OCCAM multiplies); best of
  ``--repeats`` runs each.

Masks/s counts applied masks encoded (masks x apply modes). The model is a tiny random ViT CLIP
unless ``--model_name`` / ``--pretrained`` name another (e.g. the embedded CLIP,
``occam-tiny-convnext`` + ``checkpoints/synthetic/clip/open_clip.pt``).

    python benchmarks/bench_occam.py [--split test_shift] [--modes crop_resize_gray alpha]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from occam_l2r.cli import main as cli
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.occam_datamodule import OccamDataModule
from occam_l2r.models.zeroshot import ZeroShotClassifier, load_clip
from occam_l2r.tasks.occam import OccamTask

REGIONS = Path(__file__).parents[1] / "configs" / "segment" / "synthetic_regions.yaml"


def datamodule(args: argparse.Namespace) -> OccamDataModule:
    dm = OccamDataModule(
        SyntheticSpurious(),
        mask_sources=["synthetic_regions"],
        apply_modes=args.modes,
        splits=[args.split],
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
    )
    dm.prepare_data()
    dm.setup("test")
    return dm


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The shortest wall time of ``repeats`` runs of ``run`` (no gradients)."""
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        with torch.no_grad():
            run()
        times.append(time.perf_counter() - start)
    return min(times)


def parser() -> argparse.ArgumentParser:
    """The benchmark's options (also used by ``bench_zeroshot.py``, which runs it with defaults)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="test_shift")
    p.add_argument("--modes", nargs="+", default=["crop_resize_gray", "crop_resize_original"])
    p.add_argument("--scores", nargs="+", default=["max_prob", "oracle", "ens_entropy"])
    p.add_argument("--model_name", default="occam-tiny-vit")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="cached passes: the best of N")
    return p


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Every pass of the module docstring: seconds, and the images and masks counted."""
    torch.manual_seed(0)
    # the regions store of the split (resumes: images already stored are skipped)
    cli([
        "segment", "--config", str(REGIONS), "--data.splits", f"[{args.split}]",
        "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    dm = datamodule(args)
    images = len(dm.records[args.split])
    masks = sum(len(dm.stores["synthetic_regions"][r.image_id]) for r in dm.records[args.split])

    start = time.perf_counter()
    batches = list(dm.test_dataloader()[0])
    t_data = time.perf_counter() - start

    clip = load_clip(args.model_name, args.pretrained)
    full = ZeroShotClassifier(clip, dm.class_names, "a photo of the digit {c}.")
    full.build_prototypes()
    t_full = best_of(args.repeats, lambda: [full(b["image"]) for b in batches])

    task = OccamTask(
        args.model_name, args.pretrained, num_classes=dm.num_classes,
        templates="a photo of the digit {c}.", scores=args.scores, prototype_cache=None,
        table_dir=tempfile.mkdtemp(prefix="bench_occam_"),
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    start = time.perf_counter()
    trainer.test(task, datamodule=datamodule(args), verbose=False)
    t_occam = time.perf_counter() - start
    t_compute = best_of(args.repeats, lambda: [task.outputs_of(b) for b in batches])
    return {
        "images": images, "masks": masks, "encoded": masks * len(args.modes), "data": t_data,
        "occam": t_occam, "compute": t_compute, "full": t_full,
    }  # fmt: skip


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    m = measure(args)
    images, masks, encoded = m["images"], m["masks"], m["encoded"]
    print(
        f"OCCAM on {args.split}: {images} images, {masks} masks ({masks / images:.1f} per image), "
        f"modes {args.modes}, scores {args.scores}, {args.model_name} at {args.image_size} px, "
        f"{torch.get_num_threads()} threads"
    )
    print("| pass | s | images/s | applied masks/s |\n|---|---|---|---|")
    for name, key in [
        ("data only (apply every mask)", "data"),
        ("OCCAM end to end (test)", "occam"),
        ("OCCAM encode + score (data cached)", "compute"),
    ]:
        print(f"| {name} | {m[key]:.2f} | {images / m[key]:.1f} | {encoded / m[key]:.1f} |")
    print(f"| FULL only encode (data cached) | {m['full']:.2f} | {images / m['full']:.1f} | - |")
    print(
        f"OCCAM / FULL encode time: {m['compute'] / max(m['full'], 1e-9):.1f}x "
        f"({encoded / images + 1:.1f} encodings per image: its masks x modes + the whole image)"
    )


if __name__ == "__main__":
    main()
