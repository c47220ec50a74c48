"""Every fusion method of L2R² appendix B.3 as one registered class: the one place a method is known.

A :class:`FusionMethod` subclass carries everything the toolkit asks of a method: its ``name``
(the key of configs and ``results.jsonl``), its ``label`` (its row in Table 9 and the summary),
its ``symbol`` (its operator in Table 1, ``⊕max``), whether it is ``learnt`` (trains a head),
whether it is one of the ``paper``'s methods (a row of L2R² Tables 9-14), the split it fits on
(``fit_split``), :meth:`~FusionMethod.fit`, :meth:`~FusionMethod.apply`, and its
fitted parameters as JSON values (:meth:`~FusionMethod.params`) with the way back
(:meth:`~FusionMethod.from_params`, :meth:`~FusionMethod.restorable`).

:func:`register` adds a class to :data:`REGISTRY`, whose order is the tables' row order. The
sweep (:mod:`occam_l2r.fusion.plan`, :mod:`occam_l2r.fusion.compute`), the tables, the config
check, the report's predictions and ``classify`` all ask the registry (:func:`method_names`,
:func:`paper_method_names`, :func:`method_labels`, :func:`method_class`, :func:`build_method`);
adding a method is one registered class (docs/extending.md). ``fuse`` runs the paper's methods
unless ``methods:`` names others, so ⊕* selects among the paper's rows by default.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from occam_l2r.fusion import calibration, heads, methods
from occam_l2r.fusion.head_training import (
    DEFAULT_NUM_THREADS,
    HeadFit,
    HeadJob,
    head_logits,
    train_heads,
)
from occam_l2r.fusion.inputs import LogitsPair
from occam_l2r.fusion.methods import FusionOutput

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
    training (:data:`~occam_l2r.fusion.head_training.DEFAULT_NUM_THREADS`; 0 keeps torch's
    setting). With ``together`` the learnt heads of every (pair, seed) of a sweep train
    together (one batched step for all heads of a kind, each head's mathematics, order and seed
    kept; it holds every pair's train logits at once); otherwise the heads of one (pair, seed)
    at a time. ``together`` changes only the float rounding of the batched kernels (tested:
    the same cells), so it is no part of a cell's fingerprint.
    """

    max_epochs: int = 30
    lr: float | None = None
    batch_size: int = 256
    weight_decay: float = 0.0
    hidden_dim: int = 64
    select_on_val: bool = True
    num_threads: int = DEFAULT_NUM_THREADS
    together: bool = True


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


@dataclass
class FitSettings:
    """What a sweep tells a method before it fits (each method reads the fields it needs).

    Attributes:
        metric: the validation metric that fitted parameters maximise (``acc``, ``macro_acc``).
        seed: the seed of a learnt head (its initialisation and the order of its samples).
        heads: training settings of the learnt heads.
        threshold_t: a manual ⊕R threshold (``None``: fitted on val).
    """

    metric: str = "acc"
    seed: int = 0
    heads: HeadConfig = field(default_factory=HeadConfig)
    threshold_t: float | None = None


def _softmax_output(logits: np.ndarray) -> FusionOutput:
    p = methods.softmax(logits)
    pred = p.argmax(1)
    return FusionOutput(
        pred=pred.astype(np.int64),
        conf=p[np.arange(len(p)), pred],
        chosen=np.full(len(p), -1, np.int8),
        probs=p,
    )


def _restore(value: Any) -> Any:
    """A parameter read back from JSON: lists (class-wise temperatures) as float64 arrays."""
    return np.asarray(value, np.float64) if isinstance(value, list) else value


