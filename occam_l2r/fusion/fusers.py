"""Every fusion method of L2R² appendix B.3 behind one interface: fit on train/val, predict.

A :class:`Fuser` is fitted once per (pair of inputs, seed) and then predicts any split. The
parameters it learns are plain numbers or arrays (:meth:`Fuser.params`), so the ablation can
log them and the report can show them. Names follow the paper (:data:`METHOD_LABELS` gives the
row labels of Table 9).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from occam_l2r.fusion import calibration, heads, methods
from occam_l2r.fusion.head_training import head_logits, train_head
from occam_l2r.fusion.inputs import LogitsPair
from occam_l2r.fusion.methods import FusionOutput

#: method name -> row label (as in the paper's Table 9), in table order.
METHOD_LABELS: dict[str, str] = {
    "max_conf": "Max conf",
    "max_conf_ts": "Max scaled conf",
    "max_conf_cts": "Max class-wise scaled conf",
    "threshold": "Threshold conf",
    "ts_average": "TempScaled AvgPred",
    "ts_weighted_average": "TempScaled WeightedAvg",
    "concat_fc": "Concatenate + FC layers",
    "weighted_logits": "WeightedLogitsComb",
    "oracle": "Oracle",
}

#: the methods that train a head of :data:`occam_l2r.fusion.heads.HEADS` on the train split.
LEARNT_METHODS: tuple[str, ...] = ("concat_fc", "weighted_logits")

#: Adam's learning rate of each learnt head when ``HeadConfig.lr`` is not set: the values of
#: ``configs/fusion/<head>.yaml``, so that the ablation and ``fit`` train the same heads.
DEFAULT_LR: dict[str, float] = {"concat_fc": 3e-3, "weighted_logits": 1e-2}


@dataclass
class HeadConfig:
    """Training settings of the learnt heads (concat_fc, weighted_logits) in the ablation.

    The same loop as ``fit --config configs/fusion/<head>.yaml``
    (:mod:`occam_l2r.fusion.head_training`): ``max_epochs`` passes over the train samples in
    batches of ``batch_size`` with Adam, and, with ``select_on_val``, the epoch with the best
    validation metric (``select_metric`` of the sweep) is kept, as ``fit``'s checkpoint does.
    ``lr`` ``None`` takes each head's :data:`DEFAULT_LR`. ``num_threads`` torch threads while
    training (the heads are tiny; 0 keeps torch's setting).
    """

    max_epochs: int = 30
    lr: float | None = None
    batch_size: int = 256
    weight_decay: float = 0.0
    hidden_dim: int = 64
    select_on_val: bool = True
    num_threads: int = 1


@dataclass
class Calibration:
    """Temperatures of both inputs fitted on validation, computed once and shared by methods.

    Attributes:
        val: the validation pair.
        keys: identities of the two inputs (e.g. their run dirs); temperatures are stored in
            ``store`` under these keys, so a run fused in several pairs is calibrated once.
        store: shared memo ``(key, kind) -> temperature(s)``.
    """

    val: LogitsPair
    keys: tuple[str, str] = ("input1", "input2")
    store: dict[tuple[str, str], Any] = field(default_factory=dict)

    def _get(self, i: int, kind: str) -> Any:
        key = (self.keys[i], kind)
        if key not in self.store:
            z = self.val.z1 if i == 0 else self.val.z2
            if kind == "t":
                self.store[key] = calibration.fit_temperature(z, self.val.labels)
            else:
                self.store[key] = calibration.fit_classwise_temperature(
                    z, self.val.labels, init=self._get(i, "t")
                )
        return self.store[key]

    def scalar(self) -> tuple[float, float]:
        return self._get(0, "t"), self._get(1, "t")

    def classwise(self) -> tuple[np.ndarray, np.ndarray]:
        return self._get(0, "ct"), self._get(1, "ct")


def _softmax_output(logits: np.ndarray) -> FusionOutput:
    p = methods.softmax(logits)
    pred = p.argmax(1)
    return FusionOutput(
        pred=pred.astype(np.int64),
        conf=p[np.arange(len(p)), pred],
        chosen=np.full(len(p), -1, np.int8),
        probs=p,
    )


class Fuser(abc.ABC):
    """Base class: ``fit`` learns parameters, ``predict`` fuses a split.

    Args:
        metric: the validation metric that fitted parameters maximise (``acc``, ``macro_acc``).
    """

    name = ""

    def __init__(self, metric: str = "acc") -> None:
        self.metric = metric
        self._params: dict[str, Any] = {}

    def fit(self, train: LogitsPair | None, val: LogitsPair, calib: Calibration) -> Fuser:
        return self

    @abc.abstractmethod
    def predict(self, data: LogitsPair) -> FusionOutput:
        """Fuse the two inputs of ``data`` with the fitted parameters."""

    def params(self) -> dict[str, Any]:
        """Learnt parameters as JSON-serialisable values (scalars; arrays as lists)."""
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self._params.items()
        }


class MaxConf(Fuser):
    name = "max_conf"

    def predict(self, data: LogitsPair) -> FusionOutput:
        return methods.max_conf(data.z1, data.z2)


class MaxConfTS(Fuser):
    name = "max_conf_ts"

    def fit(self, train, val, calib):
        self._params["t1"], self._params["t2"] = calib.scalar()
        return self

    def predict(self, data):
        return methods.max_conf(data.z1, data.z2, self._params["t1"], self._params["t2"])


class MaxConfCTS(Fuser):
    name = "max_conf_cts"

    def fit(self, train, val, calib):
        self._params["t1"], self._params["t2"] = calib.classwise()
        return self

    def predict(self, data):
        return methods.max_conf(data.z1, data.z2, self._params["t1"], self._params["t2"])


class Threshold(Fuser):
    """⊕R; ``t`` is fitted on val, or set by hand (§3.3: "manually set to limit the influence
    of Φ2")."""

    name = "threshold"

    def __init__(self, metric: str = "acc", t: float | None = None) -> None:
        super().__init__(metric)
        self.manual_t = t

    def fit(self, train, val, calib):
        if self.manual_t is not None:
            self._params.update(t=float(self.manual_t), manual=True)
        else:
            self._params["t"] = methods.fit_threshold(
                val.z1, val.z2, val.labels, metric=self.metric
            )
        return self

    def predict(self, data):
        return methods.threshold(data.z1, data.z2, self._params["t"])


class TSAverage(Fuser):
    name = "ts_average"

    def fit(self, train, val, calib):
        self._params["t1"], self._params["t2"] = calib.scalar()
        return self

    def predict(self, data):
        return methods.ts_average(data.z1, data.z2, self._params["t1"], self._params["t2"])


class TSWeightedAverage(Fuser):
    name = "ts_weighted_average"

    def fit(self, train, val, calib):
        t1, t2 = calib.scalar()
        alpha = methods.fit_alpha(val.z1, val.z2, val.labels, t1, t2, metric=self.metric)
        self._params.update(t1=t1, t2=t2, alpha=alpha)
        return self

    def predict(self, data):
        p = self._params
        return methods.ts_weighted_average(data.z1, data.z2, p["alpha"], p["t1"], p["t2"])


class LearntHead(Fuser):
    """A head from :mod:`occam_l2r.fusion.heads` trained on the train logits, its epoch chosen
    on the validation logits (:func:`occam_l2r.fusion.head_training.train_head`)."""

    def __init__(
        self, name: str, config: HeadConfig | None = None, seed: int = 0, metric: str = "acc"
    ) -> None:
        super().__init__(metric)
        self.name = name
        self.config = config or HeadConfig()
        self.seed = seed
        self.head: torch.nn.Module | None = None

    def fit(self, train, val, calib):
        if train is None or len(train) == 0:
            raise ValueError(
                f"{self.name} is trained on the train logits, but none were given; set "
                "`train_split` in the fuse config and export that split with `predict`"
            )
        c = self.config
        torch.manual_seed(self.seed)  # what seed_everything does before `fit` builds the head
        self.head = heads.build_head(self.name, train.num_classes, hidden_dim=c.hidden_dim)
        with_val = (val.z1, val.z2, val.labels) if c.select_on_val and val is not None else None
        fitted = train_head(
            self.head, train.z1, train.z2, train.labels, c.max_epochs,
            c.lr if c.lr is not None else DEFAULT_LR[self.name], c.batch_size,
            c.weight_decay, self.seed, c.num_threads, with_val, self.metric,
        )  # fmt: skip
        self._params.update(best_epoch=fitted.best_epoch, val_score=fitted.best_score)
        if isinstance(self.head, heads.WeightedLogits):
            self._params["w1"] = self.head.w1.detach().numpy().copy()
            self._params["w2"] = self.head.w2.detach().numpy().copy()
        return self

    def predict(self, data):
        if self.head is None:
            raise RuntimeError(f"{self.name}: call fit() before predict()")
        return _softmax_output(head_logits(self.head, data.z1, data.z2))


class Oracle(Fuser):
    name = "oracle"

    def predict(self, data):
        return methods.oracle(data.z1, data.z2, data.labels)


def build_fuser(
    name: str,
    head_config: HeadConfig | None = None,
    seed: int = 0,
    metric: str = "acc",
    threshold_t: float | None = None,
) -> Fuser:
    """Create a fuser by method name (a key of :data:`METHOD_LABELS`).

    Args:
        name: the method.
        head_config: training settings of the learnt heads.
        seed: seed of a learnt head (its initialisation and the order of its samples).
        metric: the validation metric that t, α and the heads' epochs maximise.
        threshold_t: a manual ⊕R threshold (``None``: fitted on val).
    """
    simple = {c.name: c for c in (MaxConf, MaxConfTS, MaxConfCTS, TSAverage, TSWeightedAverage)}
    if name in simple:
        return simple[name](metric)
    if name == "threshold":
        return Threshold(metric, threshold_t)
    if name == "oracle":
        return Oracle(metric)
    if name in LEARNT_METHODS:
        return LearntHead(name, head_config, seed, metric)
    raise ValueError(f"unknown fusion method {name!r}; choose from {list(METHOD_LABELS)}")
