"""``fit`` / ``validate`` / ``test`` / ``predict``: LightningCLI with the toolkit's defaults.

Any LightningModule and LightningDataModule of the package is chosen by ``class_path`` in the
config; several ``--config`` files compose (a base config and a view overlay). The DataModule's
``num_classes`` is linked into the model's. After ``fit`` the best checkpoint is tested on every
test split (``--test_after_fit false`` to skip); ``test`` and ``validate`` print one row per split
and write ``<run dir>/test_metrics.json`` / ``validate_metrics.json``. ``predict`` streams logits
files through the task's :class:`~occam_l2r.tasks.logits_writer.LogitsWriter` (no predictions
kept in memory); ``fit --predict_after_fit true`` (the pipeline's runs) writes them for every
split into ``<run dir>/logits`` after training and scores the test splits in that same pass (one
pass over each split instead of a test and then a predict; the same ``test_metrics.json``).
With ``--ckpt_path K`` the three write into K's run folder, no new version
(:func:`~occam_l2r.tasks.run_folder.place_evaluation`). Errors of building the classes that the
user fixes in the config (the Trainer's settings, a missing package) are one message
(:class:`OneMessageInstantiation`).

Run folders (docs/runs.md; the pieces live in :mod:`occam_l2r.tasks.checkpoints`): a new run
claims the next free ``version_<k>`` atomically (a start that fails before its first step gives
it back); ``checkpoints/last.ckpt`` holds the latest
state (every epoch end, and every N steps with ``--latest.every_n_train_steps N``), written
atomically; ``fit --resume RUN`` continues a run in its own folder from that state, best-checkpoint
tracking included (``--ckpt_path last`` does the same for a run whose folder is pinned); a folder
holding checkpoints is never reused by a new fit; ``--trainer.logger false`` works. A SIGTERM
(a scheduler's notice before the kill) stops ``fit`` after the running batch with ``last.ckpt``
saved, one message and exit status 143.

From Python (another verb, a notebook): parse the config once into a typed object,
``config = parse_config(["base.yaml", "view.yaml"], ["--trainer.max_epochs", "4"])``, set its
fields (``config.seed_everything = 1``), then ``cli = run("fit", config)`` and
``cli.trainer.checkpoint_callback.best_model_path``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from occam_l2r.commands import OneMessageParser
from occam_l2r.console import quiet_library_warnings, use_console_callbacks
from occam_l2r.data.base import BaseDataModule
from occam_l2r.errors import UserError, known_cause, use_option_spelling
from occam_l2r.logits import LogitsFileError
from occam_l2r.tasks.base import HEADLINE_KEY, format_summary, save_metrics
from occam_l2r.tasks.checkpoints import (
    EXIT_SIGTERM,
    AtomicCheckpointIO,
    CheckpointFileError,
    LatestCheckpoint,
    ResumeError,
    RunCheckpoint,
    check_checkpoint_file,
    names_local_file,
    same_dir,
    sigterm_message,
)
from occam_l2r.tasks.run_folder import (
    RunConfigSaver,
    check_new_run_folder,
    configured_run_dir,
    hold_run_folder,
    place_evaluation,
    place_resumed_run,
    release_failed_claim,
    run_dir,
    which_run_message,
    with_run_config,
)
from occam_l2r.weights import WeightsError


class OneMessageLightningParser(OneMessageParser, LightningArgumentParser):
    """Lightning's parser with the toolkit's parse errors: one message first, exit status 3."""


class TrainerSettingsError(UserError, ValueError):
    """The Trainer refused its settings (``--trainer.accelerator gpu`` on a machine without one)."""


class MissingPackageError(UserError, ImportError):
    """A class named in the config needs a package that is not installed (``WandbLogger``)."""


#: the known errors of the lower layers, kept as they are (:data:`occam_l2r.cli.KNOWN_ERRORS`)
_KEEP = (UserError, WeightsError, LogitsFileError)


class OneMessageInstantiation:
    """Mixin of the toolkit's ``LightningCLI`` classes (``fit``..., ``segment``, ``occam``):
    the errors of building the classes that a user fixes in the config become one message.

    - the Trainer's ``MisconfigurationException`` (``No supported gpu backend found!`` for
      ``--trainer.accelerator gpu`` on a CPU machine) -> :class:`TrainerSettingsError` naming
      ``--trainer.accelerator auto`` / ``cpu``;
    - a class whose package is missing (``lightning.pytorch.loggers.WandbLogger`` without
      ``wandb``; jsonargparse wraps it in two ``ValueError``) -> :class:`MissingPackageError`
      naming the package to install, or the default ``TensorBoardLogger`` for a logger.

    It also checks the weights and the data before a Trainer is built: a model's ``preflight()``
    (:meth:`~occam_l2r.tasks.segment.SegmentTask.preflight`: the segmenter's weights; a
    classifier checks its weights when it is built), then the DataModule's
    :meth:`~occam_l2r.data.base.BaseDataModule.preflight` (the dataset's records can be listed,
    the stores it reads exist), so a missing file, folder or store is one message before any
    Trainer, logger or run folder exists. And it says how this verb spells the options of
    ``model`` and ``data`` (through ``init_args`` where a ``class_path`` chooses the class), so
    the messages name the flag as this command line spells it (:func:`~occam_l2r.errors.option_flag`).
    """

    def instantiate_classes(self) -> None:
        chosen = {"model": self.subclass_mode_model, "data": self.subclass_mode_data}  # type: ignore[attr-defined]
        use_option_spelling(section for section, by_class_path in chosen.items() if by_class_path)
        try:
            super().instantiate_classes()  # type: ignore[misc]
        except Exception as err:
            if known_cause(err, _KEEP) is not None:
                raise
            misconfig = known_cause(err, (MisconfigurationException,))
            if misconfig is not None:
                trainer = self._get(self.config, "trainer") or {}  # type: ignore[attr-defined]
                raise TrainerSettingsError(
                    trainer_settings_message(misconfig, trainer.get("accelerator"))
                ) from err
            missing = known_cause(err, (ImportError,))
            if missing is not None:
                raise MissingPackageError(missing_package_message(err, missing)) from err
            raise

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The pre-flight checks, then the Trainer (``LightningCLI.instantiate_classes`` builds
        the model and the DataModule first): the model's, where it has one (the segment task:
        its segmenter's weights), then the DataModule's."""
        model_check = getattr(getattr(self, "model", None), "preflight", None)
        if callable(model_check):
            model_check()
        datamodule = getattr(self, "datamodule", None)
        if isinstance(datamodule, BaseDataModule):
            datamodule.preflight()
        return super().instantiate_trainer(**kwargs)  # type: ignore[misc]


