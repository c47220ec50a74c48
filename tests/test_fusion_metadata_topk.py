"""Metadata prior fusion, top-k candidate fusion (eq. 5) and the interpretability report."""

from __future__ import annotations

import types

import numpy as np
import pytest

from occam_l2r.fusion import report
from occam_l2r.fusion.inputs import LogitsPair
from occam_l2r.fusion.metadata import (
    MetadataPrior,
    align_metadata,
    metadata_from_records,
    metadata_fusion,
)
from occam_l2r.fusion.methods import max_conf, ts_average
from occam_l2r.fusion.topk import exported_k, nonempty_candidates, topk_fusion
from occam_l2r.logits import LogitsFile
from occam_l2r.reporting.figures import plot_weights


def test_metadata_prior_hand_computed():
    # train: habitat "forest" -> classes [0, 0, 1]; "meadow" -> [1]; 2 classes, smoothing 1
    prior = MetadataPrior(smoothing=1.0).fit(
        np.array([0, 0, 1, 1]), np.array(["forest", "forest", "forest", "meadow"]), 2
    )
    # p(k|forest) = [(2+1)/(3+2), (1+1)/(3+2)] = [0.6, 0.4]; p(k) = [(2+1)/6, (2+1)/6] = [0.5, 0.5]
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.3, 0.7]])
    out = prior.apply(probs, np.array(["forest", "desert", ""]))
    np.testing.assert_allclose(out[0], [0.6, 0.4])  # 0.5*1.2, 0.5*0.8, renormalised
    np.testing.assert_allclose(out[1], [0.5, 0.5])  # unseen value: unchanged
    np.testing.assert_allclose(out[2], [0.3, 0.7])  # missing value: unchanged
    fused = metadata_fusion(np.log(probs[:1]), np.array(["forest"]), prior)
    assert fused.pred.tolist() == [0] and fused.conf[0] == pytest.approx(0.6)


def test_metadata_alignment_and_errors():
    ids = np.array(["a", "b"])
    np.testing.assert_array_equal(align_metadata(ids, {"b": 3, "a": None}), ["", "3"])
    np.testing.assert_array_equal(align_metadata(ids, ["x", "y"]), ["x", "y"])
    with pytest.raises(ValueError, match="1 of 2 sample ids have no 'habitat'"):
        align_metadata(ids, {"a": 1}, "habitat")
    with pytest.raises(ValueError, match="3 values for 2 samples"):
        align_metadata(ids, [1, 2, 3])
    with pytest.raises(ValueError, match="has no metadata"):
        align_metadata(ids, None, "habitat")
    recs = [
        types.SimpleNamespace(image_id="a", metadata={}),
        types.SimpleNamespace(image_id="b", metadata={}),
    ]
    with pytest.raises(ValueError, match="no record carries metadata 'month'"):
        metadata_from_records(recs, "month")
    recs[0].metadata["month"] = 5
    assert metadata_from_records(recs, "month") == {"a": 5}


def topk_files():
    # 2 samples, 4 classes; FULL top-2: sample s0 -> [2, 0], s1 -> [1, 3]
    full = LogitsFile(
        ids=["s0", "s1"], labels=[0, 3],
        logits=np.array([[3.0, 0.0, 4.0, 1.0], [0.0, 5.0, 1.0, 2.0]]),
    )  # fmt: skip
    # candidate-prompted FG logits: one row per (sample, candidate); only entry i_j counts
    fg_rows = {
        ("s0", 2): [9, 9, 1.0, 9],
        ("s0", 0): [6.0, 9, 9, 9],
        ("s1", 1): [9, 0.5, 9, 9],
        ("s1", 3): [9, 9, 9, 7.0],
    }
    fg = LogitsFile(
        ids=[k[0] for k in fg_rows], labels=[0, 0, 3, 3],
        logits=np.array(list(fg_rows.values())), candidates=[k[1] for k in fg_rows],
    )  # fmt: skip
    bg_rows = {
        ("s0", 2): [0, 0, 8.0, 0],
        ("s0", 0): [0.0, 0, 0, 0],
        ("s1", 1): [0, 8.0, 0, 0],
        ("s1", 3): [0, 0, 0, 0.0],
    }
    bg = LogitsFile(
        ids=[k[0] for k in bg_rows], labels=[0, 0, 3, 3],
        logits=np.array(list(bg_rows.values())), candidates=[k[1] for k in bg_rows],
    )  # fmt: skip
    return full, fg, bg


