"""Benchmark: OCCAM's throughput (images/s and applied masks/s) beside the whole image alone.

On a test split of the embedded benchmark with the scikit-image regions store (built first if
absent, ``configs/segment/synthetic_regions.yaml``), three passes over the same images:

- data only: the OCCAM DataLoader (read, decode every mask, apply it every way, fit the square);
- OCCAM: ``trainer.test`` of :class:`~occam_l2r.tasks.occam.OccamTask` (data + every mask of
  every mode encoded, every score, the table), end to end;
- FULL only: the zero-shot model on the whole images of the same batches (the cost OCCAM adds
  to).

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="test_shift")
    p.add_argument("--modes", nargs="+", default=["crop_resize_gray", "crop_resize_original"])
    p.add_argument("--scores", nargs="+", default=["max_prob", "oracle", "ens_entropy"])
    p.add_argument("--model_name", default="occam-tiny-vit")
    p.add_argument("--pretrained", default=None)
    p.add_argument("--image_size", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_workers", type=int, default=0)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    # the regions store of the split (resumes: images already stored are skipped)
    cli([
        "segment", "--config", str(REGIONS), "--data.splits", f"[{args.split}]",
        "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    dm = datamodule(args)
    images = len(dm.records[args.split])
    masks = sum(len(dm.stores["synthetic_regions"][r.image_id]) for r in dm.records[args.split])
    encoded = masks * len(args.modes)

    start = time.perf_counter()
    batches = list(dm.test_dataloader()[0])
    t_data = time.perf_counter() - start

    clip = load_clip(args.model_name, args.pretrained)
    full = ZeroShotClassifier(clip, dm.class_names, "a photo of the digit {c}.")
    full.build_prototypes()
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            full(batch["image"])
    t_full = time.perf_counter() - start

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

    print(
        f"OCCAM on {args.split}: {images} images, {masks} masks ({masks / images:.1f} per image), "
        f"modes {args.modes}, scores {args.scores}, {args.model_name} at {args.image_size} px, "
        f"{torch.get_num_threads()} threads"
    )
    print("| pass | s | images/s | applied masks/s |\n|---|---|---|---|")
    print(f"| data only (apply every mask) | {t_data:.2f} | {images / t_data:.1f} | "
          f"{encoded / t_data:.1f} |")  # fmt: skip
    print(f"| OCCAM end to end (test) | {t_occam:.2f} | {images / t_occam:.1f} | "
          f"{encoded / t_occam:.1f} |")  # fmt: skip
    print(f"| FULL only (encode, data cached) | {t_full:.2f} | {images / t_full:.1f} | - |")
    print(f"OCCAM / FULL-only time: {t_occam / max(t_full, 1e-9):.1f}x")


if __name__ == "__main__":
    main()
