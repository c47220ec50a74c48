"""Checkpoints of a run: atomic writes, the latest state, best tracking that survives a resume.

A ``fit`` run lives in one folder (``<save_dir>/<name>/<version>/``, or ``default_root_dir``
without a logger) holding ``config.yaml``, the TensorBoard events, ``test_metrics.json`` and
``checkpoints/`` (docs/runs.md; the folder itself is handled by
:mod:`occam_l2r.tasks.run_folder`). This module holds its checkpoints:

- :func:`load_checkpoint` is the one reader of checkpoint files, for every verb (``test``,
  ``predict`` and ``fit --resume`` through :class:`AtomicCheckpointIO`, ``classify`` through
  :func:`module_from_checkpoint`, CLIP training's best checkpoint): ``torch.load`` with
  ``weights_only=True`` always, so a checkpoint carrying a pickled payload is refused, never run;
  a missing, empty, truncated or refused file raises :class:`CheckpointFileError`, naming it;
- :class:`AtomicCheckpointIO` writes every checkpoint to a hidden temporary file and renames it
  over the target, so a killed job never leaves a truncated checkpoint, and reads through
  :func:`load_checkpoint`;
- :class:`LatestCheckpoint` refreshes ``checkpoints/last.ckpt`` at every epoch end (after the
  best-checkpoint callback, so it carries the best tracking), optionally every N steps, and
  when a SIGTERM (a scheduler's notice before the kill) stops training: Lightning's signal
  handler raises :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException` at the end of
  the running batch, the callback saves the state there, and :func:`sigterm_message` is what the
  CLI prints before exiting with :data:`EXIT_SIGTERM`;
- :class:`RunCheckpoint` is the best-checkpoint callback (a ``ModelCheckpoint``) whose tracking
  survives a resume even when the run folder is reached by another path;
- :func:`check_checkpoint_file` and :func:`latest_checkpoint` for ``fit --resume``;
- :func:`checkpoint_run_dir`: the run folder of a checkpoint file, where ``validate``, ``test``
  and ``predict --ckpt_path K`` write (their metrics, ``logits/``);
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from fsspec.implementations.local import LocalFileSystem
from jsonargparse.typing import NonNegativeInt
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from occam_l2r.errors import UserError
from occam_l2r.weights import weights_only_failure

#: name of the file that holds a run's latest state
LATEST_NAME = "last.ckpt"
#: exit status of a verb stopped by SIGTERM (128 + 15, as a shell reports a process it ended)
EXIT_SIGTERM = 143
_ZIP_MAGIC = b"PK\x03\x04"
#: what to do about a checkpoint that cannot be read, by default (``fit --resume``, ``test``...)
RESUME_HINT = (
    "Resume from another one with --ckpt_path "
    "(`python -m occam_l2r fit --resume RUN --ckpt_path RUN/checkpoints/epoch=....ckpt`) "
    "or delete it"
)


class CheckpointFileError(UserError, RuntimeError):
    """A checkpoint file that cannot be read (truncated, empty or not a PyTorch checkpoint)."""

    @classmethod
    def unreadable(
        cls, path: str | os.PathLike, reason: str, hint: str = RESUME_HINT
    ) -> CheckpointFileError:
        """The error for ``path``, with why it could not be read and what to do (``hint``)."""
        return cls(
            f"checkpoint {path} cannot be read ({reason}); it is truncated, empty or not a "
            f"PyTorch checkpoint. {hint}"
        )

    @classmethod
    def refused(
        cls, path: str | os.PathLike, reason: str, hint: str = RESUME_HINT
    ) -> CheckpointFileError:
        """The error for ``path`` whose pickle asks for Python objects (code) to be loaded."""
        return cls(
            f"checkpoint {path} was refused by torch.load(weights_only=True): it holds Python "
            f"objects other than tensors and plain containers ({reason}), which could run code; "
            "nothing of it was loaded. `python -m occam_l2r fit` never writes such a file: it was "
            f"made elsewhere or altered. Only use checkpoints from a source you trust. {hint}"
        )

    @classmethod
    def from_error(
        cls, path: str | os.PathLike, err: BaseException, hint: str = RESUME_HINT
    ) -> CheckpointFileError:
        """The error for ``path`` that ``err`` (raised while loading it) reveals."""
        refused, reason = weights_only_failure(err)
        if refused:
            return cls.refused(path, reason, hint)
        if isinstance(err, pickle.UnpicklingError):
            return cls.unreadable(path, f"UnpicklingError: {reason}", hint)
        return cls.unreadable(path, _first_line(err), hint)


#: ``ckpt_path`` values of Lightning that name no file
SPECIAL_CKPT_PATHS = ("last", "best", "hpc")


def names_local_file(ckpt_path: str | None) -> bool:
    """Whether a ``--ckpt_path`` value names a local file (not ``last``/``best``/``hpc``, a URL
    or a model-registry entry)."""
    return (
        bool(ckpt_path)
        and ckpt_path not in SPECIAL_CKPT_PATHS
        and not ("://" in ckpt_path or ckpt_path.startswith("registry"))
    )


def checkpoint_run_dir(path: str | os.PathLike) -> Path:
    """The run folder of the checkpoint file ``path``: ``RUN`` for ``RUN/checkpoints/x.ckpt``
    (the layout ``fit`` writes), else the checkpoint's own folder."""
    folder = Path(path).parent
    return folder.parent if folder.name == "checkpoints" else folder