class FusionMethod(abc.ABC):
    """One fusion method: what it is (class attributes), ``fit`` on train/val, ``apply`` to a split.

    An instance is fitted once per (pair of inputs, seed) and then applies to any split. Its
    parameters are plain numbers or arrays (:meth:`params`), logged in ``results.jsonl``;
    :meth:`from_params` gives back a fitted instance from them (no refit).

    Attributes:
        name: the key of the method in configs and ``results.jsonl``.
        label: its row label in Table 9 and the summary (``WeightedLogitsComb``).
        symbol: its operator in Table 1 (``⊕WL``).
        learnt: whether it trains a head (on ``fit_split``, its epoch chosen on val).
        fit_split: the split it fits on: ``train`` (learnt heads), ``val`` (temperatures,
            ``t``, ``α``) or ``None`` (nothing to fit).
        needs_labels: whether :meth:`apply` reads the labels (the oracle): it cannot classify
            new images.
        paper: whether the method is a row of L2R²'s tables (Tables 1, 3, 9-14): ``fuse``'s
            default ``methods`` and so the default ⊕* pool (:func:`paper_method_names`); any
            other method runs (and joins ⊕*) only when ``methods:`` names it.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    symbol: ClassVar[str] = ""
    learnt: ClassVar[bool] = False
    fit_split: ClassVar[str | None] = None
    needs_labels: ClassVar[bool] = False
    paper: ClassVar[bool] = False

    def __init__(self, settings: FitSettings | None = None) -> None:
        self.settings = settings or FitSettings()
        self._params: dict[str, Any] = {}

    @property
    def metric(self) -> str:
        return self.settings.metric

    @classmethod
    def cell_settings(cls, settings: FitSettings) -> dict[str, Any]:
        """The settings besides the metric that change this method's result (part of a sweep
        cell's fingerprint, so that changing them recomputes the cell)."""
        return {}

    def fit(self, train: LogitsPair | None, val: LogitsPair, calib: Calibration) -> FusionMethod:
        """Fit the parameters (``train`` is ``None`` unless ``fit_split`` is ``train``)."""
        return self

    @abc.abstractmethod
    def apply(self, data: LogitsPair) -> FusionOutput:
        """Fuse the two inputs of ``data`` with the fitted parameters."""

    def params(self) -> dict[str, Any]:
        """Learnt parameters as JSON-serialisable values (scalars; arrays as lists)."""
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self._params.items()
        }

    @classmethod
    def restorable(cls, params: dict[str, Any]) -> bool:
        """Whether :meth:`from_params` can rebuild the fitted method from ``params`` alone."""
        return True

    @classmethod
    def from_params(
        cls, params: dict[str, Any], settings: FitSettings | None = None
    ) -> FusionMethod:
        """A fitted method from the parameters :meth:`params` gave (as read from JSON).

        Raises:
            ValueError: the parameters do not suffice (:meth:`restorable` is false).
        """
        if not cls.restorable(params):
            raise ValueError(
                f"fusion method {cls.name!r} cannot be rebuilt from its saved parameters "
                f"{sorted(params)}"
            )
        method = cls(settings)
        method._params = {k: _restore(v) for k, v in params.items()}
        return method


#: method name -> its class, in table order (:func:`register` adds to it).
REGISTRY: dict[str, type[FusionMethod]] = {}


