"""Metadata prior fusion (L2R² §5.1, Table 4; Berg et al. / Picek et al. metadata priors).

A tabular metadata value ``m`` (FungiTastic habitat, substrate, month, ...) acts as a second,
image-free "background" model: class priors ``p(k|m)`` (over the train samples with a value)
and ``p(k)`` (over all train samples) are counted with additive smoothing, and an image model's
prediction is reweighted

    p(k | x, m) ∝ p(k | x) · p(k | m) / p(k).

Metadata per sample is given either as a mapping ``id -> value`` or as a column aligned with
the sample ids. A value never seen in train (or missing) leaves the prediction unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from occam_l2r.fusion.methods import FusionOutput, softmax

_MISSING = ("", "nan", "None", "NaN")


def metadata_from_records(records: Iterable[Any], field: str) -> dict[str, Any]:
    """``image_id -> record.metadata[field]`` for dataset records that carry the field.

    Raises:
        ValueError: no record has metadata ``field`` (the dataset has no such metadata).
    """
    out = {r.image_id: r.metadata[field] for r in records if field in (r.metadata or {})}
    if not out:
        raise ValueError(
            f"no record carries metadata {field!r}: this dataset has no such metadata. Metadata "
            "prior fusion needs per-sample tabular metadata (e.g. FungiTastic habitat, substrate, "
            "month); pick a dataset/field that has it."
        )
    return out


def align_metadata(
    ids: Sequence[str] | np.ndarray,
    metadata: Mapping[str, Any] | Sequence[Any] | np.ndarray | None,
    name: str = "metadata",
) -> np.ndarray:
    """Metadata values as a string array aligned with ``ids`` (missing values become ``""``).

    Args:
        ids: sample ids of the logits.
        metadata: mapping ``id -> value`` or a column of ``len(ids)`` values.
        name: the field's name, for error messages.

    Raises:
        ValueError: no metadata at all, a column of the wrong length, or ids absent from the
            mapping (the message counts them and shows the first few).
    """
    ids = np.asarray(ids).astype(str)
    if metadata is None or len(metadata) == 0:
        raise ValueError(
            f"no {name!r} metadata given: this dataset/logits file has no metadata. Metadata prior "
            "fusion needs a per-sample value (mapping id -> value or a column aligned with ids)."
        )
    if isinstance(metadata, Mapping):
        missing = [i for i in ids if i not in metadata]
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(ids)} sample ids have no {name!r} metadata (first: "
                f"{missing[:3]}); the metadata table must cover every sample of the logits file"
            )
        values = [metadata[i] for i in ids]
    else:
        values = list(metadata)
        if len(values) != len(ids):
            raise ValueError(
                f"{name!r} metadata column has {len(values)} values for {len(ids)} samples; "
                "give one value per sample, in the order of the logits file's ids"
            )
    out = np.array(["" if v is None else str(v) for v in values], dtype=object)
    out[np.isin(out, _MISSING)] = ""
    return out.astype(str)


class MetadataPrior:
    """Class priors ``p(k|m)`` and ``p(k)`` counted on train, with additive smoothing.

    Args:
        smoothing: pseudo-count added to every (class, value) and class count.
    """

    def __init__(self, smoothing: float = 1.0) -> None:
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}")
        self.smoothing = smoothing
        self.values: dict[str, int] = {}
        self.log_ratio: np.ndarray | None = None  # (V, C): log p(k|m) - log p(k)

    def fit(self, labels: np.ndarray, values: np.ndarray, num_classes: int) -> MetadataPrior:
        """Count ``p(k|m)`` on the labelled train samples with a metadata value, and ``p(k)``
        on all labelled train samples (a sample without metadata still counts for its class).

        With ``smoothing=0`` a class absent from train has ``p(k|m) = p(k) = 0``; its ratio,
        ``0/0``, is set to 1 (the prior knows nothing of it and leaves its probability as it is).
        """
        labels = np.asarray(labels, np.int64)
        values = np.asarray(values).astype(str)
        labelled = labels >= 0
        keep = labelled & (values != "")
        if not keep.any():
            raise ValueError("no labelled train sample has a metadata value; cannot fit priors")
        uniq, inv = np.unique(values[keep], return_inverse=True)
        self.values = {v: i for i, v in enumerate(uniq)}
        counts = np.zeros((len(uniq), num_classes))
        np.add.at(counts, (inv, labels[keep]), 1.0)
        s = self.smoothing
        p_km = (counts + s) / (counts.sum(1, keepdims=True) + s * num_classes)
        n_k = np.bincount(labels[labelled], minlength=num_classes).astype(np.float64)
        p_k = (n_k + s) / (n_k.sum() + s * num_classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log(p_km) - np.log(p_k)[None, :]
        ratio[:, p_k == 0] = 0.0  # a class never seen in train: ratio 0/0 -> 1
        self.log_ratio = ratio
        return self

    def apply(self, probs: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Reweight ``probs`` ``(N, C)`` by ``p(k|m)/p(k)`` and renormalise each row."""
        if self.log_ratio is None:
            raise RuntimeError("MetadataPrior.apply() before fit()")
        values = np.asarray(values).astype(str)
        idx = np.array([self.values.get(v, -1) for v in values], dtype=np.int64)
        log_p = np.log(np.clip(probs, 1e-300, None))
        known = idx >= 0
        log_p[known] += self.log_ratio[idx[known]]
        return softmax(log_p)


def metadata_fusion(
    logits: np.ndarray, values: np.ndarray, prior: MetadataPrior, temperature: float = 1.0
) -> FusionOutput:
    """Prediction of one image model reweighted by a fitted metadata prior."""
    probs = prior.apply(softmax(logits, temperature), values)
    pred = probs.argmax(1)
    return FusionOutput(
        pred=pred.astype(np.int64),
        conf=probs[np.arange(len(pred)), pred],
        chosen=np.full(len(pred), -1, np.int8),
        probs=probs,
    )
