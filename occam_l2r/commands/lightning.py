"""``fit`` / ``validate`` / ``test`` / ``predict``: LightningCLI with the toolkit's defaults.

Any LightningModule and LightningDataModule of the package is chosen by ``class_path`` in the
config; several ``--config`` files compose (a base config and a view overlay). The DataModule's
``num_classes`` is linked into the model's. After ``fit`` the best checkpoint is tested on every
test split (``--test_after_fit false`` to skip); ``test`` and ``validate`` print one row per split
and ``test`` writes ``<run dir>/test_metrics.json``. ``predict`` streams logits files through
the task's :class:`~occam_l2r.tasks.logits_writer.LogitsWriter` (no predictions kept in memory).

From Python: ``OccamCLI(args=["fit", "--config", ...])`` (see :func:`run`), then
``cli.trainer.checkpoint_callback.best_model_path``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from occam_l2r.tasks.base import format_summary, save_metrics


def quiet_library_warnings() -> None:
    """Silence notices of Lightning and torch that are not the user's business."""
    for pattern in (
        r".*on_after_batch_transfer.*",
        r".*does not have many workers.*",
        r".*LightningCLI's args parameter is intended.*",
        r".*pytree.*",
        r".*_register_pytree_node.*",
        r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
        r".*The number of training batches .* is smaller than the logging interval.*",
        r".*Checkpoint directory .* exists and is not empty.*",
        r".*predict returns predictions.*",
        r".*sync_dist=True.*",
        r".*The dirpath has changed from.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.utils\._pytree")
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdverts())


class _DropAdverts(logging.Filter):
    """Drops Lightning's tips about cloud services from the console."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in record.getMessage()


class OccamCLI(LightningCLI):
    """LightningCLI with the toolkit's defaults (checkpoints/ folder, TensorBoard, seed 0)."""

    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        quiet_library_warnings()
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            trainer_defaults=trainer_defaults(),
            args=args,
            run=run,
            auto_configure_optimizers=False,
        )

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

    def _prepare_subcommand_parser(
        self, klass: type, subcommand: str, **kwargs: Any
    ) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # one summary row per split instead of Lightning's table per dataloader; the logits
        # writer streams predictions to disk, so `predict` keeps none in memory
        defaults = {"test": {"verbose": False}, "validate": {"verbose": False},
                    "predict": {"return_predictions": False}}.get(subcommand, {})  # fmt: skip
        if defaults:
            parser.set_defaults(defaults)
        return parser

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit", True):
            return
        if not hasattr(self.datamodule, "test_dataloader"):
            return
        callback = self.trainer.checkpoint_callback
        ckpt = "best" if callback is not None and callback.best_model_path else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
        self._write_metrics()

    def after_test(self) -> None:
        self._write_metrics()

    def after_validate(self) -> None:
        if self.trainer.global_rank == 0:
            print(format_summary(dict(self.trainer.callback_metrics), stage="val"))

    def _write_metrics(self) -> None:
        base = self.trainer.log_dir or self.trainer.default_root_dir  # a collective: all ranks
        path = Path(base) / "test_metrics.json"
        if self.trainer.global_rank != 0:
            return
        splits = tuple(getattr(self.model, "split_names", {}).get("test", [])) or ("test",)
        metrics = {
            k: v for k, v in self.trainer.callback_metrics.items() if k.split("/")[0] in splits
        }
        save_metrics(metrics, path)
        print(format_summary(metrics))
        print(f"test metrics written to {path}")


def trainer_defaults() -> dict:
    return {
        "default_root_dir": "checkpoints",
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "checkpoints", "name": "default"},
        },
    }


def run(argv: list[str] | None = None) -> OccamCLI:
    """Run a Lightning verb: ``run(["fit", "--config", ...])``; ``None`` reads ``sys.argv``."""
    return OccamCLI(args=argv)


def main(argv: list[str]) -> OccamCLI:
    """Entry of :mod:`occam_l2r.cli` for ``fit``/``validate``/``test``/``predict``."""
    return run(argv)