def trainer_settings_message(err: BaseException, accelerator: Any = None) -> str:
    """The one message for a ``MisconfigurationException`` of the Trainer."""
    text = " ".join(str(err).split())
    if accelerator is not None and not isinstance(accelerator, str):
        accelerator = type(accelerator).__name__
    if accelerator in ("gpu", "cuda", "mps") or "gpu backend" in text.lower():
        return (
            f"--trainer.accelerator {accelerator or 'gpu'}: this machine has no GPU that PyTorch "
            f"can use ({text}). Set --trainer.accelerator auto (the GPUs where there are, else "
            "the CPU) or --trainer.accelerator cpu"
        )
    return (
        f"the Trainer refused its settings: {text}. Fix the --trainer.* option it names "
        "(--trainer.accelerator, --trainer.devices, --trainer.strategy, --trainer.precision)"
    )


def missing_package_message(err: BaseException, missing: BaseException) -> str:
    """The one message for a class of the config whose package is not installed."""
    found, current, seen = None, err, 0
    while current is not None and found is None and seen < 10:  # jsonargparse's wrappers
        found = re.search(r"class_path '([^']+)'", str(current))
        current, seen = current.__cause__ or current.__context__, seen + 1
    class_path = found.group(1) if found else "a class of the config"
    requirement = re.search(r"Requirement '([^']+)' not met", str(missing))
    package = requirement.group(1) if requirement else getattr(missing, "name", None) or "?"
    name = re.split(r"[<>=!~ ]", package, maxsplit=1)[0]
    other = (
        "; or log with the default TensorBoard logger "
        "(--trainer.logger.class_path lightning.pytorch.loggers.TensorBoardLogger)"
        if ".loggers." in class_path
        else ""
    )
    return (
        f"{class_path} needs the package {name}, which is not installed: "
        f"pip install '{package}'{other}"
    )


