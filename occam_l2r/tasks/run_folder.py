"""A run's folder: claimed atomically, never reused by a new fit, found again by ``--resume``.

A ``fit`` run lives in ``<save_dir>/<name>/<version>/`` (TensorBoard or CSV logger) or, with
``--trainer.logger false``, in ``default_root_dir`` (docs/runs.md). Here:

- :func:`claim_version` creates the next free ``version_<k>`` folder with ``os.mkdir``, so two
  runs started at once never share a folder;
- :func:`check_new_run_folder` refuses a new ``fit`` in a pinned folder that holds checkpoints;
- :func:`hold_run_folder`: a ``fit`` holds its run folder (an ``flock`` on the folder itself,
  released when the process ends, however it ends), so a second fit pointed at the same folder
  (the same pinned version, or ``--resume`` of a run that is still training) is refused.
- :func:`release_failed_claim` gives a claimed folder back when its start failed (no step, no
  checkpoint): a failed start leaves no empty ``version_<k>`` behind;
- :func:`with_run_config` and :func:`place_resumed_run` turn ``fit --resume RUN`` into the run's
  config, its logger pointed at RUN and ``ckpt_path`` = RUN's latest checkpoint;
- :func:`place_evaluation`: ``validate``/``test``/``predict --ckpt_path K`` write into K's run
  folder (no logger, no new ``version_<k>``) unless their config pins a folder;
- :class:`RunConfigSaver` saves ``config.yaml`` without refusing a resumed run or the stale
  config of a start that failed, and removes its config when a start fails.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from occam_l2r.errors import UserError
from occam_l2r.tasks.checkpoints import (
    ResumeError,
    check_checkpoint_file,
    checkpoint_dir,
    checkpoint_run_dir,
    checkpoints_in,
    latest_checkpoint,
    names_local_file,
    same_dir,
)


class RunFolderError(UserError, FileExistsError):
    """A new ``fit`` would write into the folder of an earlier run."""


def hold_run_folder(folder: str | os.PathLike) -> int | None:
    """Hold ``folder`` for this ``fit`` until the process ends; refuse it when another holds it.

    An exclusive, non-blocking ``flock`` on the folder itself (created if missing): no file is
    written, and the kernel releases it when the process ends (SIGKILL included), so a killed
    run never blocks its resume. Returns the descriptor to keep open (``None`` where the
    filesystem has no ``flock``: nothing is held, as before).

    Raises:
        RunFolderError: another process holds ``folder``.
    """
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise RunFolderError(
                f"another fit is writing into {path} right now (it holds the folder): two runs "
                "in one folder would overwrite each other's checkpoints. Wait for it to end (then "
                f"`python -m occam_l2r fit --resume {path}` continues it), or start this run "
                "elsewhere (leave trainer.logger.init_args.version unset for the next free "
                "version)."
            ) from None
        return None  # no flock here (some network filesystems)
    return fd


_VERSIONED = (TensorBoardLogger, CSVLogger)

#: what a start writes into its folder before the first step (removed with a failed start's
#: claim); a folder holding anything else is left as it is
_START_FILES = (
    "events.out.tfevents.*",
    "hparams.yaml",
    "config*.yaml",
    "metrics.csv",
    "unreadable_images.csv",  # data.on_unreadable=skip lists the left-out images at setup
)


def claim_version(root: str | os.PathLike) -> int:
    """Create and return the next free ``<root>/version_<k>`` folder.

    ``os.mkdir`` fails when another process created the folder first; the next number is then
    tried, so two runs started together never share a folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    taken = [
        int(d.name.split("_", 1)[1])
        for d in root.glob("version_*")
        if d.is_dir() and d.name.split("_", 1)[1].isdigit()
    ]
    version = max(taken) + 1 if taken else 0
    while True:
        try:
            os.mkdir(root / f"version_{version}")
            return version
        except FileExistsError:
            version += 1
        except FileNotFoundError:  # a failed start removed the empty root meanwhile
            root.mkdir(parents=True, exist_ok=True)


