"""The registry of fusion methods (:mod:`occam_l2r.fusion.fusers`): every registered method's
parameters survive a JSON round trip, and a method registered by this test module alone appears
in ``fuse``'s tables, in the report's per-sample predictions and among ``classify``'s methods
(the recipe of docs/extending.md: one class, nothing else edited)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from occam_l2r.classify.config import ClassifyConfig
from occam_l2r.classify.engine import ClassifyConfigError, classify_images, needed_views
from occam_l2r.cli import main
from occam_l2r.fusion import fusers, methods
from occam_l2r.fusion.fusers import (
    REGISTRY,
    Calibration,
    FitSettings,
    FusionMethod,
    HeadConfig,
    build_method,
    method_names,
)
from occam_l2r.fusion.inputs import LogitsCache, LogitsPair
from occam_l2r.fusion.saved import SavedFusion, load_fusion
from occam_l2r.fusion.synthetic import write_synthetic_runs
from occam_l2r.reporting.predictions import fused_split, reproducible


class PlainMean(FusionMethod):
    """The mean of both softmaxes without temperatures, with a weight ``w`` fitted on val:
    a method that exists only in this test module."""

    name, label, symbol, fit_split = "test_plain_mean", "Plain mean (test)", "⊕pm", "val"

    def fit(self, train, val, calib):
        scores = {w: methods.score(self._fuse(val, w).pred, val.labels, self.metric)
                  for w in (0.3, 0.5, 0.7)}  # fmt: skip
        self._params["w"] = max(scores, key=scores.get)
        return self

    def _fuse(self, data: LogitsPair, w: float):
        return methods.ts_weighted_average(data.z1, data.z2, w)

    def apply(self, data):
        return self._fuse(data, self._params["w"])


@pytest.fixture
def plain_mean(monkeypatch):
    """``PlainMean`` registered with :func:`~occam_l2r.fusion.fusers.register` for one test
    (``monkeypatch`` removes it afterwards)."""
    monkeypatch.setitem(REGISTRY, PlainMean.name, PlainMean)
    fusers.register(PlainMean)
    return PlainMean


def _pair(n: int = 240, seed: int = 0) -> LogitsPair:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    z1 = (2 * np.eye(4)[y] + rng.standard_normal((n, 4))).astype(np.float32)
    z2 = (np.eye(4)[rng.integers(0, 4, n)] + rng.standard_normal((n, 4))).astype(np.float32)
    return LogitsPair(ids=np.arange(n).astype(str), labels=y, z1=z1, z2=z2,
                      groups=np.full(n, ""))  # fmt: skip


def test_every_method_round_trips_its_parameters():
    """``params()`` through JSON and back gives a fitted method that applies as the original
    (on other logits too); a method that cannot say so refuses."""
    train, other = _pair(seed=0), _pair(seed=1)
    calib = Calibration(train)
    for name in method_names():
        settings = FitSettings(heads=HeadConfig(max_epochs=2, batch_size=64), seed=1)
        fitted = build_method(name, settings).fit(train, train, calib)
        params = json.loads(json.dumps(fitted.params()))
        cls = REGISTRY[name]
        if not cls.restorable(params):
            assert name == "concat_fc"  # saves no weights: the report needs its sample reports
            with pytest.raises(ValueError, match="cannot be rebuilt"):
                cls.from_params(params)
            continue
        back = cls.from_params(params)
        assert back.params() == fitted.params(), name
        for data in (train, other):
            want, got = fitted.apply(data), back.apply(data)
            assert (got.pred == want.pred).all(), name
            np.testing.assert_allclose(got.conf, want.conf, rtol=1e-6, err_msg=name)


def test_registry_order_and_labels_are_the_tables():
    assert method_names()[:3] == ["max_conf", "max_conf_ts", "max_conf_cts"]
    assert method_names()[-1] == "oracle"
    assert REGISTRY["weighted_logits"].label == "WeightedLogitsComb"
    assert REGISTRY["weighted_logits"].symbol == "⊕WL"
    assert [m for m, c in REGISTRY.items() if c.learnt] == ["concat_fc", "weighted_logits"]
    with pytest.raises(ValueError, match="is taken"):
        fusers.register(type("Other", (PlainMean,), {"name": "max_conf"}))


def test_a_method_registered_by_a_test_reaches_fuse_report_and_classify(plain_mean, tmp_path):
    runs = write_synthetic_runs(tmp_path / "runs", num_classes=4, seeds=1,
                                sizes={"train": 60, "val": 80, "test_id": 80})  # fmt: skip
    out = tmp_path / "fusion"
    cfg = {"runs": runs, "output_dir": str(out), "pairs": [["FG_C", "FULL"]],
           "methods": ["max_conf", plain_mean.name], "test_splits": ["test_id"],
           "summary_methods": ["best", plain_mean.name]}  # fmt: skip
    (tmp_path / "fuse.yaml").write_text(yaml.safe_dump(cfg))
    main(["fuse", "--config", str(tmp_path / "fuse.yaml")])

    # fuse's tables: its Table 9 row label and its Table 1 symbol
    assert "| Plain mean (test) |" in (out / "fusion_table.md").read_text()
    assert "| FG_C ⊕pm FULL |" in (out / "summary.md").read_text()

    # the report's predictions: rebuilt from the saved parameters, equal to fuse's accuracy
    saved = load_fusion(out, "FG_C+FULL", plain_mean.name)
    assert reproducible(saved.record, out)
    got = fused_split(LogitsCache(), out, saved.record, "test_id", None)
    assert got is not None and got.source == "fitted parameters" and got.matches

    # classify: accepted, and its fused prediction is the method's on the views' logits
    images = []
    for i in range(3):
        path = tmp_path / "images" / f"im{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (12, 10), (40 * i, 80, 120)).save(path)
        images.append((path.name, path))
    config = ClassifyConfig(images=str(tmp_path / "images"), output_dir=str(tmp_path / "c"),
                            checkpoints={"FG_C": "-", "FULL": "-"}, fusion_dir=str(out),
                            pair="FG_C+FULL", method=plain_mean.name, fallback="none")  # fmt: skip
    assert needed_views(config, saved) == ["FG_C", "FULL"]
    models = {"FG_C": _StubModel(1), "FULL": _StubModel(2)}
    result = classify_images(config, saved, models, images)
    z = result.logits
    expected = plain_mean.from_params(saved.params).apply(_pair_of(z["FG_C"], z["FULL"]))
    assert (result.fused.pred == expected.pred).all()


class _StubModel:
    """A view model giving fixed random logits per call (no network)."""

    num_classes = 4

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def logits(self, images: list, batch_size: int) -> np.ndarray:
        return self.rng.standard_normal((len(images), 4)).astype(np.float32)


def _pair_of(z1: np.ndarray, z2: np.ndarray) -> LogitsPair:
    n = len(z1)
    return LogitsPair(ids=np.arange(n).astype(str), labels=np.full(n, -1), z1=z1, z2=z2,
                      groups=np.zeros(n))  # fmt: skip


@pytest.mark.parametrize(
    ("method", "params"),
    [("oracle", {}), ("concat_fc", {"best_epoch": 1}), ("weighted_logits", {"best_epoch": 1})],
)
def test_classify_refuses_what_cannot_classify_new_images(method, params):
    """The oracle reads labels; concat_fc (and weighted_logits without ``w1``/``w2``) cannot be
    rebuilt from what was saved."""
    config = ClassifyConfig(images="-", output_dir="-", checkpoints={"FG_C": "-", "FULL": "-"},
                            fusion_dir="-", method=method)  # fmt: skip
    saved = SavedFusion(("FG_C", "FULL"), method, 0, params, ("a", "b"), {})
    with pytest.raises(ClassifyConfigError, match="cannot classify new images"):
        needed_views(config, saved)