def register(cls: type[FusionMethod]) -> type[FusionMethod]:
    """Class decorator: add a :class:`FusionMethod` to :data:`REGISTRY` (after the others).

    Raises:
        ValueError: the class has no ``name``/``label``/``symbol``, or its name is taken.
    """
    missing = [a for a in ("name", "label", "symbol") if not getattr(cls, a)]
    if missing:
        raise ValueError(f"fusion method {cls.__name__} must set {missing}")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"fusion method name {cls.name!r} is taken by {REGISTRY[cls.name]}")
    REGISTRY[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """The registered methods, in table order."""
    return list(REGISTRY)


def paper_method_names() -> list[str]:
    """The registered methods that are rows of L2R²'s tables (``paper``), in table order: the
    default ``methods`` of ``fuse`` and so the default ⊕* pool."""
    return [name for name, cls in REGISTRY.items() if cls.paper]


def method_labels() -> dict[str, str]:
    """Method name -> row label (Table 9), in table order."""
    return {name: cls.label for name, cls in REGISTRY.items()}


def method_class(name: str) -> type[FusionMethod]:
    """The registered class of ``name``.

    Raises:
        ValueError: no method of that name (the message lists them).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown fusion method {name!r}; choose from {method_names()}")
    return REGISTRY[name]


def build_method(name: str, settings: FitSettings | None = None) -> FusionMethod:
    """A new (unfitted) method by name (a key of :data:`REGISTRY`)."""
    return method_class(name)(settings)


@register
class MaxConf(FusionMethod):
    """⊕max: the more confident input."""

    paper = True
    name, label, symbol = "max_conf", "Max conf", "⊕max"

    def apply(self, data: LogitsPair) -> FusionOutput:
        return methods.max_conf(data.z1, data.z2)


@register
class MaxConfTS(FusionMethod):
    """⊕max on temperature-scaled confidences (temperatures fitted on val)."""

    paper = True
    name, label, symbol, fit_split = "max_conf_ts", "Max scaled conf", "⊕maxTS", "val"

    def fit(self, train, val, calib):
        self._params["t1"], self._params["t2"] = calib.scalar()
        return self

    def apply(self, data):
        return methods.max_conf(data.z1, data.z2, self._params["t1"], self._params["t2"])


@register
class MaxConfCTS(FusionMethod):
    """⊕max on class-wise temperature-scaled confidences."""

    paper = False  # eq. 3 of B.3, but no row of the paper's tables: run it by naming it
    name, label, symbol = "max_conf_cts", "Max class-wise scaled conf", "⊕maxCTS"
    fit_split = "val"

    def fit(self, train, val, calib):
        self._params["t1"], self._params["t2"] = calib.classwise()
        return self

    def apply(self, data):
        return methods.max_conf(data.z1, data.z2, self._params["t1"], self._params["t2"])


@register
class Threshold(FusionMethod):
    """⊕R; ``t`` is fitted on val, or set by hand (§3.3: "manually set to limit the influence
    of Φ2", :attr:`FitSettings.threshold_t`)."""

    paper = True
    name, label, symbol, fit_split = "threshold", "Threshold conf", "⊕R", "val"

    @classmethod
    def cell_settings(cls, settings):
        return {} if settings.threshold_t is None else {"t": settings.threshold_t}

    def fit(self, train, val, calib):
        if self.settings.threshold_t is not None:
            self._params.update(t=float(self.settings.threshold_t), manual=True)
        else:
            self._params["t"] = methods.fit_threshold(
                val.z1, val.z2, val.labels, metric=self.metric
            )
        return self

    def apply(self, data):
        return methods.threshold(data.z1, data.z2, self._params["t"])


@register
class TSAverage(FusionMethod):
    """The average of both temperature-scaled softmaxes."""

    paper = True
    name, label, symbol, fit_split = "ts_average", "TempScaled AvgPred", "⊕avg", "val"

    def fit(self, train, val, calib):
        self._params["t1"], self._params["t2"] = calib.scalar()
        return self

    def apply(self, data):
        return methods.ts_average(data.z1, data.z2, self._params["t1"], self._params["t2"])


@register
class TSWeightedAverage(FusionMethod):
    """``α σ(z1/T1) + (1 - α) σ(z2/T2)``, ``α`` fitted on val."""

    paper = True
    name, label, symbol = "ts_weighted_average", "TempScaled WeightedAvg", "⊕wavg"
    fit_split = "val"

    def fit(self, train, val, calib):
        t1, t2 = calib.scalar()
        alpha = methods.fit_alpha(val.z1, val.z2, val.labels, t1, t2, metric=self.metric)
        self._params.update(t1=t1, t2=t2, alpha=alpha)
        return self

    def apply(self, data):
        p = self._params
        return methods.ts_weighted_average(data.z1, data.z2, p["alpha"], p["t1"], p["t2"])


class LearntHead(FusionMethod):
    """A head of :mod:`occam_l2r.fusion.heads` (named as the method) trained on the train
    logits, its epoch chosen on the validation logits
    (:func:`occam_l2r.fusion.head_training.train_heads`; :func:`fit_learnt` fits the heads of a
    sweep together)."""

    learnt, fit_split = True, "train"

    def __init__(self, settings: FitSettings | None = None) -> None:
        super().__init__(settings)
        self.head: torch.nn.Module | None = None

    @classmethod
    def cell_settings(cls, settings):
        out = asdict(settings.heads)
        out.pop("together")  # how the heads are scheduled, not what they compute
        return out

    def job(self, train: LogitsPair | None, val: LogitsPair | None) -> HeadJob:
        """The head to train, built after seeding, with its data and settings (what
        :func:`fit_learnt` trains together with the other heads of a sweep)."""
        if train is None or len(train) == 0:
            raise ValueError(
                f"{self.name} is trained on the train logits, but none were given; set "
                "`train_split` in the fuse config and export that split with `predict`"
            )
        c, seed = self.settings.heads, self.settings.seed
        torch.manual_seed(seed)  # what seed_everything does before `fit` builds the head
        self.head = heads.build_head(self.name, train.num_classes, hidden_dim=c.hidden_dim)
        with_val = (val.z1, val.z2, val.labels) if c.select_on_val and val is not None else None
        return HeadJob(
            self.head, train.z1, train.z2, train.labels, seed,
            c.lr if c.lr is not None else DEFAULT_LR[self.name], c.weight_decay,
            with_val, self.metric, c.max_epochs, c.batch_size,
        )  # fmt: skip

    def take(self, fitted: HeadFit) -> LearntHead:
        """Keep the trained head of :meth:`job` and its epoch choice as parameters."""
        self.head = fitted.head
        self._params.update(best_epoch=fitted.best_epoch, val_score=fitted.best_score)
        return self

    def fit(self, train, val, calib):
        return fit_learnt([(self, train, val)])[0]

    def apply(self, data):
        if self.head is None:
            raise RuntimeError(f"{self.name}: call fit() before apply()")
        return _softmax_output(head_logits(self.head, data.z1, data.z2))


def fit_learnt(
    items: list[tuple[LearntHead, LogitsPair | None, LogitsPair | None]],
) -> list[LearntHead]:
    """Fit learnt heads together (:func:`occam_l2r.fusion.head_training.train_heads`): each
    ``(method, train, val)`` gets the head that fitting it alone gives.

    The torch threads are the first method's ``heads.num_threads``.
    """
    if not items:
        return []
    jobs = [method.job(train, val) for method, train, val in items]
    fits = train_heads(jobs, items[0][0].settings.heads.num_threads)
    return [method.take(fit) for (method, _, _), fit in zip(items, fits, strict=True)]


@register
class ConcatFCMethod(LearntHead):
    """⊕FC: a shallow network on the concatenated logits. Its weights are not saved, so it is
    not rebuilt from its parameters (the report needs its per-sample reports)."""

    paper = True
    name, label, symbol = "concat_fc", "Concatenate + FC layers", "⊕FC"

    @classmethod
    def restorable(cls, params):
        return False


@register
class WeightedLogitsMethod(LearntHead):
    """⊕WL: ``w1 * z1 + w2 * z2`` with per-class weights, saved as ``w1``/``w2``."""

    paper = True
    name, label, symbol = "weighted_logits", "WeightedLogitsComb", "⊕WL"

    def take(self, fitted):
        super().take(fitted)
        assert isinstance(self.head, heads.WeightedLogits)
        self._params["w1"] = self.head.w1.detach().numpy().copy()
        self._params["w2"] = self.head.w2.detach().numpy().copy()
        return self

    @classmethod
    def restorable(cls, params):
        return "w1" in params and "w2" in params

    @classmethod
    def from_params(cls, params, settings=None):
        method = super().from_params(params, settings)
        w1 = np.asarray(params["w1"], np.float32)
        head = heads.WeightedLogits(len(w1))
        with torch.no_grad():
            head.w1.copy_(torch.from_numpy(w1))
            head.w2.copy_(torch.from_numpy(np.asarray(params["w2"], np.float32)))
        method.head = head
        return method


@register
class Oracle(FusionMethod):
    """Correct when either input is: an upper bound that reads the labels."""

    paper = True
    name, label, symbol, needs_labels = "oracle", "Oracle", "⊕oracle", True

    def apply(self, data):
        return methods.oracle(data.z1, data.z2, data.labels)