class ResumeError(UserError, FileNotFoundError):
    """``--resume`` names no run folder, or a folder without any checkpoint to resume from."""


def check_checkpoint_file(path: str | os.PathLike, hint: str | None = None) -> None:
    """Fail fast on a checkpoint that is missing, empty or a truncated zip archive.

    Only the file's head and its zip directory (at the end) are read, not the tensors; a
    file in torch's legacy (non-zip) format passes and is judged when loaded.

    Args:
        path: the checkpoint file.
        hint: what to do, for the message (default: about ``--ckpt_path``).

    Raises:
        CheckpointFileError: naming ``path``.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointFileError(f"checkpoint {p} does not exist ({hint or 'see --ckpt_path'})")
    hint = hint or RESUME_HINT
    if p.stat().st_size == 0:
        raise CheckpointFileError.unreadable(p, "the file is empty", hint)
    with open(p, "rb") as f:
        head = f.read(4)
    if head != _ZIP_MAGIC:
        return
    try:
        with zipfile.ZipFile(p) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointFileError.unreadable(p, f"bad zip archive: {err}", hint) from err


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", hint: str | None = None
) -> dict[str, Any]:
    """Read a checkpoint file: the one place the toolkit loads one.

    ``torch.load(path, weights_only=True)``: tensors and plain containers only, so a file whose
    pickle asks for any other Python object (a payload that would run code) is refused before
    anything of it runs. The toolkit's own checkpoints load so (their hyperparameters are plain
    values: see ``occam_l2r.data.datamodule``).

    Args:
        path: the checkpoint file (local).
        map_location: as ``torch.load``'s.
        hint: what to do about a bad file, for the message (default: about ``--ckpt_path``).

    Raises:
        CheckpointFileError: ``path`` is missing, empty, truncated, not a PyTorch checkpoint,
            refused (it holds Python objects) or not a dict; the message names it.
    """
    check_checkpoint_file(path, hint)
    hint = hint or RESUME_HINT
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch reports a damaged or refused file in many ways
        raise CheckpointFileError.from_error(path, err, hint) from err
    if not isinstance(state, dict):
        raise CheckpointFileError.unreadable(
            path, f"it holds a {type(state).__name__}, not a checkpoint's dict", hint
        )
    return state


def module_from_checkpoint(
    cls: type[L.LightningModule],
    path: str | os.PathLike,
    map_location: Any = "cpu",
    hint: str | None = None,
    *,
    loaded: dict[str, Any] | None = None,
    **overrides: Any,
) -> L.LightningModule:
    """``cls.load_from_checkpoint(path, **overrides)``, reading the file with
    :func:`load_checkpoint` (or taking ``loaded``, what :func:`load_checkpoint` already read
    from ``path``: a caller that inspected the file does not read it twice).

    The module is built as Lightning builds it (the saved hyperparameters, updated with
    ``overrides``; Lightning's allowlist of instantiators; ``on_load_checkpoint``; a strict
    ``load_state_dict``), from the dict that :func:`load_checkpoint` read.

    Raises:
        CheckpointFileError: as :func:`load_checkpoint`, or the file holds no ``state_dict``.
    """
    from lightning.pytorch.core.saving import _load_state

    checkpoint = loaded if loaded is not None else load_checkpoint(path, map_location, hint)
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointFileError.unreadable(path, "it holds no state_dict", hint or RESUME_HINT)
    hparams = checkpoint.setdefault(cls.CHECKPOINT_HYPER_PARAMS_KEY, {})
    if not isinstance(hparams, dict):
        raise CheckpointFileError.unreadable(
            path, f"its hyper_parameters are a {type(hparams).__name__}", hint or RESUME_HINT
        )
    hparams.update(overrides)
    return _load_state(cls, checkpoint, **overrides)


def checkpoints_in(folder: str | os.PathLike) -> list[Path]:
    """The ``*.ckpt`` files of a checkpoint folder, oldest first (``last.ckpt`` last on ties)."""
    p = Path(folder)
    if not p.is_dir():
        return []
    files = [f for f in p.glob("*.ckpt") if f.is_file()]
    return sorted(files, key=lambda f: (f.stat().st_mtime_ns, f.name == LATEST_NAME))


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The most recently written checkpoint of a folder (normally ``last.ckpt``), or ``None``."""
    files = checkpoints_in(folder)
    return files[-1] if files else None


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a hidden temporary file, then rename it over the checkpoint.

    A kill during the write leaves the previous checkpoint intact (and a ``.NAME.tmp<pid>`` file
    that the next save removes). Remote paths (``s3://``...) keep Lightning's behaviour. Loading
    an unreadable file raises :class:`CheckpointFileError` naming it.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically."""
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for stale in target.parent.glob(f".{target.name}.tmp*"):
            stale.unlink(missing_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            super().save_checkpoint(checkpoint, tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(target.parent)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load ``path`` with :func:`load_checkpoint` (``weights_only=True``, whatever is asked);
        an unreadable or refused file raises :class:`CheckpointFileError` naming it."""
        where = map_location or _on_storage
        if _is_local(path) and Path(path).is_file():  # a missing file: Lightning's own error
            return load_checkpoint(path, where)
        try:
            return super().load_checkpoint(path, where, weights_only=True)
        except (FileNotFoundError, CheckpointFileError):
            raise
        except Exception as err:  # torch reports a damaged file in many ways
            raise CheckpointFileError.from_error(path, err) from err


class RunCheckpoint(ModelCheckpoint):
    """The best-checkpoint callback; its tracking is restored when its run is resumed.

    Lightning restores ``best_k_models`` only when the saved folder string equals the current
    one; a resumed run may reach its folder by another path (another working directory), so the
    saved paths are moved onto the current folder when resuming (:attr:`resuming`) or when both
    name the same folder. Its state key stays ``ModelCheckpoint``'s.
    """

    #: set by the CLI when this fit resumes its own run
    resuming: bool = False

    @property
    def state_key(self) -> str:
        """``ModelCheckpoint``'s key, so checkpoints of plain ``ModelCheckpoint`` runs resume."""
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the tracking, moving the saved paths onto this run's folder."""
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new and (self.resuming or same_dir(old, new)):
            state_dict = _rebase(state_dict, str(old), str(new))
        super().load_state_dict(state_dict)


class LatestCheckpoint(RunCheckpoint):
    """Keeps ``checkpoints/last.ckpt`` = the latest state, for ``fit --resume``.

    Written at every epoch end, where Lightning's ``ModelCheckpoint`` saves (after the
    best-checkpoint callback, so the file carries its updated tracking), and every
    ``every_n_train_steps`` optimizer steps when that is above 0. Its folder follows the
    best-checkpoint callback's ``dirpath``.

    Args:
        every_n_train_steps: also save the latest state every N training steps (0: only at
            epoch ends).
    """

    def __init__(self, every_n_train_steps: NonNegativeInt = 0) -> None:
        super().__init__(
            filename=LATEST_NAME.removesuffix(self.FILE_EXTENSION),
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            enable_version_counter=False,
        )
        self.every_n_steps = int(every_n_train_steps)
        #: the file saved when a SIGTERM stopped training (``None``: nothing saved then)
        self.saved_on_sigterm: str | None = None

    @property
    def state_key(self) -> str:
        """A key of its own (never mistaken for the best-checkpoint callback's)."""
        return self._generate_state_key(role="latest")

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Save every ``every_n_steps`` steps; an epoch's last batch is left to the epoch end."""
        n = self.every_n_steps
        if not n or trainer.global_step % n or self._should_skip_saving_checkpoint(trainer):
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return
        self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """After a SIGTERM stopped training between two batches, save the latest state.

        Lightning raises its ``SIGTERMException`` once the running batch has finished (or at an
        epoch end), so the state is consistent; a SIGTERM during validation stops it in the
        middle, where nothing is saved (``last.ckpt`` stays the previous epoch end's). Any other
        exception saves nothing: its state may be broken.
        """
        from lightning.pytorch.trainer.states import RunningStage
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, SIGTERMException) or not trainer.received_sigterm:
            return
        if trainer.state.stage != RunningStage.TRAINING:
            return
        if self._should_skip_saving_checkpoint(trainer):  # saved at this step already
            self.saved_on_sigterm = self.last_model_path or None
            return
        self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))
        self.saved_on_sigterm = self.last_model_path or None


