"""Peak memory of ``predict`` for a split and for a split 10× larger (target: ≤ 1.2×).

Each measurement runs in a fresh process: a :class:`~occam_l2r.tasks.base.BaseTask` (a linear
layer to 1,000 classes, as ImageNet-1k) predicts a split of random inputs generated on the fly,
and the task's streaming :class:`~occam_l2r.tasks.logits_writer.LogitsWriter` writes the logits
file. The process reports its peak RSS (``ru_maxrss``). For comparison the same is measured
with every prediction kept in memory until the end (``return_predictions=True`` and one
concatenation, as the export did before the writer streamed).

    python benchmarks/bench_predict_memory.py            # 20,000 and 200,000 samples
    python benchmarks/bench_predict_memory.py --small 5000
    nice -n 10 python benchmarks/bench_predict_memory.py --size imagenet

``--size imagenet`` predicts ImageNet-1k's train split (1,281,167 samples x 1000 classes: a
5.1 GB float32 logits file) streamed only, beside a 10x smaller split, and prints both peaks:
the writer holds part files and one merge window, never the split (the in-memory comparison
would need the whole 5.1 GB matrix, and more, so it is not run at that size).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLASSES, FEATURES = 1000, 16
IMAGENET_TRAIN = 1_281_167


def child(n: int, mode: str, out: str) -> None:
    import lightning as L
    import numpy as np
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from occam_l2r.data.base import BaseDataModule
    from occam_l2r.data.loaders import eval_loader
    from occam_l2r.tasks.base import BaseTask

    class RandomInputs(Dataset):
        def __len__(self) -> int:
            return n

        def __getitem__(self, i: int) -> dict:
            x = torch.from_numpy(np.random.default_rng(i).standard_normal(FEATURES, np.float32))
            return {"x": x, "label": torch.tensor(i % CLASSES), "index": torch.tensor(i),
                    "id": f"images/{i:08d}.jpg", "group_name": ""}  # fmt: skip

    class Data(BaseDataModule):  # the toolkit's DataModule contract, random inputs
        val_split_names: list[str] = []
        test_split_names: list[str] = []
        predict_split_names = ["train"]
        class_names = [str(k) for k in range(CLASSES)]
        group_names: list[str] = []
        headline_metric = "acc"

        def predict_dataloader(self):  # noqa: ANN202
            return eval_loader(RandomInputs(), batch_size=1000, num_workers=0)

    class Linear(BaseTask):
        def __init__(self) -> None:
            super().__init__(CLASSES, predictions_dir=out)
            self.fc = nn.Linear(FEATURES, CLASSES)

        def logits_of(self, batch: dict) -> torch.Tensor:
            return self.fc(batch["x"])

    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    t0 = time.perf_counter()
    if mode == "streaming":
        trainer.predict(Linear(), datamodule=Data(), return_predictions=False)
        with np.load(Path(out) / "train.npz") as z:  # check rows and order, not loading logits
            labels = z["labels"]
        assert (labels == np.arange(n) % CLASSES).all(), "rows out of the dataset's order"
        rows = len(labels)
    else:  # every batch kept, concatenated at the end
        model = Linear()
        model.configure_callbacks = lambda: []  # type: ignore[method-assign]
        outputs = trainer.predict(model, datamodule=Data(), return_predictions=True)
        logits = torch.cat([o["logits"] for o in outputs]).numpy()
        ids = np.array([i for o in outputs for i in o["id"]])
        rows = len(np.unique(ids)) and len(logits)
    secs = time.perf_counter() - t0  # peak RSS is read after the file is written
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"n": n, "rows": rows, "peak_mib": peak, "seconds": secs}))


def measure(n: int, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), mode, tmp],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=20000, help="samples of the small split")
    parser.add_argument("--factor", type=int, default=10, help="the large split is this × larger")
    parser.add_argument("--size", choices=["default", "imagenet"], default="default")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1], args.child[2])
        return
    mib = CLASSES * 4 / 2**20
    if args.size == "imagenet":
        small = measure(IMAGENET_TRAIN // 10, "streaming")
        large = measure(IMAGENET_TRAIN, "streaming")
        assert large["rows"] == IMAGENET_TRAIN
        print(f"predict at ImageNet-1k train size ({IMAGENET_TRAIN:,} x {CLASSES}, logits "
              f"{IMAGENET_TRAIN * mib / 1024:.1f} GiB), streamed: peak RSS "
              f"{small['peak_mib']:.0f} MiB ({small['n']:,} samples, {small['seconds']:.0f} s) -> "
              f"{large['peak_mib']:.0f} MiB ({large['n']:,} samples, {large['seconds']:.0f} s): "
              f"{large['peak_mib'] / small['peak_mib']:.2f}x (target <= 1.20x)")  # fmt: skip
        return
    print(f"predict: {CLASSES} classes, logits {args.small * mib:.0f} MiB vs "
          f"{args.small * args.factor * mib:.0f} MiB")  # fmt: skip
    for mode in ("streaming", "in_memory"):
        small = measure(args.small, mode)
        large = measure(args.small * args.factor, mode)
        assert small["rows"] == args.small and large["rows"] == args.small * args.factor
        ratio = large["peak_mib"] / small["peak_mib"]
        target = "  (target <= 1.20x)" if mode == "streaming" else "  (before: no streaming)"
        print(f"{mode:>10}: peak RSS {small['peak_mib']:.0f} MiB ({args.small} samples, "
              f"{small['seconds']:.1f} s) -> {large['peak_mib']:.0f} MiB ({large['n']} samples, "
              f"{large['seconds']:.1f} s): {ratio:.2f}x{target}")  # fmt: skip


if __name__ == "__main__":
    main()
