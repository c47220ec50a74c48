"""Per-sample predictions behind the report's figures, taken from what ``fuse`` computed.

``fuse`` keeps per split only the metrics of a fused row and its fitted parameters (the
temperatures, ``t``, ``α``, the weighted-logits weights in ``results.jsonl``), and per-sample
reports for the methods listed in ``sample_reports``. :func:`fused_split` gives a fused row's
predictions on a split from its per-sample report when there is one, and otherwise rebuilds the
fitted method from its parameters (:meth:`occam_l2r.fusion.fusers.FusionMethod.from_params`)
and applies it to the aligned logits (:func:`occam_l2r.fusion.inputs.align_pair`, as ``fuse`` aligns them), with the FULL
fallback (:func:`occam_l2r.fusion.fallback.apply_fallback`). No parameter is refitted. The
accuracy of the result is compared with the one ``fuse`` recorded (:attr:`FusedSplit.matches`).
A method whose parameters do not suffice (:meth:`~occam_l2r.fusion.fusers.FusionMethod.restorable`
is false: ``concat_fc`` saves no weights) is reproduced only from a per-sample report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam_l2r.fusion import methods
from occam_l2r.fusion.fallback import apply_fallback
from occam_l2r.fusion.fusers import REGISTRY
from occam_l2r.fusion.inputs import LogitsCache, align_pair
from occam_l2r.logits import LogitsFile


@dataclass
class FusedSplit:
    """A fused row's predictions on one split.

    Attributes:
        ids, labels: the samples, in the order of input 1's logits file.
        pred: the fused prediction per sample.
        source: ``sample report`` or ``fitted parameters``.
        matches: whether the accuracy of ``pred`` equals the one in ``results.jsonl`` (``None``
            when the record holds none).
    """

    ids: np.ndarray
    labels: np.ndarray
    pred: np.ndarray
    source: str
    matches: bool | None


def reproducible(record: dict[str, Any], folder: str | Path) -> bool:
    """Whether :func:`fused_split` can give the predictions of a fused cell."""
    method = REGISTRY.get(record["method"])
    if method is not None and method.restorable(record.get("params") or {}):
        return True
    return _samples_dir(folder, record).is_dir()


def _samples_dir(folder: str | Path, record: dict[str, Any]) -> Path:
    return Path(folder) / "samples" / record["name"] / f"seed{record['seed']}"


def fused_split(
    cache: LogitsCache,
    folder: str | Path,
    record: dict[str, Any],
    split: str,
    fallback_run: str | None,
) -> FusedSplit | None:
    """The predictions of a fused cell (a ``results.jsonl`` record) on ``split``.

    Args:
        cache: loaded logits files.
        folder: the ``fuse`` output folder (for ``samples/``).
        record: a ``pair`` or ``ensemble`` record.
        split: the split.
        fallback_run: the FULL run of the same seed whose prediction flagged samples take
            (``None``: the fused prediction is kept).

    Returns:
        The predictions, or ``None`` when the cell cannot be reproduced.
    """
    run1, run2 = record["runs"][:2]
    a, b = cache.get(run1, split), cache.get(run2, split)
    pair = align_pair(a, b, f"{record['name']} input 1 {run1}", f"input 2 {run2}")
    csv = _samples_dir(folder, record) / f"{record['method']}_{split}.csv"
    pred, source = None, "sample report"
    if csv.is_file():
        rows = pd.read_csv(csv, dtype={"id": str}, keep_default_na=False)
        if len(rows) == len(pair) and (rows["id"].to_numpy(str) == pair.ids).all():
            pred = rows["fused_pred"].to_numpy(np.int64)
    if pred is None:
        source = "fitted parameters"
        method, params = REGISTRY.get(record["method"]), record.get("params") or {}
        if method is None or not method.restorable(params):
            return None
        out = method.from_params(params).apply(pair)
        if fallback_run is not None and pair.fallback.any():
            full = align_pair(a, cache.get(fallback_run, split), "input 1", "FULL").z2
            out = apply_fallback(out, pair.fallback, full)
        pred = out.pred
    recorded = (record.get("metrics") or {}).get(split, {}).get("acc")
    matches = None
    if recorded is not None:
        matches = bool(np.isclose(methods.score(pred, pair.labels, "acc"), recorded, atol=1e-9,
                                  equal_nan=True))  # fmt: skip
    return FusedSplit(pair.ids, pair.labels, pred, source, matches)


def aligned_predictions(lf: LogitsFile, ids: np.ndarray) -> np.ndarray:
    """``argmax`` of ``lf``'s logits in the order of ``ids`` (-1 for ids it lacks)."""
    pos = {s: i for i, s in enumerate(lf.ids)}
    pred = lf.logits.argmax(1)
    return np.array([pred[pos[s]] if s in pos else -1 for s in ids], np.int64)
