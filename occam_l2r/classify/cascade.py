"""The cascade of ⊕R (L2R² §3.3 and its future work): the second model only where it can count.

Threshold fusion takes input 1's prediction whenever its calibrated confidence ``p̂1`` is above
the fitted threshold ``t`` (:func:`occam_l2r.fusion.methods.threshold`), so input 2 is needed
only for the images with ``p̂1 <= t``. :func:`cascade_threshold` computes input 2's logits for
those images alone and gives the same fused output as the threshold fusion of both inputs on all
images (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from occam_l2r.fusion import methods
from occam_l2r.fusion.methods import FusionOutput


def cascade_threshold(
    z1: np.ndarray,
    second: Callable[[np.ndarray], np.ndarray],
    t: float,
    t1: float | np.ndarray = 1.0,
    t2: float | np.ndarray = 1.0,
) -> tuple[FusionOutput, np.ndarray]:
    """⊕R with input 2 computed only where input 1 is not confident enough.

    Args:
        z1: input 1's logits ``(N, C)`` (the FG model).
        second: row indices -> input 2's logits of those rows (runs the FULL / BG model).
        t: the fitted threshold of ⊕R.
        t1, t2: the inputs' temperatures (1 when ``fuse`` fitted none).

    Returns:
        The fused output (as :func:`occam_l2r.fusion.methods.threshold` on all rows) and the
        bool mask of the rows that needed input 2.
    """
    y1, p1 = methods.predict_confidence(z1, t1)
    need = p1 <= t
    pred, conf, chosen = y1.copy(), p1.copy(), np.zeros(len(y1), np.int8)
    rows = np.flatnonzero(need)
    if len(rows):
        z2 = np.asarray(second(rows))
        sub = methods.threshold(z1[rows], z2, t, t1, t2)
        pred[rows], conf[rows], chosen[rows] = sub.pred, sub.conf, sub.chosen
    return FusionOutput(pred=pred, conf=conf, chosen=chosen), need
