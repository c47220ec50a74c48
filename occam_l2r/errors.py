"""Errors a user can act on, and how the command line reports them.

:class:`UserError` is the base of the toolkit's *known* errors: a missing dataset folder, a
missing or corrupt logits file, NaN logits, an unsafe metadata pickle... Its message names the
file and the fix. ``python -m occam_l2r`` (:func:`occam_l2r.cli.main` called without ``argv``)
prints such an error as one message and exits with :data:`EXIT_USER_ERROR`; the full traceback
is shown with ``--debug`` anywhere on the command line or with ``OCCAM_L2R_DEBUG=1``.

Every known error derives from a built-in type as well (``FileNotFoundError``, ``ValueError``),
so code that catches those keeps working. Modules of the lowest layers may not import this one
(``logits.py``, ``weights.py``: see docs/extending.md); their errors
(:class:`occam_l2r.logits.LogitsFileError`, :class:`occam_l2r.weights.WeightsError`) are listed
beside :class:`UserError` in :data:`occam_l2r.cli.KNOWN_ERRORS`.

The flags that a message names are spelt as the running verb's command line spells them
(:func:`option_flag`): ``fit``/``test``... choose ``model`` and ``data`` by ``class_path``
(``--data.init_args.on_missing``), ``segment``/``occam`` have fixed classes (``--data.on_missing``).
The toolkit's ``LightningCLI`` classes set the spelling (:func:`use_option_spelling`) from how
they build those sections; elsewhere it is ``fit``'s.

This module imports nothing of the toolkit, so any layer may import it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from contextvars import ContextVar, Token

#: environment variable that shows full tracebacks (``1``, ``true`` or ``yes``)
DEBUG_ENV = "OCCAM_L2R_DEBUG"
#: command-line flag that shows full tracebacks (removed from argv before parsing)
DEBUG_FLAG = "--debug"
#: exit status of ``python -m occam_l2r`` after a known error or a refused config/option
EXIT_USER_ERROR = 3

_TRACEBACK_MARK = "Original Traceback (most recent call last):"

#: the config sections of the running verb that are chosen by ``class_path`` (their options
#: go through ``init_args``); the default is ``fit``'s
_CLASS_PATH_SECTIONS: ContextVar[frozenset[str]] = ContextVar(
    "occam_l2r_class_path_sections", default=frozenset({"model", "data"})
)


def use_option_spelling(class_path_sections: Iterable[str]) -> Token:
    """Say which config sections the running verb chooses by ``class_path`` (``fit``: ``model``
    and ``data``; ``segment``, ``occam``: none); :func:`option_flag` spells them so. Set by the
    toolkit's ``LightningCLI`` classes; ``python -m occam_l2r`` runs each verb in its own context,
    so the setting ends with the verb."""
    return _CLASS_PATH_SECTIONS.set(frozenset(class_path_sections))


def option_flag(section: str, name: str) -> str:
    """The command-line flag of the option ``name`` of the config section ``section``, as the
    running verb spells it: ``option_flag("data", "on_missing")`` is ``--data.init_args.on_missing``
    for ``fit``/``validate``/``test``/``predict`` and ``--data.on_missing`` for ``segment``,
    ``segment-preview`` and ``occam`` (docs/extending.md, the option spelling of each verb).
    ``name`` may be dotted below the section (``dataset.init_args.root``)."""
    nested = "init_args." if section in _CLASS_PATH_SECTIONS.get() else ""
    return f"--{section}.{nested}{name}"


class UserError(Exception):
    """A known error whose message names the file (or setting) at fault and how to fix it."""


class DiskFullError(UserError, OSError):
    """A write failed because the disk (or the quota, or the file-size limit) is full."""


#: the errors of a write that more space fixes: no space left, file too large, quota exceeded
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def disk_full_error(err: BaseException) -> DiskFullError | None:
    """A :class:`DiskFullError` for ``err`` (or an error it was raised from) when it is a write
    that ran out of space, ``None`` otherwise. Every writer of the toolkit writes to a temporary
    file and renames it (:mod:`occam_l2r.store_files`, :mod:`occam_l2r.logits`, checkpoints), so
    the partial file is gone and a rerun resumes where the run stopped."""
    seen: set[int] = set()
    found: list[OSError] = []
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            found.append(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    if found:  # the error that names the file (a buffered file's close fails again, unnamed)
        full = next((e for e in found if e.filename), found[0])
        where = f" writing {full.filename}" if full.filename else ""
        return DiskFullError(
            f"the disk is full{where} ({os.strerror(full.errno)}). Free space (or raise the "
            "quota / file-size limit) or point the output at another disk, then run the command "
            "again (`fit --resume RUN` for a training run): every file is written to a "
            "temporary file first, so nothing written before is damaged"
        )
    return None


def debug_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether ``$OCCAM_L2R_DEBUG`` asks for full tracebacks."""
    env = os.environ if environ is None else environ
    return env.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def pop_debug_flag(argv: list[str]) -> tuple[list[str], bool]:
    """Remove every ``--debug`` from ``argv``.

    Returns:
        The remaining arguments and whether the flag was there.
    """
    rest = [a for a in argv if a != DEBUG_FLAG]
    return rest, len(rest) != len(argv)


def known_cause(err: BaseException, known: tuple[type[BaseException], ...]) -> BaseException | None:
    """``err`` or the first exception it was raised from (``__cause__``/``__context__``) that is
    one of ``known``; libraries such as jsonargparse re-raise errors of a class's ``__init__``
    as a ``ValueError`` chained to the original."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, known):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def user_message(err: BaseException) -> str:
    """The one-message form of a known error.

    An error re-raised from a DataLoader worker carries the worker's whole traceback in its
    message; only its last line (the original message) is kept.
    """
    text = str(err)
    if _TRACEBACK_MARK in text:
        head = text.split("\n", 1)[0].rstrip(".")
        last = [line for line in text.splitlines() if line.strip()][-1]
        name, sep, msg = last.partition(": ")
        text = f"{msg if sep and ' ' not in name else last} ({head[0].lower()}{head[1:]})"
    return text or type(err).__name__


def format_user_error(err: BaseException, verb: str | None = None, rank: int = 0) -> str:
    """The lines printed for a known error: the message, then how to see the traceback."""
    where = f"occam_l2r {verb}" if verb else "occam_l2r"
    if rank:
        where += f" [rank {rank}]"
    return (
        f"{where}: error: {user_message(err)}\n"
        f"(a {type(err).__name__}; add {DEBUG_FLAG} or set {DEBUG_ENV}=1 for the traceback)"
    )


def process_rank(environ: dict[str, str] | None = None) -> int:
    """Global rank of this process in a distributed run (``$RANK``/``$LOCAL_RANK``), else 0."""
    env = os.environ if environ is None else environ
    for key in ("RANK", "LOCAL_RANK"):
        value = env.get(key, "")
        if value.isdigit():
            return int(value)
    return 0
