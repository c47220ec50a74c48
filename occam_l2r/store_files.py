"""The files of a segmentation store folder: names, atomic writes, locks and failure lists.

The helpers under :mod:`occam_l2r.store` (same layer: stored formats; imports nothing of the
toolkit). Several processes may write one store at once, so:

- every file is written to a temporary name and renamed (:func:`atomic_write_text`,
  :func:`atomic_write_table`): a reader never sees half a file;
- ``store.lock`` (``fcntl.flock``, :func:`store_lock`) is held exclusively to merge and to write
  the summary, shared to read; deletions happen only under the exclusive lock;
- a writer names its parts and failure lists after its run id (:func:`new_run_id`:
  ``<pid hex>_<random hex>``) and holds ``run-<run>.lock`` (:class:`RunLock`) while it runs, so
  another process can tell a live run's files from those of a killed one (:func:`run_is_alive`)
  and adopt the latter.

It also names the images a store describes (:func:`file_fingerprint`: size and content hash of
an image file, recorded per row) and moves a damaged data file aside (:func:`move_aside`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

LOCK_NAME = "store.lock"
FAILURES_NAME = "failures.jsonl"
_RUN = r"[0-9a-f]+_[0-9a-f]+"
#: a part file ``part-rank000-<run>-000012.parquet``; ``run`` is absent in the first layout
PART = re.compile(rf"^part-rank\d+-(?:(?P<run>{_RUN})-)?\d+\.parquet$")
#: the failure list of a run in progress, ``failures-rank000-<run>.jsonl``
RUN_FAILURES = re.compile(rf"^failures-rank\d+-(?P<run>{_RUN})\.jsonl$")
#: the lock held by a run in progress
RUN_LOCK = re.compile(rf"^run-(?P<run>{_RUN})\.lock$")
#: the suffix of a data file that could not be read, moved aside by :func:`move_aside`
DAMAGED_SUFFIX = ".damaged"
#: store folders whose lock this process holds, with the nesting depth (the lock is re-entrant)
_HELD: dict[Path, int] = {}


def new_run_id() -> str:
    """A run id unique across processes and hosts: ``<pid hex>_<8 random hex digits>``."""
    return f"{os.getpid():x}_{secrets.token_hex(4)}"


def run_of(name: str) -> tuple[bool, str | None]:
    """Whether a file name belongs to a run (part, failure list, run lock), and the run id
    (``None`` for a part of the first layout)."""
    m = PART.match(name) or RUN_FAILURES.match(name) or RUN_LOCK.match(name)
    return (m is not None, m["run"] if m else None)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def atomic_write_table(table: pa.Table, path: Path) -> None:
    """Write a parquet file through a temporary file and a rename."""
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path`` (for
    formats written by a library: CSV, Parquet, ...). Returns ``path``.

    A write that fails (a full disk, a file-size limit, an interrupt) removes its temporary
    file and leaves ``path`` as it was."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None:  # a failed write() names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def store_lock(path: str | Path, exclusive: bool = True) -> Iterator[None]:
    """Hold ``<path>/store.lock`` (``fcntl.flock``): exclusive to merge or summarize, shared to
    read. Re-entrant within a process (a nested request reuses the held lock, whatever its
    mode). A reader of a store it cannot lock (read-only folder) reads without the lock.

    Args:
        path: the store folder (must exist).
        exclusive: exclusive (writers) or shared (readers) lock.
    """
    key = Path(path).resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        fd: int | None = os.open(key / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        if exclusive:
            raise
        try:
            fd = os.open(key / LOCK_NAME, os.O_RDONLY)
        except OSError:
            fd = None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        _HELD[key] = 1
        yield
    finally:
        _HELD.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing releases the flock


class RunLock:
    """``<store>/run-<run>.lock``, held (``flock``) from a run's first file to its merge.

    Args:
        path: the store folder.
        run: the run id.
    """

    def __init__(self, path: Path, run: str) -> None:
        self.file = path / f"run-{run}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create the file already locked (no-op when held): it is locked under a temporary name,
        then renamed, so no other process ever sees it unlocked while this one lives."""
        if self._fd is None:
            tmp = _tmp_name(self.file)
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.replace(tmp, self.file)
            self._fd = fd

    def release(self) -> None:
        """Delete the file and release the lock (call under the store lock)."""
        if self._fd is not None:
            self.file.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


def run_is_alive(path: Path, run: str) -> bool:
    """Whether ``run`` still holds its lock (call under the store lock); the lock file of a dead
    run is removed."""
    lock = path / f"run-{run}.lock"
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    lock.unlink(missing_ok=True)
    return False


def data_files(path: Path) -> list[Path]:
    """Shards and parts of a store, in name order (parts before shards)."""
    return sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))


def ids_of(path: Path) -> list[str]:
    """The image ids of one parquet file."""
    return pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist()


def stored_ids(path: Path) -> set[str]:
    """Every image id of a store's shards and parts."""
    done: set[str] = set()
    for f in data_files(path):
        done.update(ids_of(f))
    return done


def failure_files(path: Path) -> list[Path]:
    """The merged list first, then the first layout's per-rank lists and those of runs."""
    return sorted(path.glob("failures*.jsonl"), key=lambda p: (p.name != FAILURES_NAME, p.name))


def read_failures(files: Iterable[Path]) -> dict[str, dict[str, str]]:
    """Failure lines by image id, one per id (the last read wins); skips a torn line."""
    out: dict[str, dict[str, str]] = {}
    for f in files:
        with contextlib.suppress(FileNotFoundError):
            for line in f.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                    entry = json.loads(line)
                    out.pop(entry["image_id"], None)  # re-insert: order of the latest report
                    out[entry["image_id"]] = entry
    return out


def file_fingerprint(path: str | Path) -> tuple[int, str]:
    """``(size in bytes, blake2b-128 hex digest of the bytes)`` of an image file: what a store
    records per row, so that it identifies the exact files it was computed on (it survives a
    copy, ``cp -r`` or ``rsync``, unlike a modification time). One read of the file."""
    h = hashlib.blake2b(digest_size=16)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def move_aside(path: Path) -> Path:
    """Rename a damaged file to ``<name>.damaged`` (``.damaged.1``, ... when taken), out of the
    store's data files but never deleted; returns the new path. Call under the store lock."""
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    n = 0
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}.{n}")
    os.replace(path, target)
    return target
