"""LightningCLI for ``fit``/``validate``/``test``/``predict``.

Any LightningModule and LightningDataModule of the package is chosen by ``class_path`` in the
config. The DataModule's ``num_classes`` is linked into the model's ``num_classes``. After
``fit``, the best checkpoint is tested on every test split (``--test_after_fit false`` to skip)
and the metrics are written to ``<run dir>/test_metrics.json``; ``test`` writes the same file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from occam_l2r.tasks.classifier import save_metrics


class OccamCLI(LightningCLI):
    """LightningCLI with the toolkit's defaults (checkpoints/ folder, TensorBoard, seed 0)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit", type=bool, default=True, help="test the best checkpoint after fit"
        )
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults({"lr_monitor.logging_interval": "step"})
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )

    def _metrics_path(self) -> Path:
        trainer = self.trainer
        base = trainer.log_dir or trainer.default_root_dir
        return Path(base) / "test_metrics.json"

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit", True):
            return
        if not hasattr(self.datamodule, "test_dataloader"):
            return
        ckpt = (
            "best"
            if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path
            else None
        )
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
        self._write_metrics()

    def after_test(self) -> None:
        self._write_metrics()

    def _write_metrics(self) -> None:
        path = self._metrics_path()  # trainer.log_dir is a collective: every rank calls it
        if self.trainer.global_rank != 0:
            return
        metrics = {k: v for k, v in self.trainer.callback_metrics.items() if k.startswith("test")}
        save_metrics(metrics, path)
        print(format_summary(metrics))
        print(f"test metrics written to {path}")


def format_summary(metrics: dict) -> str:
    """One row per test split: accuracy, macro accuracy, worst-group accuracy, fallback rate."""
    cols = ["acc", "macro_acc", "worst_group_acc", "fallback_rate"]
    splits = sorted({k.split("/")[0] for k in metrics if k.split("/")[-1] in cols})
    lines = ["| split | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for split in splits:
        cells = []
        for c in cols:
            v = metrics.get(f"{split}/{c}")
            cells.append("-" if v is None else f"{100 * float(v):.2f}")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def trainer_defaults() -> dict:
    return {
        "default_root_dir": "checkpoints",
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "checkpoints", "name": "default"},
        },
    }


def run_lightning_cli(argv: list[str] | None) -> OccamCLI:
    """Run LightningCLI on ``argv`` (``["fit", "--config", ...]``; ``None`` reads ``sys.argv``)."""
    saved = sys.argv
    if argv is not None:  # called from Python (tests, the pipeline verb): ignore the outer argv
        sys.argv = saved[:1]
    try:
        return _run(argv)
    finally:
        sys.argv = saved


def _run(argv: list[str] | None) -> OccamCLI:
    return OccamCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        trainer_defaults=trainer_defaults(),
        args=argv,
        auto_configure_optimizers=False,
    )
