"""Logits files: one per (model run, view, split), written by ``predict``, read by fusion code.

A logits file is a ``.npz`` archive (written atomically) with:

- ``ids``: sample ids (image path relative to the dataset root), shape ``(N,)``, str
- ``labels``: int64 class indices ``(N,)`` (-1 when unknown)
- ``groups``: group names ``(N,)``, str
- ``logits``: float32 ``(N, C)``
- ``candidates``: int64 ``(N,)``, the prompted candidate class for top-k views, -1 otherwise
- ``fallback``: bool ``(N,)``, the sample's view fell back to the FULL image (format 2; files of
  format 1 read as all ``False``)
- ``meta``: a JSON string with ``format_version``, ``split``, ``view``, ``class_names``,
  ``run`` (free-form name) and ``config`` (the run's resolved config).

``predict`` writes these files through part files (:class:`LogitsPart`, one per rank and chunk of
rows) that :func:`merge_parts` streams into one file in the dataset's order, so neither side
holds a whole split in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOGITS_FORMAT_VERSION = 2
#: versions :meth:`LogitsFile.load` reads (format 1 has no ``fallback`` array).
READABLE_VERSIONS = (1, 2)


@dataclass
class LogitsFile:
    """In-memory content of a logits file."""

    ids: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    groups: np.ndarray | None = None
    candidates: np.ndarray | None = None
    fallback: np.ndarray | None = None
    split: str = ""
    view: str = ""
    run: str = ""
    class_names: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids).astype(str)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.logits = np.asarray(self.logits, dtype=np.float32)
        n = len(self.ids)
        if self.logits.ndim != 2 or self.logits.shape[0] != n or len(self.labels) != n:
            raise ValueError(
                f"logits file {self.run}/{self.view}/{self.split}: {n} ids, {len(self.labels)} labels "
                f"and logits of shape {self.logits.shape}; they must agree (N ids, N labels, N x C)"
            )
        self.groups = (
            np.full(n, "", dtype=object).astype(str)
            if self.groups is None
            else np.asarray(self.groups).astype(str)
        )
        self.candidates = (
            np.full(n, -1, np.int64)
            if self.candidates is None
            else np.asarray(self.candidates, np.int64)
        )
        self.fallback = (
            np.zeros(n, bool) if self.fallback is None else np.asarray(self.fallback, bool)
        )

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = _meta(self.split, self.view, self.run, self.class_names, self.config)
        with _replacing(path) as tmp:
            np.savez(
                tmp,
                ids=self.ids,
                labels=self.labels,
                groups=self.groups,
                logits=self.logits,
                candidates=self.candidates,
                fallback=self.fallback,
                meta=np.array(json.dumps(meta, default=str)),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> LogitsFile:
        """Read a logits file written by :meth:`save` or :func:`merge_parts`.

        Raises:
            LogitsFileNotFoundError: ``path`` is not a file.
            LogitsFileError: the file is empty, truncated or not a ``.npz`` archive, lacks
                arrays or metadata of the format, has a format version this code does not
                read, or arrays that disagree; the message names ``path``.
        """
        path = Path(path)
        with _open_npz(path) as z:
            missing = [k for k in ("meta", *ROW_ARRAYS[:5]) if k not in z.files]
            if missing:
                raise LogitsFileError(
                    f"{path} is not a logits file: arrays {missing} are missing (it has "
                    f"{sorted(z.files)[:8]}); {_FIX}"
                )
            try:
                meta = json.loads(str(z["meta"]))
                version = meta.get("format_version")
                if version not in READABLE_VERSIONS:
                    raise LogitsFileError(
                        f"{path}: logits format {version}, this version of occam_l2r reads "
                        f"{READABLE_VERSIONS}; re-export it with `predict`"
                    )
                return cls(
                    ids=z["ids"],
                    labels=z["labels"],
                    logits=z["logits"],
                    groups=z["groups"],
                    candidates=z["candidates"],
                    fallback=z["fallback"] if "fallback" in z.files else None,
                    split=meta["split"],
                    view=meta["view"],
                    run=meta["run"],
                    class_names=meta["class_names"],
                    config=meta["config"],
                )
            except LogitsFileError:
                raise
            except (OSError, EOFError, ValueError, KeyError, AttributeError, TypeError,
                    zipfile.BadZipFile) as err:  # fmt: skip
                raise _unreadable(path, err) from err


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a logits file (``split``, ``view``, ``config``, ...) without its arrays.

    Raises:
        LogitsFileNotFoundError / LogitsFileError: as :meth:`LogitsFile.load`, naming ``path``.
    """
    path = Path(path)
    with _open_npz(path) as z:
        if "meta" not in z.files:
            raise LogitsFileError(
                f"{path} is not a logits file: arrays ['meta'] are missing (it has "
                f"{sorted(z.files)[:8]}); {_FIX}"
            )
        try:
            return json.loads(str(z["meta"]))
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise _unreadable(path, err) from err


class LogitsFileError(ValueError):
    """A logits file cannot be read: missing, corrupt, zero-byte, foreign or of another format.

    The message names the file and how to rewrite it. A :class:`ValueError`; the command line
    prints it as one message (``occam_l2r.cli.KNOWN_ERRORS``; this layer imports nothing of the
    toolkit, so it does not derive from ``occam_l2r.errors.UserError``).
    """


class LogitsFileNotFoundError(LogitsFileError, FileNotFoundError):
    """The logits file does not exist (a :class:`LogitsFileError` and a ``FileNotFoundError``)."""


_FIX = "re-export it with `python -m occam_l2r predict` (it writes <run>/logits/<split>.npz)"


