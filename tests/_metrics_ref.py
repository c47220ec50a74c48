"""An independent numpy reference of the classifier's logged metrics, from ``predict``'s logits.

``reference_metrics(logits_file, split)`` recomputes, from a logits file's logits, labels,
groups and fallback flags alone, what :class:`occam_l2r.tasks.base.BaseTask` logs for a split:
``acc``, ``macro_acc`` (over the classes present), ``group_acc/<group>`` for every group present,
``worst_group_acc`` (``acc`` for a dataset without groups), ``fallback_rate`` and ``num_samples``. Unlabelled rows (label -1) are
counted in ``num_samples`` and ``fallback_rate``, never scored. ``assert_logged_match`` compares
them with the logged values: keys and values (``abs=1e-6``: the logged values are float32; one
sample more or less right moves any of them by at least ``1 / N``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from occam_l2r.logits import LogitsFile


def reference_metrics(lf: LogitsFile, split: str) -> dict[str, float]:
    """The metrics of ``split`` recomputed with numpy from a logits file."""
    scored = lf.labels >= 0
    pred = lf.logits.argmax(1)[scored]
    y, groups = lf.labels[scored], lf.groups[scored]
    hit = pred == y
    out = {
        f"{split}/acc": float(hit.mean()),
        f"{split}/macro_acc": float(np.mean([hit[y == c].mean() for c in np.unique(y)])),
        f"{split}/fallback_rate": float(lf.fallback.mean()),
        f"{split}/num_samples": float(len(lf.labels)),
    }
    per_group = {g: float(hit[groups == g].mean()) for g in np.unique(groups) if g != ""}
    for g, acc in per_group.items():
        out[f"{split}/group_acc/{g}"] = acc
    # a dataset without groups: one group, the whole split
    out[f"{split}/worst_group_acc"] = min(per_group.values(), default=out[f"{split}/acc"])
    return out


def assert_logged_match(logged: dict[str, float], logits_file: str | Path, split: str) -> None:
    """The logged metrics of ``split`` (every key the reference has, and no other
    ``group_acc/<group>``) equal the ones recomputed from ``logits_file``."""
    ref = reference_metrics(LogitsFile.load(logits_file), split)
    logged_groups = {k for k in logged if k.startswith(f"{split}/group_acc/")}
    assert logged_groups == {k for k in ref if k.startswith(f"{split}/group_acc/")}, split
    for key, value in ref.items():
        assert logged[key] == pytest.approx(value, abs=1e-6), (key, logged[key], value)
