"""The console of the verbs: what is printed, what is filtered at its source, which progress bar.

One place for what a user sees while a verb runs:

- :func:`quiet_library_warnings`: the warnings and log lines of Lightning and torch that no user
  can act on, each filtered by its own message (never all warnings): Lightning's "💡 Tip" about
  ``litlogger``, the ``_pytree`` deprecation (``isinstance(treespec, LeafSpec)``, raised by
  ``lightning/pytorch/utilities/_pytree.py`` on torch >= 2.10), the notices listed in
  :data:`NOISE`;
- :func:`log_to_console`: the toolkit's own INFO lines (``occam_l2r.*`` loggers: the data root,
  the store, per-split counts and fallbacks, the run folder) on stderr, once per process;
- :func:`use_console_callbacks`: the Trainer's default progress bar and model summary replaced by
  the toolkit's: a Rich bar without Lightning's ``v_num`` (a ``seed0`` version cut to ``eed0``;
  the run folder is logged instead) on a terminal, :class:`PlainProgressBar` (a line now and
  then, no carriage returns) when stdout is not a terminal (a log file, a scheduler's output);
  a model summary without the FLOPs column and ``Total FLOPs: 0`` when nothing counted FLOPs
  (the toolkit's models set no ``example_input_array``).

Every verb uses the same bars: ``fit``/``validate``/``test``/``predict``, ``segment`` (with
images/s, :func:`progress_bar`), ``occam``.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import (
    ModelSummary,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
    TQDMProgressBar,
)

#: the toolkit's loggers (every module logs under ``occam_l2r.<module>``)
LOGGER = "occam_l2r"
#: format of the toolkit's log lines on the console
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

#: messages of Lightning and torch warnings that are not the user's business (regexes)
NOISE = (
    r".*on_after_batch_transfer.*",
    r".*does not have many workers.*",
    r".*LightningCLI's args parameter is intended.*",
    r".*_register_pytree_node.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*predict returns predictions.*",
    r".*sync_dist=True.*",
    r".*The dirpath has changed from.*",
    # the first ModelCheckpoint is the toolkit's best-on-val one (the second keeps last.ckpt)
    r".*configured with multiple `ModelCheckpoint` callbacks.*",
    # a resumed `segment` run with every image stored has nothing left to predict
    r".*Total length of `DataLoader` across ranks is zero.*",
)

#: the loggers through which Lightning's ``rank_zero_info`` may print (the module that logs it is
#: rebound by whichever of Lightning's packages was imported last)
_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)


def quiet_library_warnings() -> None:
    """Filter the notices of Lightning and torch that are not the user's business, each by its
    message (:data:`NOISE`) or its source module, and Lightning's adverts."""
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    # the deprecations that torch's _pytree raises for Lightning's use of it (FutureWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.utils\._pytree")
    warnings.filterwarnings(
        "ignore", category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree"
    )
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropAdverts) for f in logger.filters):
            logger.addFilter(DropAdverts())


class DropAdverts(logging.Filter):
    """Drops Lightning's tips about its cloud services (``💡 Tip: ... litlogger ...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Tip:" in message and "lit" in message.lower())


def log_to_console() -> None:
    """Show the toolkit's INFO lines (``occam_l2r.*``) on stderr, unless logging is set up
    already (a handler on the root or the toolkit's logger: an application's own setup)."""
    logger = logging.getLogger(LOGGER)
    if logging.getLogger().handlers or logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def is_terminal() -> bool:
    """Whether stdout is a terminal (where a live progress bar can redraw itself)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stdout
        return False


def progress_bar(images_per_second: bool = False) -> ProgressBar:
    """The toolkit's progress bar: Rich on a terminal, plain lines otherwise.

    Args:
        images_per_second: show the images per second of ``predict`` (batches that are lists
            of images, as in ``segment``).
    """
    if is_terminal():
        return ConsoleProgressBar(images_per_second=images_per_second)
    return PlainProgressBar(images_per_second=images_per_second)


def use_console_callbacks(trainer: L.Trainer) -> None:
    """Replace the Trainer's default progress bar and model summary by the toolkit's.

    Only Lightning's own defaults are replaced (a bar or summary of another class that a config
    names is kept); a disabled bar or summary stays disabled.
    """
    callbacks = trainer.callbacks
    for i, callback in enumerate(callbacks):
        if type(callback) in (RichProgressBar, TQDMProgressBar):
            callbacks[i] = progress_bar()
        elif type(callback) in (RichModelSummary, ModelSummary):
            callbacks[i] = ConsoleModelSummary(max_depth=callback._max_depth)


