"""The numbers behind the report's figures that ``fuse`` does not tabulate.

- :func:`reliability`: a reliability diagram's bins (mean confidence, accuracy, count per
  confidence bin) and the ECE of one model's logits, at a temperature; the temperature is
  fitted with :func:`occam_l2r.fusion.calibration.fit_temperature` and the ECE is
  :func:`occam_l2r.fusion.calibration.binned_ece` (torchmetrics' L1 binning; L2R² appendix B.3).
- :func:`per_class_accuracy`: accuracy per class (Fig. 12's deltas are differences of these).
- :func:`share_true`: the fraction of flagged samples (the fallback rate of a logits file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occam_l2r.fusion.calibration import binned_ece, fit_temperature
from occam_l2r.fusion.methods import softmax


@dataclass
class Reliability:
    """A reliability diagram of one model on one split.

    Attributes:
        temperature: the temperature the logits were divided by.
        edges: ``n_bins + 1`` bin edges on ``[0, 1]``.
        confidence: mean top-1 confidence per bin (NaN for an empty bin).
        accuracy: top-1 accuracy per bin (NaN for an empty bin).
        count: samples per bin.
        ece: the expected calibration error (torchmetrics' L1 binning).
    """

    temperature: float
    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    ece: float


def labelled(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows with a known label (``>= 0``)."""
    keep = np.asarray(labels) >= 0
    return np.asarray(logits)[keep], np.asarray(labels)[keep]


def temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The NLL-optimal temperature of the labelled rows (1.0 when none is labelled)."""
    z, y = labelled(logits, labels)
    return fit_temperature(z, y) if len(y) else 1.0


def reliability(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, n_bins: int = 15
) -> Reliability:
    """Bins of ``softmax(logits / temperature)`` top-1 confidences and their accuracy.

    A confidence ``c`` falls in bin ``floor(c * n_bins)`` (1.0 in the last bin), the binning of
    the ECE. Unlabelled rows (-1) are left out.
    """
    z, y = labelled(logits, labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if not len(y):
        empty = np.full(n_bins, np.nan)
        return Reliability(temperature, edges, empty, empty.copy(), np.zeros(n_bins, int), np.nan)
    p = softmax(z, temperature)
    pred, conf = p.argmax(1), p.max(1)
    idx = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=(pred == y).astype(float), minlength=n_bins) / count
    ece = binned_ece(conf, pred == y, n_bins)
    return Reliability(temperature, edges, mean_conf, acc, count, float(ece))


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class over its labelled samples (NaN for a class absent from ``labels``)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    keep = (labels >= 0) & (labels < num_classes)
    n = np.bincount(labels[keep], minlength=num_classes)
    hit = np.bincount(labels[keep], weights=(pred[keep] == labels[keep]).astype(float),
                      minlength=num_classes)  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, hit / n, np.nan)


def share_true(flags: np.ndarray) -> float:
    """The fraction of ``True`` entries (NaN for an empty array)."""
    flags = np.asarray(flags, bool)
    return float(flags.mean()) if len(flags) else float("nan")
