"""Benchmark: the ⊕R cascade against the full threshold fusion, images/s on the same images.

The embedded benchmark's test images (``test_id`` and ``test_shift`` of the default generated
root) with a ground-truth segmentation store keyed by their paths are classified by
:func:`occam_l2r.classify.engine.classify_images` twice: the full threshold fusion (the FG_C and
FULL models on every image) and the cascade (FULL only where the FG confidence is ``<= t``). The
models are tiny random ``convnextv2_atto`` ClassifierTask checkpoints (timing does not depend on
the weights), so ``t`` is not fitted: it is set at the ``--quantile`` of the FG confidences, which
fixes the share of second-model calls (default: half the images). It prints images/s (best of
``--repeats``; image reading and view making included, model loading excluded), the model
seconds of each, and checks that both give the same fused classes.

    python benchmarks/bench_cascade.py [--images 256] [--image_size 64] [--quantile 0.5]
        [--batch_size 64] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning
import numpy as np
import torch

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.engine import classify_images
from occam_l2r.classify.inputs import list_images
from occam_l2r.classify.run import load
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.fusion import methods
from occam_l2r.segmentation import Segmentation
from occam_l2r.store import StoreWriter
from occam_l2r.tasks.classifier import ClassifierTask


def checkpoint(path: Path, seed: int) -> str:
    """A random tiny ClassifierTask checkpoint."""
    torch.manual_seed(seed)
    task = ClassifierTask(model_name="convnextv2_atto", num_classes=4)
    hparams = {"_class_path": "occam_l2r.tasks.classifier.ClassifierTask", **task.hparams}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": lightning.__version__}, path)  # fmt: skip
    return str(path)


def prepare(tmp: Path, n: int) -> Path:
    """A list file of ``n`` embedded test images and a gt store keyed by the listed paths."""
    ds = SyntheticSpurious()
    ds.prepare()
    recs = (ds.records("test_id") + ds.records("test_shift"))[:n]
    writer = StoreWriter(tmp / "store", "gt", {"kind": "bench"})
    writer.write([Segmentation.from_masks(str(ds.image_path(r)), ds.gt_masks(r),
                                          labels=["object"], label_ids=[0]) for r in recs])  # fmt: skip
    writer.close()
    (tmp / "images.txt").write_text("\n".join(str(ds.image_path(r)) for r in recs) + "\n")
    return tmp / "images.txt"


def fusion_dir(tmp: Path, t: float) -> Path:
    """A ``fuse`` output folder holding one threshold record with ``t``."""
    rec = {"cell": "pair|FG_C+FULL|threshold|seed0", "kind": "pair", "name": "FG_C+FULL",
           "method": "threshold", "seed": 0, "runs": ["fg", "full"],
           "params": {"t": t, "manual": True}, "metrics": {}}  # fmt: skip
    (tmp / "fusion").mkdir(exist_ok=True)
    (tmp / "fusion" / "results.jsonl").write_text(json.dumps(rec) + "\n")
    return tmp / "fusion"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--image_size", type=int, default=64)
    ap.add_argument("--quantile", type=float, default=0.5)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        images = list_images(prepare(tmp, args.images))
        ckpts = {"FG_C": checkpoint(tmp / "fg.ckpt", 1), "FULL": checkpoint(tmp / "full.ckpt", 2)}
        base = dict(images=str(tmp / "images.txt"), output_dir=str(tmp / "out"),
                    checkpoints=ckpts, segmentation=str(tmp / "store"),
                    image_size=args.image_size, batch_size=args.batch_size)  # fmt: skip
        probe = ClassifyConfig(fusion_dir=str(fusion_dir(tmp, 1.0)), **base)
        fusion, models = load(probe)
        _, p1 = methods.predict_confidence(classify_images(probe, fusion, models, images)
                                           .logits["FG_C"])  # fmt: skip
        t = float(np.quantile(p1, args.quantile))
        fusion_dir(tmp, t)
        results = {}
        for cascade in (False, True):
            config = ClassifyConfig(fusion_dir=str(tmp / "fusion"), cascade=cascade, **base)
            fusion, models = load(config)
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = classify_images(config, fusion, models, images)
                best = min(best, time.perf_counter() - t0)
            results[cascade] = (best, out)
    (full_s, full), (cas_s, cas) = results[False], results[True]
    n = len(full.items)
    assert np.array_equal(full.fused.pred, cas.fused.pred), "cascade differs from ⊕R"
    share = float(cas.second.mean())
    print(f"{n} images at {args.image_size} px, {args.threads} thread(s), t={t:.4f}")
    print(f"full fusion: {n / full_s:8.1f} images/s  (models {sum(full.seconds.values()):.2f} s)")
    print(f"cascade:     {n / cas_s:8.1f} images/s  (models {sum(cas.seconds.values()):.2f} s), "
          f"second model on {100 * share:.1f}% of the images")  # fmt: skip
    print(f"speed-up {full_s / cas_s:.2f}x; same fused classes: yes")


if __name__ == "__main__":
    main()
