"""Benchmark: ``fit`` through Lightning vs a bare PyTorch loop, same model, same batches.

Both train ``convnextv2_atto`` on the FG_C view of the embedded benchmark for the same number
of epochs with AdamW and the task's warm-up + cosine schedule, no validation. The Lightning side is
the toolkit's :class:`ClassifierTask` (normalisation on device, metrics, logging every 10 steps
to TensorBoard). Target: at most 1.05x the bare loop.

    python benchmarks/bench_fit_overhead.py [--epochs 2] [--image_size 64] [--repeats 5]

Each side keeps its best of ``--repeats`` rounds: with 3 rounds one idle run gave 1.108x, with 5
1.001x (the same commit), so 5 is the default.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning as L
import torch

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.tasks.classifier import ClassifierTask


def datamodule(args: argparse.Namespace) -> ViewDataModule:
    dm = ViewDataModule(
        SyntheticSpurious(), view="FG_C", image_size=args.image_size, batch_size=32, num_workers=0
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def bare(args: argparse.Namespace) -> tuple[float, int]:
    L.seed_everything(0, verbose=False)
    dm = datamodule(args)
    task = ClassifierTask(model_name="convnextv2_atto", num_classes=4)
    model, mean, std = task.model, task.mean, task.std
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loader = dm.train_dataloader()
    total = args.epochs * len(loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=total, pct_start=0.1)
    model.train()
    images = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        for batch in loader:
            images += len(batch["label"])
            x = (batch["image"].float() - mean) / std
            loss = torch.nn.functional.cross_entropy(model(x), batch["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return time.perf_counter() - start, images


def lightning_fit(args: argparse.Namespace) -> float:
    L.seed_everything(0, verbose=False)
    dm = datamodule(args)
    task = ClassifierTask(model_name="convnextv2_atto", num_classes=4)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=10,
            logger=L.pytorch.loggers.TensorBoardLogger(tmp),
        )
        start = time.perf_counter()
        trainer.fit(task, datamodule=dm)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    t_bare = t_fit = float("inf")
    images = 0
    for _ in range(args.repeats):  # round-robin, so drifts of the machine hit both alike
        t, images = bare(args)
        t_bare = min(t_bare, t)
        t_fit = min(t_fit, lightning_fit(args))
    ratio = t_fit / t_bare
    print(
        f"bare loop {t_bare:.2f} s ({images / t_bare:.0f} images/s: this machine's speed) | "
        f"Lightning fit {t_fit:.2f} s | ratio {ratio:.3f} (target <= 1.05): "
        f"{'OK' if ratio <= 1.05 else 'ABOVE TARGET'}"
    )


if __name__ == "__main__":
    main()
