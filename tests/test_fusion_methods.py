"""Hand-computed cases for every non-parametric fusion method, the metrics and ⊕* selection."""

from __future__ import annotations

import numpy as np
import pytest

from occam_l2r.fusion import methods as M


def logits_of(probs: list[list[float]]) -> np.ndarray:
    """Logits whose softmax is exactly ``probs`` (up to float rounding)."""
    return np.log(np.asarray(probs, dtype=np.float64))


# confidences: Φ1 = [0.7, 0.5, 0.4], Φ2 = [0.5, 0.8, 0.4] (the last row is a tie)
Z1 = logits_of([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.2, 0.4, 0.4]])
Z2 = logits_of([[0.1, 0.5, 0.4], [0.1, 0.1, 0.8], [0.4, 0.3, 0.3]])
LABELS = np.array([1, 2, 2])


def test_predict_confidence_and_class_ties():
    pred, conf = M.predict_confidence(Z1)
    # row 2 has a class tie (0.4, 0.4): the lowest class index wins
    assert pred.tolist() == [0, 0, 1]
    np.testing.assert_allclose(conf, [0.7, 0.5, 0.4])
    # temperature 2 on [log .7, log .2, log .1]: sqrt-probabilities renormalised
    _, conf_t = M.predict_confidence(Z1[:1], 2.0)
    s = np.sqrt([0.7, 0.2, 0.1])
    assert conf_t[0] == pytest.approx(s[0] / s.sum())


def test_max_conf_hand_computed_with_tie_to_input1():
    out = M.max_conf(Z1, Z2)
    # row 0: 0.7 > 0.5 -> Φ1 (class 0); row 1: 0.8 > 0.5 -> Φ2 (class 2); row 2: 0.4 == 0.4 -> Φ1
    assert out.pred.tolist() == [0, 2, 1]
    assert out.chosen.tolist() == [0, 1, 0]
    np.testing.assert_allclose(out.conf, [0.7, 0.8, 0.4])
    # an exact confidence tie (mirrored two-class logits): Φ1 decides
    tie = M.max_conf(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert tie.conf[0] == M.predict_confidence(np.array([[0.0, 1.0]]))[1][0]
    assert tie.pred.tolist() == [0] and tie.chosen.tolist() == [0]


def test_max_conf_temperature_changes_the_decision():
    # Φ2 is over-confident: 0.9 > 0.6, but at T2 = 10 its confidence drops to about 0.536
    z1 = logits_of([[0.6, 0.2, 0.2]])
    z2 = logits_of([[0.1, 0.9, 1e-12]])
    assert M.max_conf(z1, z2).pred.tolist() == [1]
    q = np.array([0.1, 0.9, 1e-12]) ** 0.1
    assert M.max_conf(z1, z2, 1.0, 10.0).conf[0] == pytest.approx(0.6)  # Φ1 wins
    assert q[1] / q.sum() < 0.6
    assert M.max_conf(z1, z2, 1.0, 10.0).pred.tolist() == [0]


def test_threshold_strict_edge_falls_back_to_max_conf():
    z1 = logits_of([[0.5, 0.3, 0.2]])
    z2 = logits_of([[0.1, 0.1, 0.8]])
    p1 = M.predict_confidence(z1)[1][0]
    # p̂1 > t: trust Φ1
    assert M.threshold(z1, z2, np.nextafter(p1, 0)).pred.tolist() == [0]
    # p̂1 == t: not strictly greater -> the more confident input (Φ2, 0.8)
    out = M.threshold(z1, z2, p1)
    assert out.pred.tolist() == [2] and out.chosen.tolist() == [1]
    # when Φ1 is below t but still more confident, Φ1 decides
    z2_weak = logits_of([[0.1, 0.45, 0.45]])
    assert M.threshold(z1, z2_weak, 0.9).pred.tolist() == [0]


def test_threshold_t0_is_input1_and_t1_is_max_conf():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(50, 4)), rng.normal(size=(50, 4)) * 3
    np.testing.assert_array_equal(M.threshold(z1, z2, 0.0).pred, z1.argmax(1))
    np.testing.assert_array_equal(M.threshold(z1, z2, 1.0).pred, M.max_conf(z1, z2).pred)


