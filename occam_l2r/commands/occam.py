"""``python -m occam_l2r occam --config configs/<dataset>/occam.yaml``: OCCAM's Table 8.

A ``LightningCLI`` (:class:`OccamVerbCLI`) over :class:`~occam_l2r.tasks.occam.OccamTask` and
:class:`~occam_l2r.data.occam_datamodule.OccamDataModule`, run as a ``test`` of every split of
the DataModule; the config has the sections of every Lightning job::

    model:    # OccamTask: the zero-shot model, the foreground scores, AlphaCLIP weights
      model_name: clip-l14
      scores: [max_prob, oracle]
    data:     # OccamDataModule: the dataset, the mask sources (stores), the apply modes
      dataset: {class_path: occam_l2r.data.datasets..., init_args: ...}
      mask_sources: [cropformer]
      apply_modes: [crop_resize_gray, crop_resize_original, alpha]
    trainer:  # the Lightning Trainer (accelerator, devices, precision, ...)

It prints and writes ``occam_table.md`` / ``.csv`` / ``.json`` (one row per mask source, score and
apply mode, the whole-image baselines beside them) into ``model.table_dir`` (default: the
trainer's ``default_root_dir``). The same classes run with ``test`` / ``predict`` of the
Lightning verbs when a config names them by ``class_path``.
"""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from occam_l2r.commands.lightning import OneMessageInstantiation, OneMessageLightningParser
from occam_l2r.console import log_to_console, quiet_library_warnings, use_console_callbacks
from occam_l2r.data.occam_datamodule import OccamDataModule
from occam_l2r.tasks.occam import OccamTask

PROG = "python -m occam_l2r occam"


class OccamVerbCLI(OneMessageInstantiation, LightningCLI):
    """The ``occam`` verb's LightningCLI (``run=False``): parses ``args`` and instantiates the
    task, the DataModule and the Trainer (with the task's
    :attr:`~occam_l2r.tasks.occam.OccamTask.trainer_defaults`); :meth:`run_occam` runs the test.

    Args:
        args: the arguments after the verb (``["--config", "c.yaml", ...]``).
    """

    def __init__(self, args: ArgsType) -> None:
        quiet_library_warnings()
        super().__init__(
            OccamTask,
            OccamDataModule,
            save_config_callback=None,
            trainer_defaults=dict(OccamTask.trainer_defaults),
            seed_everything_default=0,
            parser_kwargs={"prog": PROG, "description": __doc__.split("\n\n")[0]},
            args=args,
            run=False,
            auto_configure_optimizers=False,
            load_from_checkpoint_support=False,
            parser_class=OneMessageLightningParser,
        )

    def after_instantiate_classes(self) -> None:
        use_console_callbacks(self.trainer)  # the toolkit's progress bar, as every verb

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def run_occam(self) -> dict[str, Any]:
        """Test every split; returns the metrics and the table's paths (rank 0 writes them)."""
        task: OccamTask = self.model
        self.trainer.test(task, datamodule=self.datamodule, verbose=False)
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()}
        paths = {k: str(v) for k, v in task.table_paths.items()}
        if paths and self.trainer.is_global_zero:
            print(f"OCCAM table written to {paths['markdown']} (+ .csv, .json)", flush=True)
        return {"metrics": metrics, "table": paths}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point of ``python -m occam_l2r occam``.

    Args:
        argv: the arguments after the verb; ``None`` reads ``sys.argv[2:]``.
    """
    log_to_console()
    return OccamVerbCLI(list(sys.argv[2:] if argv is None else argv)).run_occam()