class OccamCLI(OneMessageInstantiation, LightningCLI):
    """LightningCLI with the toolkit's defaults (checkpoints/ folder, TensorBoard, seed 0).

    Args:
        args: the command line, subcommand first (``["fit", "--config", ...]``), or a parsed
            config under its subcommand (``{"fit": config}``, see :func:`run`); ``None`` reads
            ``sys.argv``.
        run: run the subcommand (``False``: only instantiate the classes).
    """

    def __init__(
        self, args: list[str] | dict[str, Any] | Namespace | None = None, run: bool = True
    ) -> None:
        quiet_library_warnings()
        self._given: Namespace | None = None  # the fit config before a resume placed it
        self._resumed: Path | None = None  # the run folder that this fit resumes
        self._own_state = False  # the resumed checkpoint lies in the run's checkpoint folder
        self._claimed: Path | None = None  # the version folder this run claimed
        self._held: int | None = None  # the descriptor holding the run folder of this fit
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            save_config_callback=RunConfigSaver,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            trainer_defaults=trainer_defaults(),
            args=args,
            run=run,
            auto_configure_optimizers=False,
            parser_class=OneMessageLightningParser,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit", type=bool, default=True, help="test the best checkpoint after fit"
        )
        parser.add_argument(
            "--predict_after_fit",
            type=bool,
            default=False,
            help="after fit, write the logits of every split with the best checkpoint into "
            "<run dir>/logits (as predict); the test splits are scored in that same pass "
            "(test_metrics.json as after a test, no second pass)",
        )
        parser.add_argument(
            "--logits_dtype",
            type=Literal["float32", "float16"],
            default="float32",
            help="the stored dtype of the logits files that predict writes: float32 (format 2) "
            "or float16 (format 3: half the size, e.g. ImageNet-1k's train split, 2.6 GB instead "
            "of 5.1 GB per model; fuse reads both)",
        )
        parser.add_argument(
            "--resume",
            type=str | None,
            default=None,
            help="fit only: continue the run in this folder (e.g. checkpoints/NAME/version_0) "
            "from its latest checkpoint; without --config, its config.yaml is read",
        )
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        # the dataset's headline metric on the first validation split (BaseTask logs it)
        parser.set_defaults({"checkpoint.monitor": HEADLINE_KEY, "checkpoint.mode": "max"})
        parser.add_lightning_class_args(LatestCheckpoint, "latest")
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

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse (reading ``RUN/config.yaml`` for ``fit --resume RUN`` without ``--config``),
        then check ``--resume`` and a given checkpoint file before anything loads it."""
        if args is None or isinstance(args, list):
            argv = list(sys.argv[1:] if args is None else args)
            with_config = with_run_config(argv)
            args = with_config if with_config != argv else args
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        if not sub:
            return
        config = self.config[sub]
        if config.get("resume") and sub != "fit":
            raise UserError(f"--resume continues a training run: use it with fit, not {sub}")
        ckpt = config.get("ckpt_path")
        if names_local_file(ckpt):
            check_checkpoint_file(ckpt)

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the checkpoint's hyperparameters with a bare torch.load
        try:
            super()._parse_ckpt_path()
        except (SystemExit, UserError):
            raise
        except Exception as err:
            ckpt = self.config[self.config.subcommand].get("ckpt_path")
            if ckpt and Path(ckpt).is_file():
                raise CheckpointFileError.from_error(ckpt, err) from err
            raise

    def before_instantiate_classes(self) -> None:
        """``validate``/``test``/``predict --ckpt_path K``: write beside K, in K's run folder
        (:func:`~occam_l2r.tasks.run_folder.place_evaluation`). ``fit --resume RUN`` (or
        ``--ckpt_path last`` in a pinned folder): point the logger at RUN and resume from its
        latest checkpoint."""
        if self.subcommand in ("validate", "test", "predict"):
            place_evaluation(self.config[self.subcommand])
            return
        if self.subcommand != "fit":
            return
        config = self.config.fit
        run = config.get("resume")
        if not run and config.get("ckpt_path") == "last":
            run = configured_run_dir(config.trainer)
            if run is None:
                raise ResumeError(which_run_message(config.trainer))
        if not run:
            return
        run = Path(run)
        self._given = config.clone()  # what config.yaml describes (the saver compares it)
        self._given.resume = str(run)
        ckpt = place_resumed_run(config, run)
        config.ckpt_path = str(ckpt)
        self._resumed = run
        # the best tracking saved in a checkpoint of the run's own folder is kept
        self._own_state = same_dir(ckpt.parent, config.checkpoint.dirpath or run / "checkpoints")

    def after_instantiate_classes(self) -> None:
        """Atomic checkpoint writes, the latest-state callback, the run folder's claim."""
        if self.subcommand is None:
            return
        trainer = self.trainer
        use_console_callbacks(trainer)  # the toolkit's progress bar and model summary
        if hasattr(self.model, "logits_dtype"):  # BaseTask: what its logits writer stores
            self.model.logits_dtype = self.config[self.subcommand].get("logits_dtype", "float32")
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if not trainer.loggers:  # the learning-rate monitor needs a logger
            trainer.callbacks = [
                c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)
            ]
        main = trainer.checkpoint_callback
        for callback in trainer.callbacks:
            if isinstance(callback, LatestCheckpoint) and main is not None:
                callback.dirpath = callback.dirpath or main.dirpath
                main.save_last = False  # last.ckpt is the latest state, written by `callback`
            if isinstance(callback, RunCheckpoint):
                callback.resuming = self._own_state
            if isinstance(callback, RunConfigSaver) and self._given is not None:
                callback.config = self._given
        if rank_zero_only.rank == 0 and self._resumed is None:
            self._claimed = check_new_run_folder(trainer, refuse=self.subcommand == "fit")
        if rank_zero_only.rank == 0 and self.subcommand == "fit" and not trainer.fast_dev_run:
            # one fit per folder at a time (a pinned version started twice, a resumed run that
            # still trains); released when the verb ends (fast_dev_run writes no run folder)
            self._held = hold_run_folder(self._resumed or run_dir(trainer))

    def _run_subcommand(self, subcommand: str) -> None:
        """Run the verb; a SIGTERM (Lightning stops at the end of the running batch, after
        ``fit`` saved its latest state) ends it with one message and exit status 143. A start
        that fails before its first step (and checkpoint) gives its claimed folder back. The run
        folder held by ``fit`` is let go at the end, however it ends."""
        try:
            try:
                super()._run_subcommand(subcommand)
            except BaseException:
                if self._claimed is not None:
                    release_failed_claim(self.trainer, self._claimed)
                raise
        except SIGTERMException:
            folder = self.trainer.log_dir or self.trainer.default_root_dir
            if self.trainer.global_rank == 0:
                print(sigterm_message(self.trainer, folder), file=sys.stderr, flush=True)
            raise SystemExit(EXIT_SIGTERM) from None
        finally:
            if self._held is not None:
                os.close(self._held)  # the flock goes with it
                self._held = None

    def after_fit(self) -> None:
        """Test the best checkpoint (``test_after_fit``); with ``predict_after_fit``, predict
        every split with it and score the test splits in that same pass."""
        config = self.config[self.subcommand]
        test = config.get("test_after_fit", True) and hasattr(self.datamodule, "test_dataloader")
        callback = self.trainer.checkpoint_callback
        ckpt = "best" if callback is not None and callback.best_model_path else None
        if config.get("predict_after_fit", False) and self._predict_after_fit(ckpt, test):
            return
        if not test:
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False)
        self._write_metrics()

    def _predict_after_fit(self, ckpt: str | None, test: bool) -> bool:
        """``predict`` with ``ckpt`` into ``<run dir>/logits`` (or the task's own folder), the
        test splits scored on the way when ``test`` (:attr:`BaseTask.score_predictions`); their
        metrics are written as a test's. Returns whether the metrics were written (``False``:
        a task or DataModule that did not score every test split in the pass, tested apart)."""
        model = self.model
        score = test and hasattr(model, "score_predictions")
        if getattr(model, "predictions_dir", "unset") is None:
            folder = self.trainer.log_dir or self.trainer.default_root_dir  # all ranks
            model.predictions_dir = str(Path(folder) / model.predictions_subdir)
        if score:
            model.score_predictions = True
        try:
            self.trainer.predict(
                model, datamodule=self.datamodule, ckpt_path=ckpt, return_predictions=False
            )
            metrics = model.scored_metrics if score else None  # also logged to the loggers
        finally:
            if score:
                model.score_predictions = False
        if metrics is None:
            return False
        self._write_metrics(metrics=metrics)
        return True

    def after_test(self) -> None:
        self._write_metrics()

    def after_validate(self) -> None:
        self._write_metrics("val")

    def _write_metrics(self, stage: str = "test", metrics: dict[str, Any] | None = None) -> None:
        """``<run dir>/test_metrics.json`` (``validate_metrics.json`` after ``validate``): the
        metrics of the stage's splits (those the stage logged, or ``metrics``), and one summary
        row per split on the console."""
        base = self.trainer.log_dir or self.trainer.default_root_dir  # a collective: all ranks
        name = "validate_metrics.json" if stage == "val" else "test_metrics.json"
        path = Path(base) / name
        if self.trainer.global_rank != 0:
            return
        splits = tuple(getattr(self.model, "split_names", {}).get(stage, [])) or (stage,)
        logged = self.trainer.callback_metrics if metrics is None else metrics
        metrics = {k: v for k, v in logged.items() if k.split("/")[0] in splits}
        save_metrics(metrics, path)
        print(format_summary(metrics, stage=stage))
        print(f"{'validation' if stage == 'val' else 'test'} metrics written to {path}")