def test_fit_threshold_hand_computed():
    # p̂1 = 0.4, 0.5, 0.6, 0.9; Φ1 right on rows 2, 3; Φ2 (more confident) right on rows 0, 1
    z1 = logits_of([[0.4, 0.3, 0.3], [0.5, 0.25, 0.25], [0.6, 0.2, 0.2], [0.9, 0.05, 0.05]])
    z2 = logits_of(
        [[0.05, 0.95, 0.0 + 1e-9], [0.05, 0.95, 1e-9], [0.05, 0.95, 1e-9], [0.05, 0.95, 1e-9]]
    )
    labels = np.array([1, 1, 0, 0])
    # t = 0: 2/4; t = 0.4: 3/4; t = 0.5: 4/4; t = 0.6: 3/4; t = 0.9: 2/4 -> t = p̂1 of row 1
    t = M.fit_threshold(z1, z2, labels)
    assert t == pytest.approx(0.5)
    assert M.accuracy(M.threshold(z1, z2, t).pred, labels) == 1.0


def test_fit_threshold_prefers_input1_on_ties():
    # both inputs always right: every t gives 100 %; the smallest (0: always Φ1) is chosen
    z = logits_of([[0.6, 0.4], [0.3, 0.7]])
    assert M.fit_threshold(z, z, np.array([0, 1])) == 0.0


def test_fit_threshold_matches_brute_force():
    rng = np.random.default_rng(1)
    z1, z2 = rng.normal(size=(300, 5)) * 2, rng.normal(size=(300, 5)) * 2
    labels = rng.integers(0, 5, 300)
    t = M.fit_threshold(z1, z2, labels)
    best = max(M.accuracy(M.threshold(z1, z2, c).pred, labels) for c in np.linspace(0, 1, 2001))
    assert M.accuracy(M.threshold(z1, z2, t).pred, labels) == pytest.approx(best)


def test_ts_average_and_weighted_average_hand_computed():
    out = M.ts_average(Z1, Z2)
    # row 0: 0.4, 0.35, 0.25 -> 0; row 1: 0.3, 0.2, 0.5 -> 2;
    # row 2: 0.3, 0.35, 0.35 -> exact class tie -> the lower index, 1
    assert out.pred.tolist() == [0, 2, 1]
    np.testing.assert_allclose(out.conf, [0.4, 0.5, 0.35])
    assert (out.chosen == -1).all()
    w = M.ts_weighted_average(Z1, Z2, alpha=0.25)
    # row 0: 0.25*0.7 + 0.75*0.1 = 0.25, 0.25*0.2 + 0.75*0.5 = 0.425, 0.325 -> class 1
    assert w.pred[0] == 1 and w.conf[0] == pytest.approx(0.425)
    np.testing.assert_array_equal(M.ts_weighted_average(Z1, Z2, 1.0).pred, Z1.argmax(1))


def test_fit_alpha_hand_computed_and_tie_to_half():
    z1 = logits_of([[0.9, 0.1], [0.6, 0.4]])
    z2 = logits_of([[0.2, 0.8], [0.2, 0.8]])
    labels = np.array([1, 1])
    # row 0 predicts 1 iff 0.9α + 0.2(1-α) < 0.1α + 0.8(1-α) iff α < 3/7;
    # row 1 predicts 1 iff 0.6α + 0.2(1-α) < 0.4α + 0.8(1-α) iff α < 0.75 -> best α in [0, 3/7)
    # among the grid maximisers, the closest to 0.5 is 0.42
    assert M.fit_alpha(z1, z2, labels, grid=101) == pytest.approx(0.42)
    # everything tied -> exactly 0.5
    assert M.fit_alpha(z1, z1, np.array([0, 0])) == pytest.approx(0.5)


def test_oracle_hand_computed():
    out = M.oracle(Z1, Z2, LABELS)
    # row 0: Φ1 says 0, Φ2 says 1 = label -> 1; row 1: Φ2 says 2 = label;
    # row 2: Φ1 says 1, Φ2 says 0, label 2: neither -> ŷ1
    assert out.pred.tolist() == [1, 2, 1]
    assert out.chosen.tolist() == [1, 1, 0]
    assert M.accuracy(out.pred, LABELS) == pytest.approx(2 / 3)


def test_select_best_excludes_oracle_and_breaks_ties_by_order():
    assert M.select_best({"max_conf": 0.5, "threshold": 0.7, "oracle": 0.9}) == "threshold"
    assert M.select_best({"a": 0.7, "b": 0.7, "c": 0.1}) == "a"
    assert M.select_best({"a": float("nan"), "b": 0.2}) == "b"
    with pytest.raises(ValueError, match="no method to select"):
        M.select_best({"oracle": 1.0})


def test_macro_accuracy_over_present_classes_only():
    labels = np.array([0, 0, 0, 2])  # class 1 absent
    pred = np.array([0, 1, 1, 2])
    # class 0: 1/3, class 2: 1/1 -> mean 2/3 (class 1 not averaged in as 0)
    assert M.macro_accuracy(pred, labels) == pytest.approx(2 / 3)
    assert M.accuracy(pred, labels) == pytest.approx(0.5)
    assert np.isnan(M.accuracy(np.array([]), np.array([])))
