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

This module imports nothing of the toolkit, so any layer may import it.
"""

from __future__ import annotations

import errno
import os

#: environment variable that shows full tracebacks (``1``, ``true`` or ``yes``)
DEBUG_ENV = "OCCAM_L2R_DEBUG"
#: command-line flag that shows full tracebacks (removed from argv before parsing)
DEBUG_FLAG = "--debug"
#: exit status of ``python -m occam_l2r`` after a known error or a refused config/option
EXIT_USER_ERROR = 3

_TRACEBACK_MARK = "Original Traceback (most recent call last):"


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