class _ImageRate:
    """Images per second of ``predict`` (batches that are lists of images)."""

    def __init__(self) -> None:
        self.images = 0
        self.t0 = time.perf_counter()

    def reset(self) -> None:
        self.images, self.t0 = 0, time.perf_counter()

    def add(self, batch: Any) -> float:
        self.images += len(batch)
        return self.images / max(time.perf_counter() - self.t0, 1e-9)


class ConsoleProgressBar(RichProgressBar):
    """Lightning's Rich bar without ``v_num`` (the run folder is logged at the start of ``fit``),
    with images/s in the predict bar when asked.

    Args:
        images_per_second: show the images per second of ``predict``.
        **kwargs: :class:`~lightning.pytorch.callbacks.RichProgressBar`'s arguments.
    """

    def __init__(self, images_per_second: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = _ImageRate() if images_per_second else None

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        if self.rate is not None:
            self.rate.reset()

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if self.rate is None:
            return
        rate = self.rate.add(batch)
        if self.progress is not None and self.predict_progress_bar_id is not None:
            description = f"{self.predict_description} ({rate:.1f} img/s)"
            self.progress.update(self.predict_progress_bar_id, description=description)


class PlainProgressBar(ProgressBar):
    """Progress as plain lines, for a stdout that is not a terminal (no carriage returns).

    One line per stage at most every ``every_s`` seconds (``Epoch 0: 120/400 batches``), and one
    when an epoch, a test or a prediction ends, with the progress-bar metrics (``train/loss``).

    Args:
        images_per_second: add the images per second of ``predict``.
        every_s: the least number of seconds between two lines of one stage.
    """

    def __init__(self, images_per_second: bool = False, every_s: float = 30.0) -> None:
        super().__init__()
        self.rate = _ImageRate() if images_per_second else None
        self.every_s = every_s
        self._enabled = True
        self._last = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items

    def _line(self, text: str) -> None:
        if self._enabled and self.trainer.is_global_zero:
            print(text, flush=True)

    def _progress(self, description: str, done: int, total: float, extra: str = "",
                  force: bool = False) -> None:  # fmt: skip
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return
        self._last = now
        of = f"/{int(total)}" if total != float("inf") else ""
        self._line(f"{description}: {done}{of} batches{extra}")

    def _metrics(self) -> str:
        metrics = self.get_metrics(self.trainer, self.trainer.lightning_module)
        shown = []
        for key, value in metrics.items():
            value = value.item() if hasattr(value, "item") else value
            shown.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
        return f", {', '.join(shown)}" if shown else ""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        self._progress(f"Epoch {trainer.current_epoch}", batch_idx + 1, self.total_train_batches)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        self._progress(
            f"Epoch {trainer.current_epoch}", done, self.total_train_batches, self._metrics(),
            force=True,
        )  # fmt: skip

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.monotonic()

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.has_dataloader_changed(dataloader_idx)  # the loader whose batches are counted

    def on_test_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        total = self.total_test_batches_current_dataloader
        self._progress(self.test_description, batch_idx + 1, total)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._line(f"{self.test_description}: done")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.monotonic()
        if self.rate is not None:
            self.rate.reset()

    def on_predict_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.has_dataloader_changed(dataloader_idx)

    def on_predict_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        extra = f" ({self.rate.add(batch):.1f} img/s)" if self.rate is not None else ""
        total = self.total_predict_batches_current_dataloader
        last = batch_idx + 1 >= total
        self._progress(self.predict_description, batch_idx + 1, total, extra, force=last)


class ConsoleModelSummary(RichModelSummary):
    """Lightning's Rich model summary without the FLOPs column and total when no FLOPs were
    counted (a module without ``example_input_array``: every count is 0)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        if total_flops:
            RichModelSummary.summarize(
                summary_data, total_parameters, trainable_parameters, model_size,
                total_training_modes, total_flops, **summarize_kwargs,
            )  # fmt: skip
            return
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        for name, _ in columns[1:]:
            table.add_column(name, justify="left" if name in ("Name", "Type", "Mode") else "right")
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        grid = Table.grid(expand=True)
        grid.add_column()
        for label, value in (
            ("Trainable params", get_human_readable_count(int(trainable_parameters))),
            ("Non-trainable params", get_human_readable_count(int(frozen))),
            ("Total params", get_human_readable_count(int(total_parameters))),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", total_training_modes["train"]),
            ("Modules in eval mode", total_training_modes["eval"]),
        ):
            grid.add_row(f"[bold]{label}[/]: {value}")
        console.print(grid)