class RunConfigSaver(SaveConfigCallback):
    """Saves ``config.yaml`` in the run folder; never blocks a resume or a retried start.

    - ``fit``: writes (over a stale config left by a start that failed before any checkpoint;
      the CLI refuses folders holding checkpoints before this runs). When resuming, the run's
      ``config.yaml`` is kept; a config that differs is saved as ``config_resume.yaml``.
      If the fit fails before any checkpoint is written, the config is removed again.
    - ``validate``/``test``/``predict``: writes ``config.yaml``, or ``config_<verb>.yaml`` in a
      folder that holds a fit run's checkpoints or a ``config.yaml`` (K's run folder, a folder
      of downloaded weights): never over another file's config.

    ``resume`` and (when resuming) ``ckpt_path`` are saved as ``null``: the file describes the
    run, so that ``fit --config RUN/config.yaml`` starts a new one.
    """

    written: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Save the config on rank 0 (``trainer.log_dir`` is a collective: every rank calls)."""
        if self.already_saved:
            return
        log_dir = trainer.log_dir
        if trainer.is_global_zero and log_dir:
            self.written = self._save(Path(log_dir), stage, checkpoint_dir(trainer, log_dir))
            self.save_config(trainer, pl_module, stage)
        self.already_saved = trainer.strategy.broadcast(True)

    def _save(self, folder: Path, stage: str, ckpt_dir: Path) -> Path | None:
        config = self.config.clone()
        resumed = bool(config.get("resume"))
        if "resume" in config:
            config.resume = None
        path = folder / self.config_filename
        stage = str(getattr(stage, "value", stage))  # Lightning passes a TrainerFn ("test")
        if resumed:
            config.ckpt_path = None
            if path.is_file():
                text = self.parser.dump(config, skip_none=False)
                if yaml.safe_load(path.read_text()) == yaml.safe_load(text):
                    return None
                path = folder / "config_resume.yaml"
        elif stage != "fit" and (checkpoints_in(ckpt_dir) or path.exists()):
            path = folder / f"config_{stage}.yaml"
        folder.mkdir(parents=True, exist_ok=True)
        self.parser.save(config, path, skip_none=False, overwrite=True, multifile=self.multifile)
        return path

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A start that failed before any checkpoint, or an evaluation that failed, leaves no
        config behind."""
        path = self.written
        if path is None or not trainer.is_global_zero:
            return
        evaluation = trainer.state.fn is not None and trainer.state.fn != "fit"
        if evaluation or not checkpoints_in(checkpoint_dir(trainer, path.parent)):
            path.unlink(missing_ok=True)
            self.written = None


def place_evaluation(config: Namespace) -> Path | None:
    """Point a ``validate``/``test``/``predict`` config with ``--ckpt_path K`` at K's run folder.

    When the config pins no folder (its TensorBoard/CSV logger has no version: the default),
    the logger is turned off and ``default_root_dir`` becomes K's run folder
    (:func:`~occam_l2r.tasks.checkpoints.checkpoint_run_dir`): the verb writes
    ``test_metrics.json`` / ``validate_metrics.json`` / ``logits/`` and its
    ``config_<verb>.yaml`` there, and creates no new ``version_<k>`` (docs/runs.md). A pinned
    folder (a set logger version, ``--trainer.logger false``) or another logger is kept.

    Returns:
        The run folder the verb now writes into, ``None`` when the config was kept.
    """
    ckpt = config.get("ckpt_path")
    if not names_local_file(ckpt):
        return None
    trainer = config.trainer
    logger = trainer.get("logger")
    if logger is not None:
        init = _logger_args(logger)
        if init is None or init.get("version") is not None:
            return None
    run = checkpoint_run_dir(ckpt)
    trainer.logger = False
    trainer.default_root_dir = str(run)
    return run