def trainer_defaults() -> dict:
    """The toolkit's Trainer defaults: TensorBoard logs and runs under ``checkpoints/``."""
    return {
        "default_root_dir": "checkpoints",
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "checkpoints", "name": "default"},
        },
    }


#: the Lightning verbs of this module
Subcommand = Literal["fit", "validate", "test", "predict"]


class _ParseOnly(OccamCLI):
    """Parses a config with no subcommand; sets no seed and instantiates nothing."""

    def __init__(self, args: list[str]) -> None:
        super().__init__(args=args, run=False)

    def _set_seed(self) -> None:
        return None  # the verb that runs the config seeds

    def instantiate_classes(self) -> None:
        return None


def parse_config(configs: Sequence[str | Path], overrides: Sequence[str] = ()) -> Namespace:
    """A ``fit``/``validate``/``test``/``predict`` config as one typed object.

    The ``configs`` files compose in order (a base and a view overlay), then ``overrides``
    (dotted command-line options written by a user, ``["--trainer.max_epochs", "4"]``) apply.
    The result is checked against the classes' signatures but nothing is instantiated and no
    seed is set; set its fields, then run it with :func:`run`.
    """
    argv = [arg for c in configs for arg in ("--config", str(c))]
    return _ParseOnly([*argv, *overrides]).config


def run(subcommand: Subcommand, config: Namespace) -> OccamCLI:
    """Run the Lightning verb ``subcommand`` on a parsed ``config`` (:func:`parse_config`):
    the same run folder, checkpoints, ``config.yaml`` and test-after-fit as on the command line.
    """
    return OccamCLI(args={subcommand: config})


def main(argv: list[str] | None) -> OccamCLI:
    """Entry of :mod:`occam_l2r.cli` for ``fit``/``validate``/``test``/``predict``: ``argv`` is the
    command line, subcommand first; ``None`` reads ``sys.argv``."""
    return OccamCLI(args=argv)