def sigterm_message(trainer: L.Trainer, run_dir: str | os.PathLike | None) -> str:
    """What ``fit`` (or another verb) prints when a SIGTERM stopped it: what was saved, how to
    resume."""
    verb = trainer.state.fn.value if trainer.state.fn is not None else "the run"
    latest = next((c for c in trainer.callbacks if isinstance(c, LatestCheckpoint)), None)
    step = f"epoch {trainer.current_epoch}, global step {trainer.global_step}"
    if verb != "fit":
        return f"{verb} stopped by SIGTERM ({step}); nothing of it was saved: run it again."
    folder = checkpoint_dir(trainer, run_dir or trainer.default_root_dir)
    last = folder / LATEST_NAME
    if latest is not None and latest.saved_on_sigterm:
        saved = f"the latest state was saved to {latest.saved_on_sigterm} ({step})"
    elif last.is_file():
        saved = f"nothing was saved at the signal (it came during validation); {last} holds the "
        saved += "state of the last epoch end"
    else:
        return (
            f"fit stopped by SIGTERM ({step}) before its first checkpoint: nothing to resume "
            "from; start the run again."
        )
    resume = f"python -m occam_l2r fit --resume {run_dir or 'RUN'}"
    return f"fit stopped by SIGTERM: {saved}. Continue it with `{resume}`."


def checkpoint_dir(trainer: L.Trainer, run_dir: str | os.PathLike) -> Path:
    """The folder of the trainer's best-checkpoint callback, else ``<run_dir>/checkpoints``."""
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None)
    return Path(dirpath) if dirpath else Path(run_dir) / "checkpoints"


def _on_storage(storage: Any, location: str) -> Any:
    """``map_location`` that keeps every tensor where it was saved (TorchCheckpointIO's default)."""
    return storage


def _is_local(path: Any) -> bool:
    return isinstance(get_filesystem(str(path)), LocalFileSystem)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def same_dir(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same folder (symbolic links resolved)."""
    return os.path.realpath(a) == os.path.realpath(b)


def _rebase(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """``state`` with every checkpoint path inside ``old`` moved into ``new``."""

    def move(path: Any) -> Any:
        if isinstance(path, str) and path and same_dir(os.path.dirname(path) or ".", old):
            return os.path.join(new, os.path.basename(path))
        return path

    out = dict(state, dirpath=new)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        if key in out:
            out[key] = move(out[key])
    if isinstance(out.get("best_k_models"), dict):
        out["best_k_models"] = {move(k): v for k, v in out["best_k_models"].items()}
    return out
