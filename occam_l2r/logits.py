"""Logits files: one per (model run, view, split), written by ``predict``, read by fusion code.

A logits file is a ``.npz`` archive (written atomically) with:

- ``ids``: sample ids (image path relative to the dataset root), shape ``(N,)``, str
- ``labels``: int64 class indices ``(N,)`` (-1 when unknown)
- ``groups``: group names ``(N,)``, str
- ``logits``: float32 ``(N, C)``, or float16 in format 3 (half the disk and memory: an
  ImageNet train split is 2.6 GB instead of 5.1 GB per model)
- ``candidates``: int64 ``(N,)``, the prompted candidate class for top-k views, -1 otherwise
- ``fallback``: bool ``(N,)``, the sample's view fell back to the FULL image (format 2; files of
  format 1 read as all ``False``)
- ``meta``: a JSON string with ``format_version``, ``split``, ``view``, ``class_names``,
  ``run`` (free-form name) and ``config`` (the run's resolved config).

``predict`` writes these files through part files (:class:`LogitsPart`, one per rank and chunk of
rows) that :func:`merge_parts` streams into one file in the dataset's order, so neither side
holds a whole split in memory; :func:`write_streamed` is that streaming writer for any producer
of row chunks (the synthetic ImageNet-size logits of the fusion benchmark).

Formats: 1 (no ``fallback``), 2 (float32 logits), 3 (logits float16 or float32; the dtype is the
``.npy`` member's own). A float32 file is still written as format 2 (same members and values as before), so
stored files and older readers are unaffected; only a float16 file is format 3, which an older
reader refuses with its one "re-export" message. A file of a newer format is refused the same way.
Every file is written by :func:`write_streamed` (:meth:`LogitsFile.save` too), which pads each
member's ``.npy`` header so its data starts at a multiple of :data:`DATA_ALIGN` bytes in the
file; files from earlier versions (``np.savez``) read the same, only their mapped matrices are
unaligned and slower to gather from.

Reading: every member is stored uncompressed (``ZIP_STORED``), so :meth:`LogitsFile.load` with ``mmap=True`` maps the ``logits`` member
read-only from the file (:func:`memmap_member`) instead of reading it: an ImageNet train split
then costs no memory until rows are touched, and the kernel can drop touched pages again. A
compressed member (a file someone re-zipped) is read into memory instead. The small per-row
arrays (ids, labels, ...) are always read. :func:`row_blocks` gives the row ranges that chunked
passes over a (mapped) matrix use.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: the newest format (3: float16 logits allowed); float32 files are still written as format 2.
LOGITS_FORMAT_VERSION = 3
#: the format a float32 file is written in (unchanged since format 2).
FLOAT32_FORMAT_VERSION = 2
#: versions :meth:`LogitsFile.load` reads (format 1 has no ``fallback`` array).
READABLE_VERSIONS = (1, 2, 3)
#: the dtypes a logits matrix may be stored in.
LOGITS_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def format_version(dtype: Any) -> int:
    """The format a file with logits of ``dtype`` is written in (2: float32, 3: float16)."""
    dtype = np.dtype(dtype)
    if dtype not in LOGITS_DTYPES:
        raise ValueError(f"logits are stored as float32 or float16, not {dtype}")
    return FLOAT32_FORMAT_VERSION if dtype == np.float32 else LOGITS_FORMAT_VERSION


def row_blocks(n: int, width: int, block_bytes: int = 64 * 2**20, itemsize: int = 8) -> list[slice]:
    """Row slices of an ``(n, width)`` matrix such that one block of ``itemsize``-byte values
    holds about ``block_bytes`` (at least one row per block): the chunks of a pass that must not
    make an ``n x width`` copy."""
    step = max(1, block_bytes // max(1, width * itemsize))
    return [slice(lo, min(lo + step, n)) for lo in range(0, n, step)]


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
        logits = np.asarray(self.logits)  # a mapped (np.memmap) matrix stays mapped
        self.logits = logits if logits.dtype in LOGITS_DTYPES else logits.astype(np.float32)
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

    def save(self, path: str | Path, dtype: Any = None) -> Path:
        """Write atomically (temporary file + rename).

        Args:
            path: the ``.npz`` file.
            dtype: ``float32`` (format 2) or ``float16`` (format 3); default: the dtype of
                :attr:`logits`.
        """
        dtype = np.dtype(self.logits.dtype if dtype is None else dtype)
        return write_streamed(
            Path(path),
            len(self.ids),
            self.num_classes,
            (_width(self.ids), _width(self.groups)),
            lambda name: [getattr(self, name)],
            self.split,
            self.view,
            self.run,
            self.class_names,
            self.config,
            dtype,
        )

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> LogitsFile:
        """Read a logits file written by :meth:`save`, :func:`merge_parts` or :func:`write_streamed`.

        Args:
            path: the ``.npz`` file.
            mmap: map the logits matrix read-only from the file (a ``np.memmap`` of its stored
                dtype, float32 or float16) instead of reading it; a compressed member is read.

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
                logits = memmap_member(path, "logits") if mmap else None
                return cls(
                    ids=z["ids"],
                    labels=z["labels"],
                    logits=z["logits"] if logits is None else logits,
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


def memmap_member(path: str | Path, name: str) -> np.ndarray | None:
    """The ``name`` array of an ``.npz`` file mapped read-only (``np.memmap``), or ``None`` when
    the member is compressed (it cannot be mapped; read it with ``np.load``).

    The data of a stored member starts after the zip local header (30 bytes, the name, the extra
    field) and the ``.npy`` header, whose version (1.0 from ``np.savez``, 2.0 from the streaming
    writer) :func:`numpy.lib.format.read_magic` tells.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    fmt = np.lib.format
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"bad zip local header of member {name}.npy")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"member {name}.npy holds Python objects")
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape),
                     order="F" if fortran else "C")  # fmt: skip


def release_pages(arr: np.ndarray) -> bool:
    """Drop the pages of a mapped (:func:`memmap_member`) matrix from this process's resident
    set (``madvise(MADV_DONTNEED)`` on its read-only file mapping): the data stays in the file
    and the page cache and is faulted back in when touched again. Returns whether ``arr`` was
    mapped (an in-memory array is left alone)."""
    base = arr
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    handle = getattr(base, "_mmap", None)
    if handle is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    handle.madvise(mmap.MADV_DONTNEED)
    return True


def _meta(
    split: str, view: str, run: str, class_names: list[str], config: dict, dtype: Any = np.float32
) -> dict[str, Any]:
    return {
        "format_version": format_version(dtype),
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
    dtype: Any = np.float32,
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
        dtype: the stored dtype of the logits (float32: format 2; float16: format 3).
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
    bounds = [(int(unique[i]), int(unique[min(i + window, n) - 1])) for i in range(0, n, window)]

    def chunks(name: str) -> Iterator[np.ndarray]:
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
            yield np.concatenate(rows)[first]

    return write_streamed(path, n, c, (int(widths[0]), int(widths[1])), chunks, split, view, run,
                          class_names, config, dtype)  # fmt: skip


#: where each member's array data starts in a file written by :func:`write_streamed`: a multiple
#: of this many bytes from the start of the file, so that a mapped matrix
#: (:func:`memmap_member`) is aligned (numpy gathers from an unaligned mapping ~90x slower).
DATA_ALIGN = 64


def _aligned_npy_header(header: dict[str, Any], start: int) -> bytes:
    """A ``.npy`` version 2.0 header for a member whose bytes start at file offset ``start``,
    padded with spaces (as the format allows) so the array data starts at a multiple of
    :data:`DATA_ALIGN` in the file."""
    text = repr({k: header[k] for k in ("descr", "fortran_order", "shape")})
    prefix = len(np.lib.format.MAGIC_PREFIX) + 2 + 4  # magic, version 2.0, uint32 length
    pad = -(start + prefix + len(text) + 1) % DATA_ALIGN
    body = (text + " " * pad + "\n").encode("latin1")
    return np.lib.format.magic(2, 0) + struct.pack("<I", len(body)) + body


def write_streamed(
    path: Path,
    n: int,
    num_classes: int,
    widths: tuple[int, int],
    chunks: Callable[[str], Iterable[np.ndarray]],
    split: str,
    view: str,
    run: str,
    class_names: list[str],
    config: dict[str, Any],
    dtype: Any = np.float32,
) -> Path:
    """Write a logits file of ``n`` rows member by member, atomically, holding one chunk at a time.

    Args:
        path: the logits file.
        n, num_classes: rows and classes.
        widths: the character widths of the ``ids`` and ``groups`` strings.
        chunks: ``chunks(name)`` yields the rows of the member ``name`` (one of
            :data:`ROW_ARRAYS`) in order, in chunks of any size; called once per member.
        split, view, run, class_names, config: the file's metadata.
        dtype: the stored dtype of the logits, float32 (format 2) or float16 (format 3).

    Raises:
        ValueError: the chunks of a member do not add up to ``n`` rows of the right width.
    """
    dtypes = {
        "ids": np.dtype(f"<U{max(1, widths[0])}"),
        "labels": np.dtype(np.int64),
        "groups": np.dtype(f"<U{max(1, widths[1])}"),
        "logits": np.dtype(dtype),
        "candidates": np.dtype(np.int64),
        "fallback": np.dtype(bool),
    }
    meta = json.dumps(_meta(split, view, run, class_names, config, dtype), default=str)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name in ROW_ARRAYS:
                shape = (n, num_classes) if name == "logits" else (n,)
                header = {"descr": np.lib.format.dtype_to_descr(dtypes[name]), "fortran_order": False,
                          "shape": shape}  # fmt: skip
                rows = 0
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    f.write(_aligned_npy_header(header, zf.fp.tell()))
                    for chunk in chunks(name):
                        chunk = np.asarray(chunk).astype(dtypes[name], copy=False)
                        if chunk.shape[1:] != shape[1:]:
                            raise ValueError(
                                f"{path}: a chunk of {name} has shape {chunk.shape}, rows of "
                                f"shape {shape[1:]} expected"
                            )
                        rows += len(chunk)
                        f.write(np.ascontiguousarray(chunk).tobytes())
                if rows != n:
                    raise ValueError(f"{path}: {rows} rows of {name} written, {n} expected")
            with zf.open("meta.npy", "w") as f:
                np.lib.format.write_array(f, np.array(meta), allow_pickle=False)
    return path