def test_topk_fusion_eq5_hand_computed():
    full, fg, bg = topk_files()
    res = topk_fusion(full, fg, bg, k=2)
    assert res.candidates.tolist() == [[2, 0], [1, 3]]
    # z_FG: s0 -> (1.0, 6.0) -> class 0; s1 -> (0.5, 7.0) -> class 3 (the 9s are never read)
    assert res.preds["FG"].tolist() == [0, 3]
    assert res.preds["FULL"].tolist() == [2, 1]
    # z_BG: s0 -> (8, 0) -> 2; s1 -> (8, 0) -> 1
    assert res.preds["BG"].tolist() == [2, 1]
    # 2-way: s0 (4+1, 3+6) -> 0; s1 (5+0.5, 2+7) -> 3
    assert res.preds["FULL+FG"].tolist() == [0, 3]
    # 3-way: s0 (4+1+8, 3+6+0) -> 2; s1 (5+0.5+8, 2+7+0) -> 1
    assert res.preds["FULL+FG+BG"].tolist() == [2, 1]


def test_topk_missing_and_flagged_candidates():
    full, fg, bg = topk_files()
    # an older export dropped the row of an empty candidate: it warns, counts it as empty and
    # takes FULL's logit of that class (s1: z_FG = (0.5, z_FULL^(3) = 2.0) -> class 3)
    old = LogitsFile(ids=fg.ids[:3], labels=fg.labels[:3], logits=fg.logits[:3],
                     candidates=fg.candidates[:3])  # fmt: skip
    with pytest.warns(UserWarning, match="lack 1 .* rows.*first: \\[\\('s1', 3\\)\\]"):
        res = topk_fusion(full, old, k=2)
    assert res.preds["FG"].tolist() == [0, 3] and res.missing == 1
    assert res.empty.tolist() == [[False, False], [False, True]]
    assert res.fallback.tolist() == [False, False]
    # rows flagged fallback (FG/BG = the full image) are used as they are; a sample whose
    # candidates are all empty gets FULL's prediction with fallback_to_full
    flagged = LogitsFile(ids=fg.ids, labels=fg.labels, logits=fg.logits, candidates=fg.candidates,
                         fallback=[True, True, False, False])  # fmt: skip
    kept = topk_fusion(full, flagged, bg, k=2)
    assert kept.preds["FG"].tolist() == [0, 3] and kept.fallback.tolist() == [True, False]
    fell = topk_fusion(full, flagged, bg, k=2, fallback_to_full=True)
    for variant in ("FG", "FULL+FG", "BG", "FULL+FG+BG"):
        assert fell.preds[variant][0] == 2  # FULL's top-1 for s0
        assert fell.preds[variant][1] == kept.preds[variant][1]
    assert nonempty_candidates(flagged).tolist() == [0, 2] and exported_k(flagged) == 2
    assert nonempty_candidates(old).tolist() == [2, 1]


def test_topk_errors():
    full, fg, _ = topk_files()
    plain = LogitsFile(ids=["s0", "s1"], labels=[0, 3], logits=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="carries no candidate class"):
        topk_fusion(full, plain, k=2)
    with pytest.raises(ValueError, match="k must be in"):
        topk_fusion(full, fg, k=5)


def test_sample_report_says_who_decided():
    z1 = np.log(np.array([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.4, 0.3, 0.3]]))
    z2 = np.log(np.array([[0.1, 0.5, 0.4], [0.1, 0.1, 0.8], [0.1, 0.3, 0.6]]))
    pair = LogitsPair(
        ids=np.array(["a", "b", "c"]),
        labels=np.array([0, 2, 1]),
        z1=z1,
        z2=z2,
        groups=np.array(["g", "g", "h"]),
    )
    df = report.sample_report(pair, max_conf(z1, z2), "FG", "BG", ["x", "y", "z"])
    assert df.decided_by.tolist() == ["FG", "BG", "BG"]
    assert df.fused_name.tolist() == ["x", "z", "z"] and df.correct.tolist() == [True, True, False]
    np.testing.assert_allclose(df.conf_FG, [0.7, 0.5, 0.4])
    # averaging: row 0 -> 0 (FG's), row 1 -> 2 (BG's), row 2 (0.25, 0.3, 0.45) -> 2 (BG's)
    avg = report.sample_report(pair, ts_average(z1, z2), "FG", "BG")
    assert avg.decided_by.tolist() == ["FG", "BG", "BG"]
    same = report.sample_report(pair, ts_average(z1, z1), "FG", "BG")
    assert same.decided_by.tolist()[0] == "FG"


def test_weights_table_and_plot(tmp_path):
    t = report.weights_table(np.array([1.0, 0.2, 0.0]), np.array([0.0, 0.6, 0.0]), ["a", "b", "c"])
    np.testing.assert_allclose(t.share1, [1.0, 0.25, 0.5])
    path = plot_weights(t, tmp_path / "w.png", "FG", "BG")
    assert path.is_file() and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="same shape"):
        report.weights_table(np.ones(2), np.ones(3))