def check_new_run_folder(trainer: L.Trainer, refuse: bool = True) -> Path | None:
    """Give an auto-versioned logger its claimed folder; refuse a pinned folder holding a run.

    Call on rank 0 only, before the trainer runs (the logger has created nothing yet). The
    version is set on the logger itself (Lightning would pick it lazily, without claiming it)
    so that the saved config keeps ``version: null``.

    Args:
        trainer: the instantiated trainer.
        refuse: refuse a pinned folder that holds checkpoints (``fit``; evaluations may share).

    Returns:
        The ``version_<k>`` folder claimed for the logger, ``None`` for a pinned folder.

    Raises:
        RunFolderError: the folder (a set logger version, or ``default_root_dir`` without a
            logger) holds checkpoints.
    """
    loggers = trainer.loggers
    if len(loggers) == 1 and isinstance(loggers[0], _VERSIONED) and loggers[0]._version is None:
        root = os.path.expanduser(os.path.expandvars(loggers[0].root_dir))
        loggers[0]._version = claim_version(root)
        return Path(root) / f"version_{loggers[0]._version}"
    if not refuse or (loggers and not isinstance(loggers[0], _VERSIONED)):
        return None
    run = run_dir(trainer)
    ckpt_dir = checkpoint_dir(trainer, run)
    if checkpoints_in(ckpt_dir):
        raise RunFolderError(
            f"{run} already holds a run (checkpoints in {ckpt_dir}). Continue it with "
            f"`python -m occam_l2r fit --resume {run}`, or start a new run elsewhere (leave "
            "trainer.logger.init_args.version unset for the next free version, or change "
            "--trainer.default_root_dir)"
        )
    return None


def release_failed_claim(trainer: L.Trainer, folder: Path) -> bool:
    """Remove the claimed run ``folder`` of a start that failed before it trained.

    Call on rank 0 after the verb failed (the logger is finalized). The folder goes only when the
    trainer took no optimizer step, no checkpoint was written and it holds nothing but what a
    start writes (:data:`_START_FILES`, an empty ``checkpoints/``); anything else keeps it. The
    logger's name folders above it (``<save_dir>/<name>``) go too when nothing else is in them.

    Returns:
        Whether the folder was removed.
    """
    if trainer.global_step > 0 or not folder.is_dir():
        return False
    ckpt_dir = checkpoint_dir(trainer, folder)
    if checkpoints_in(ckpt_dir):
        return False
    entries = list(folder.iterdir())
    empty_dirs = [e for e in entries if e.is_dir() and not any(e.iterdir())]
    files = [e for e in entries if e not in empty_dirs]
    if any(not f.is_file() or not any(f.match(p) for p in _START_FILES) for f in files):
        return False
    for f in files:
        f.unlink(missing_ok=True)
    for d in empty_dirs:
        d.rmdir()
    try:
        folder.rmdir()
    except OSError:  # something appeared meanwhile: keep it
        return False
    logger = trainer.loggers[0] if trainer.loggers else None
    save_dir = Path(os.path.expanduser(str(getattr(logger, "save_dir", None) or folder.parent)))
    parent = folder.parent
    while parent != save_dir and save_dir in parent.parents:  # the logger's empty name folders
        try:
            parent.rmdir()
        except OSError:  # not empty (another run's versions): keep it
            break
        parent = parent.parent
    return True


def run_dir(trainer: L.Trainer) -> Path:
    """The run folder of an instantiated trainer whose logger version is set (or no logger)."""
    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    logger = trainer.loggers[0]
    return Path(logger.root_dir) / _version_dir(logger.version)


