"""The FULL fallback at the output (L2R² §3.1) and the metrics of a fused split.

"Problematic detection can be flagged when the detector output is empty or the confidence falls
below a threshold. In such cases, the output of L2R² is the standard FULL image prediction."
The views record that flag per sample (the ``fallback`` array of a logits file); here a fused
prediction is replaced by the FULL model's for the flagged samples (:func:`apply_fallback`).
Which input decided such a sample is :data:`FALLBACK_CHOSEN` in
:attr:`occam_l2r.fusion.methods.FusionOutput.chosen`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from occam_l2r.fusion import methods as M
from occam_l2r.fusion.methods import FusionOutput

#: ``full``: flagged samples get FULL's prediction (the paper); ``none``: the fused one.
FallbackMode = Literal["full", "none"]

#: value of ``FusionOutput.chosen`` for a sample that fell back to the FULL model.
FALLBACK_CHOSEN = 2


def apply_fallback(
    out: FusionOutput, flags: np.ndarray, full_logits: np.ndarray | None
) -> FusionOutput:
    """``out`` with the flagged samples replaced by the FULL model's prediction and confidence.

    Args:
        out: a fused split.
        flags: ``(N,)`` bool, the samples whose decomposition failed.
        full_logits: ``(N, C)`` logits of the FULL model, aligned with ``out``; may be ``None``
            only when no sample is flagged.
    """
    flags = np.asarray(flags, bool)
    if not flags.any():
        return out
    if full_logits is None:
        raise ValueError("samples fell back, but no FULL logits were given to fall back to")
    p = M.softmax(np.asarray(full_logits)[flags])
    pred, conf, chosen = out.pred.copy(), out.conf.copy(), out.chosen.copy()
    pred[flags] = p.argmax(1)
    conf[flags] = p.max(1)
    chosen[flags] = FALLBACK_CHOSEN
    probs = None
    if out.probs is not None:
        probs = out.probs.copy()
        probs[flags] = p
    return FusionOutput(pred=pred, conf=conf, chosen=chosen, probs=probs)


def split_metrics(
    pred: np.ndarray, labels: np.ndarray, fallback: np.ndarray | None = None
) -> dict[str, float]:
    """``acc`` and ``macro_acc`` over the labelled samples (label ``>= 0``), and
    ``fallback_rate``, the fraction of all samples flagged as fallback."""
    labels = np.asarray(labels)
    flags = np.zeros(len(labels), bool) if fallback is None else np.asarray(fallback, bool)
    return {
        "acc": M.score(pred, labels, "acc"),
        "macro_acc": M.score(pred, labels, "macro_acc"),
        "fallback_rate": float(flags.mean()) if len(flags) else float("nan"),
    }
