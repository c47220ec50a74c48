"""Loading and checking the logits that fusion consumes.

Logits files (:class:`occam_l2r.logits.LogitsFile`) are written by ``predict``, one per
(run, view, split), at ``<run_dir>/logits/<split>.npz``. Everything here fails loudly: non-finite
logits name the file, two inputs that disagree on sample ids, labels or class count say how and
what to do. Both errors (:class:`LogitsInputError`, :class:`LogitsNotFoundError`) are
:class:`~occam_l2r.errors.UserError` subclasses, printed as one message by
``python -m occam_l2r``; an unreadable file raises :class:`~occam_l2r.logits.LogitsFileError`.

:class:`LogitsCache` keeps loaded files by (run, split) for ``fuse`` and the report; given the
views the runs are declared under, it checks each file's recorded view
(:func:`check_declared_view`, :class:`LogitsViewError`). It maps each file's logits read-only
(``LogitsFile.load(mmap=True)``) instead of reading them, so twelve ImageNet-size files (5.1 GB of
float32 each for a train split) cost address space, not memory: the pages a pass touches are
file-backed and the kernel drops them under pressure. Passes over the rows go in blocks
(:func:`occam_l2r.logits.row_blocks`): :func:`check_finite` never makes an ``N x C`` mask, and
:func:`align_pair` reorders nothing when both inputs list the samples in the same order (it
copies the second input's rows, in memory, only when the orders differ).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from occam_l2r.errors import UserError
from occam_l2r.logits import LogitsFile, release_pages, row_blocks
from occam_l2r.logits import read_meta as logits_read_meta


class LogitsInputError(UserError, ValueError):
    """The logits given to a fusion cannot be fused: NaN/inf values, or two inputs that
    disagree on sample ids, labels or class count (a :class:`ValueError`)."""


class LogitsNotFoundError(UserError, FileNotFoundError):
    """A run has no logits file for a split (a :class:`FileNotFoundError`)."""


class LogitsViewError(UserError, ValueError):
    """A run is declared under one view (its key under ``runs:``) but its logits files record
    another (a :class:`ValueError`)."""


@dataclass
class LogitsPair:
    """Two aligned inputs of a fusion on one split (row ``i`` is the same sample in both).

    ``fallback`` flags the samples whose view fell back to the FULL image in either input (the
    ``fallback`` arrays of both logits files); all ``False`` when not given.
    """

    ids: np.ndarray
    labels: np.ndarray
    z1: np.ndarray
    z2: np.ndarray
    groups: np.ndarray
    fallback: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        self.fallback = (
            np.zeros(n, bool) if self.fallback is None else np.asarray(self.fallback, bool)
        )

    @property
    def num_classes(self) -> int:
        return int(self.z1.shape[1])

    def __len__(self) -> int:
        return len(self.ids)


def resolve_logits_path(run: str | Path, split: str) -> Path:
    """The logits file of ``split`` for a run given as a run dir, a logits dir or a file.

    Looks for ``<run>/logits/<split>.npz``, then ``<run>/<split>.npz``; a path to an existing
    ``.npz`` file is returned as it is.
    """
    run = Path(run)
    if run.suffix == ".npz":
        return run
    for cand in (run / "logits" / f"{split}.npz", run / f"{split}.npz"):
        if cand.is_file():
            return cand
    raise LogitsNotFoundError(
        f"no logits for split {split!r} in run {run}: looked for {run / 'logits' / f'{split}.npz'} "
        f"and {run / f'{split}.npz'}. Export them with `python -m occam_l2r predict --config "
        f"<run config> --ckpt_path <checkpoint>`, or fix the run dir / split name in the config."
    )


def check_finite(lf: LogitsFile, source: str | Path) -> LogitsFile:
    """Raise if any logit is NaN or infinite, naming the file and the first bad sample."""
    z = lf.logits
    bad = np.zeros(len(z), bool)
    for rows in row_blocks(len(z), z.shape[1] if z.ndim == 2 else 1, itemsize=z.itemsize):
        bad[rows] = ~np.isfinite(z[rows]).all(axis=1)
    release_pages(z)  # a mapped file: the pass leaves none of its pages resident
    if bad.any():
        first = np.flatnonzero(bad)[:3]
        raise LogitsInputError(
            f"{source}: {int(bad.sum())} of {len(bad)} samples have NaN/inf logits (first: "
            f"{[str(lf.ids[i]) for i in first]}). The model diverged or the export is corrupt; "
            "re-run `predict` from a good checkpoint."
        )
    return lf


def load_logits(path: str | Path, mmap: bool = False) -> LogitsFile:
    """Load a logits file (its logits mapped from the file with ``mmap``) and check that all
    logits are finite."""
    return check_finite(LogitsFile.load(path, mmap=mmap), path)


def load_run_split(run: str | Path, split: str, mmap: bool = False) -> LogitsFile:
    """Load (and check) the logits of ``split`` for one run (mapped with ``mmap``)."""
    return load_logits(resolve_logits_path(run, split), mmap=mmap)


def align_pair(
    a: LogitsFile, b: LogitsFile, name_a: str = "input 1", name_b: str = "input 2"
) -> LogitsPair:
    """Align two logits files on their sample ids (``b`` is reordered to ``a``'s order).

    Raises:
        LogitsInputError: different class counts, duplicated ids, ids present in one input only, or
            labels that disagree for the same id.
    """
    if a.num_classes != b.num_classes:
        raise LogitsInputError(
            f"class counts differ: {name_a} has {a.num_classes} classes, {name_b} has "
            f"{b.num_classes}. Fuse models trained on the same dataset and class list."
        )
    for lf, name in ((a, name_a), (b, name_b)):
        uniq, counts = np.unique(lf.ids, return_counts=True)
        if len(uniq) != len(lf.ids):
            raise LogitsInputError(
                f"{name}: {len(lf.ids) - len(uniq)} duplicated sample ids (e.g. "
                f"{list(uniq[counts > 1][:3])}); top-k candidate files go to "
                "occam_l2r.fusion.topk, not to pairwise fusion"
            )
    order: np.ndarray | None = None  # None: b lists the samples in a's order
    if not (len(a.ids) == len(b.ids) and (a.ids == b.ids).all()):
        pos = {s: i for i, s in enumerate(b.ids)}
        only_a = [s for s in a.ids if s not in pos]
        if only_a or len(a.ids) != len(b.ids):
            set_a = set(a.ids.tolist())
            only_b = [s for s in b.ids if s not in set_a]
            raise LogitsInputError(
                f"sample ids differ between {name_a} ({len(a.ids)} samples) and {name_b} "
                f"({len(b.ids)} samples): {len(only_a)} only in {name_a} (first: {only_a[:3]}), "
                f"{len(only_b)} only in {name_b} (first: {only_b[:3]}). Export both runs' logits "
                "from the same dataset split (same dataset root and split files)."
            )
        order = np.array([pos[s] for s in a.ids], dtype=np.int64)
    labels_b = b.labels if order is None else b.labels[order]
    known = (a.labels >= 0) & (labels_b >= 0)
    clash = known & (a.labels != labels_b)
    if clash.any():
        first = np.flatnonzero(clash)[:3]
        raise LogitsInputError(
            f"labels disagree between {name_a} and {name_b} for {int(clash.sum())} samples "
            f"(first: {[str(a.ids[i]) for i in first]}); the two runs used different class "
            "orders or label files"
        )
    labels = np.where(a.labels >= 0, a.labels, labels_b)
    fallback_b = np.asarray(b.fallback, bool)
    fallback = np.asarray(a.fallback, bool) | (fallback_b if order is None else fallback_b[order])
    z2 = b.logits if order is None else np.asarray(b.logits)[order]  # no copy in the same order
    return LogitsPair(
        ids=a.ids, labels=labels, z1=a.logits, z2=z2, groups=a.groups, fallback=fallback,
    )  # fmt: skip


def read_meta(path: str | Path) -> dict:
    """The metadata of a logits file (``split``, ``view``, ``config``, ...) without its arrays.

    Raises:
        LogitsFileError: the file cannot be read as a logits file (the message names it).
    """
    return logits_read_meta(path)


def headline_metric(runs: list[str], split: str) -> str | None:
    """The dataset's headline metric that ``predict`` stored in the runs' logits files.

    Read from ``config.headline_metric`` of each run's ``split`` file; ``None`` when no file
    carries one (files written before the field existed).

    Raises:
        LogitsInputError: two runs name different headline metrics (runs of different datasets).
    """
    found: dict[str, str] = {}
    for run in runs:
        value = read_meta(resolve_logits_path(run, split)).get("config", {}).get("headline_metric")
        if value:
            found[run] = str(value)
    if len(set(found.values())) > 1:
        raise LogitsInputError(
            f"the runs name different headline metrics {found}; fuse runs of one dataset, or "
            "set `select_metric` (and `summary_metric`) in the fuse config"
        )
    return next(iter(found.values()), None)


def check_declared_view(lf: LogitsFile, run: str | Path, declared: Iterable[str]) -> None:
    """Raise unless ``lf`` records one of the ``declared`` views of its run.

    A file that records no view (written without one) passes; a file of candidate-prompted rows
    (top-k, ``candidates >= 0``) records the view its model saw (``FG_C``) and may be declared
    under a name that starts with it (``FG_C_topk``).

    Raises:
        LogitsViewError: the recorded view is none of the declared ones.
    """
    declared = list(declared)
    recorded = lf.view
    if not recorded or recorded in declared:
        return
    prompted = len(lf.candidates) > 0 and bool((np.asarray(lf.candidates) >= 0).any())
    if prompted and any(d.startswith(recorded) for d in declared):
        return
    names = " / ".join(repr(d) for d in declared)
    raise LogitsViewError(
        f"run folder {run} is declared under view {names} in `runs:`, but its logits file for "
        f"split {lf.split!r} records view {recorded!r}; list the run under {recorded!r} (or "
        "re-export it with the intended view)"
    )


class LogitsCache:
    """Loaded (and checked) logits files by (run, split), the least recently used dropped first.

    Args:
        size: how many files are kept (``None``: all, each file is read once).
        views: run -> the views it is declared under (``runs:`` of a sweep); every file loaded
            of such a run must record one of them (:func:`check_declared_view`).
        mmap: map each file's logits read-only instead of reading them (the default: a kept
            file then holds its per-row arrays in memory, its ``N x C`` logits in the page cache).
        resident: when a file is loaded, the mapped pages of the files used less recently than
            the last ``resident`` are dropped from the process (:func:`release_pages`; they are
            read back when touched): a fused pair's val, test and train files stay, so the
            peak holds about one pair's train logits, not every file the sweep touched.
    """

    def __init__(
        self,
        size: int | None = 12,
        views: dict[str, list[str]] | None = None,
        mmap: bool = True,
        resident: int = 6,
    ) -> None:
        self.size = size
        self.views = views or {}
        self.mmap = mmap
        self.resident = resident
        self._files: OrderedDict[tuple[str, str], LogitsFile] = OrderedDict()

    def get(self, run: str | Path, split: str) -> LogitsFile:
        """The logits file of ``run`` and ``split`` (loaded on first use)."""
        key = (str(run), split)
        if key not in self._files:
            lf = load_run_split(run, split, mmap=self.mmap)
            if key[0] in self.views:
                check_declared_view(lf, run, self.views[key[0]])
            self._files[key] = lf
            while self.size is not None and len(self._files) > self.size:
                self._files.popitem(last=False)
            for old in list(self._files.values())[: max(0, len(self._files) - self.resident)]:
                release_pages(old.logits)
        self._files.move_to_end(key)
        return self._files[key]

    def clear(self) -> None:
        self._files.clear()