def with_run_config(argv: list[str]) -> list[str]:
    """``argv`` with ``--config RUN/config.yaml`` after ``fit`` when ``--resume RUN`` is given
    without any ``--config``."""
    run = None
    for i, arg in enumerate(argv):
        if arg == "--resume" and i + 1 < len(argv):
            run = argv[i + 1]
        elif arg.startswith("--resume="):
            run = arg.split("=", 1)[1]
    if not run or "fit" not in argv or any(a.split("=")[0] == "--config" for a in argv):
        return argv
    if not Path(run).is_dir():
        raise ResumeError(f"cannot resume {run}: no such run folder (see docs/runs.md)")
    config = Path(run) / "config.yaml"
    if not config.is_file():
        raise ResumeError(f"cannot resume {run}: it has no config.yaml; pass the run's --config")
    at = argv.index("fit") + 1
    return [*argv[:at], "--config", str(config), *argv[at:]]


def configured_run_dir(trainer: Namespace) -> Path | None:
    """The run folder that a trainer config pins (no logger, or a set version), else None."""
    logger = trainer.get("logger")
    if logger is False:
        return Path(trainer.get("default_root_dir") or os.getcwd())
    init = _logger_args(logger)
    if init is None or init.get("version") is None:
        return None
    return Path(init.save_dir) / (init.get("name") or "") / _version_dir(init.version)


def which_run_message(trainer: Namespace) -> str:
    """The error for ``--ckpt_path last`` when the config pins no run folder."""
    init = _logger_args(trainer.get("logger"))
    root = Path(init.save_dir) / (init.get("name") or "") if init is not None else None
    runs = sorted(root.glob("version_*"), key=lambda p: p.stat().st_mtime) if root else []
    newest = f" (the newest under {root} is {runs[-1]})" if runs else ""
    return (
        "--ckpt_path last: which run? Name it: `python -m occam_l2r fit --config C --resume "
        f"RUN` with RUN a run folder such as checkpoints/NAME/version_0{newest}"
    )


def place_resumed_run(config: Namespace, run: Path) -> Path:
    """Point ``config`` (a ``fit`` config) at ``run`` and return the checkpoint to resume from.

    The logger gets ``run``'s version (and, if its ``save_dir``/``name`` lead elsewhere, ``run``'s
    parent as its folder); without a logger ``default_root_dir`` becomes ``run``. The checkpoint
    is ``ckpt_path`` if given, else the most recent one of the run's checkpoint folder.

    Raises:
        ResumeError: no such folder, a logger that cannot be placed, or no checkpoint.
        CheckpointFileError: the checkpoint is truncated or empty.
    """
    if not run.is_dir():
        raise ResumeError(f"cannot resume {run}: no such run folder (see docs/runs.md)")
    trainer = config.trainer
    logger = trainer.get("logger")
    if logger is False:
        trainer.default_root_dir = str(run)
    else:
        init = _logger_args(logger)
        if init is None:
            raise ResumeError(
                "--resume places the run with a TensorBoardLogger or CSVLogger (or with "
                f"--trainer.logger false); this config's logger is {logger!r}"
            )
        root = Path(os.path.expanduser(str(init.save_dir))) / (init.get("name") or "")
        if not same_dir(root, run.parent):
            init.save_dir, init.name = str(run.parent), ""
        init.version = run.name
    ckpt_dir = Path(config.checkpoint.get("dirpath") or run / "checkpoints")
    given = config.get("ckpt_path")
    ckpt = Path(given) if given and given != "last" else latest_checkpoint(ckpt_dir)
    if ckpt is None:
        raise ResumeError(
            f"cannot resume {run}: no checkpoint in {ckpt_dir} (the run stopped before the end "
            "of its first epoch; --latest.every_n_train_steps N also saves every N steps). "
            "Start it again without --resume"
        )
    check_checkpoint_file(ckpt)
    return ckpt


def _logger_args(logger: Any) -> Namespace | None:
    """The init args of a configured TensorBoardLogger/CSVLogger, else ``None``."""
    if not isinstance(logger, Namespace) or not isinstance(logger.get("init_args"), Namespace):
        return None
    name = str(logger.get("class_path", "")).rsplit(".", 1)[-1]
    return logger.init_args if name in ("TensorBoardLogger", "CSVLogger") else None


def _version_dir(version: int | str) -> str:
    return version if isinstance(version, str) else f"version_{version}"