def _open_npz(path: Path) -> Any:
    """``np.load`` of a logits file, with the toolkit's errors for a missing, unreadable or
    single-array file."""
    if not path.is_file():
        raise LogitsFileNotFoundError(
            f"logits file not found: {path}. Write it with `python -m occam_l2r predict`."
        )
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise _unreadable(path, err) from err
    if not hasattr(z, "files"):  # a single .npy array
        raise LogitsFileError(f"{path} holds a single array, not a logits .npz; {_FIX}")
    return z


def _unreadable(path: Path, err: BaseException) -> LogitsFileError:
    """The error for a logits file that numpy or its metadata cannot read."""
    size = path.stat().st_size
    what = "empty, 0 bytes" if size == 0 else f"{size} bytes"
    return LogitsFileError(
        f"cannot read logits file {path} ({what}): {type(err).__name__}: "
        f"{' '.join(str(err).split())[:200]}. The file is truncated, corrupt or not a logits "
        f"file of occam_l2r; {_FIX}"
    )


def _meta(split: str, view: str, run: str, class_names: list[str], config: dict) -> dict[str, Any]:
    return {
        "format_version": LOGITS_FORMAT_VERSION,
        "split": split,
        "view": view,
        "run": run,
        "class_names": list(class_names),
        "config": config,
    }


#: the per-row arrays of a logits file, in the order they are written.
ROW_ARRAYS = ("ids", "labels", "groups", "logits", "candidates", "fallback")


@dataclass
class LogitsPart:
    """A chunk of predicted rows of one split on one rank; ``index`` is the dataset position."""

    index: np.ndarray
    ids: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    candidates: np.ndarray
    fallback: np.ndarray
    logits: np.ndarray

    def save(self, path: Path) -> Path:
        """Write atomically; ``widths`` records the string widths for the merge's headers."""
        path.parent.mkdir(parents=True, exist_ok=True)
        widths = np.array([_width(self.ids), _width(self.groups)], np.int64)
        arrays = {name: getattr(self, name) for name in ("index", *ROW_ARRAYS)}
        with _replacing(path) as tmp:
            np.savez(tmp, widths=widths, **arrays)
        return path


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` (``.NAME.tmp-<pid>.npz``) renamed over ``path`` when the
    block succeeds; removed when it fails (a full disk, an interrupt), ``path`` left as it was.
    (The stored formats' writer, without importing :mod:`occam_l2r.store_files`: this module
    imports nothing of the toolkit.)"""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.filename is None:  # a failed write() names no file: name the one being written
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _width(strings: np.ndarray) -> int:
    return max(1, strings.dtype.itemsize // 4) if strings.dtype.kind == "U" else 1


def merge_parts(
    parts: list[Path],
    path: Path,
    split: str,
    view: str,
    run: str,
    class_names: list[str],
    config: dict[str, Any],
    window_bytes: int = 32 * 2**20,
) -> Path:
    """Stream part files into one logits file, rows in the order of their dataset position.

    A position found twice (a distributed sampler's padding) is written once. Memory holds one
    window of positions plus the parts overlapping it, whatever the split's size, when each
    part covers a narrow range of positions (sequential samplers; any order stays correct).

    Args:
        parts: the part files of one split (any number of ranks).
        path: the logits file to write (atomically).
        split, view, run, class_names, config: the file's metadata.
        window_bytes: size of the logits merged at a time (sets the window of positions).
    """
    spans, seen = [], [np.zeros(0, np.int64)]
    widths = np.ones(2, np.int64)
    num_classes = None
    for p in parts:
        with np.load(p, allow_pickle=False) as z:
            index = z["index"]
            widths = np.maximum(widths, z["widths"])
            if num_classes is None:
                num_classes = int(z["logits"].shape[1])
        if len(index):
            spans.append((p, int(index.min()), int(index.max())))
            seen.append(index)
    unique = np.unique(np.concatenate(seen))
    n, c = len(unique), int(num_classes or len(class_names))
    window = max(1, window_bytes // (4 * max(c, 1)))
    dtypes = {
        "ids": np.dtype(f"<U{widths[0]}"),
        "labels": np.dtype(np.int64),
        "groups": np.dtype(f"<U{widths[1]}"),
        "logits": np.dtype(np.float32),
        "candidates": np.dtype(np.int64),
        "fallback": np.dtype(bool),
    }
    bounds = [(int(unique[i]), int(unique[min(i + window, n) - 1])) for i in range(0, n, window)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in ROW_ARRAYS:
                shape = (n, c) if name == "logits" else (n,)
                header = {"descr": np.lib.format.dtype_to_descr(dtypes[name]), "fortran_order": False,
                          "shape": shape}  # fmt: skip
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array_header_2_0(f, header)
                    for lo, hi in bounds:
                        index, rows = [], []
                        for p, a, b in spans:
                            if b < lo or a > hi:
                                continue
                            with np.load(p, allow_pickle=False) as z:
                                idx = z["index"]
                                sel = (idx >= lo) & (idx <= hi)
                                index.append(idx[sel])
                                rows.append(z[name][sel])
                        idx = np.concatenate(index)
                        first = np.unique(idx, return_index=True)[1]
                        chunk = np.concatenate(rows)[first].astype(dtypes[name])
                        f.write(np.ascontiguousarray(chunk).tobytes())
            meta = json.dumps(_meta(split, view, run, class_names, config), default=str)
            with zf.open("meta.npy", "w") as f:
                np.lib.format.write_array(f, np.array(meta), allow_pickle=False)
    return path
