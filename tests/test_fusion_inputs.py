"""Clear errors for bad fusion inputs: NaN/inf logits, mismatched ids, class counts, labels."""

from __future__ import annotations

import numpy as np
import pytest

from occam_l2r.fusion.inputs import align_pair, load_logits, resolve_logits_path
from occam_l2r.logits import LogitsFile


def lf(ids, logits, labels=None, **kw) -> LogitsFile:
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.zeros(len(ids), int) if labels is None else labels
    return LogitsFile(ids=np.array(ids), labels=labels, logits=logits, **kw)


def test_nan_and_inf_logits_name_the_file(tmp_path):
    z = np.zeros((3, 2), np.float32)
    z[1, 0] = np.nan
    z[2, 1] = np.inf
    path = lf(["a", "b", "c"], z).save(tmp_path / "run" / "logits" / "val.npz")
    with pytest.raises(ValueError, match=r"val\.npz: 2 of 3 samples have NaN/inf logits") as err:
        load_logits(path)
    assert "'b'" in str(err.value) and "predict" in str(err.value)


def test_mismatched_ids_say_how_many_and_which():
    a = lf(["x1", "x2", "x3", "x4"], np.zeros((4, 2)))
    b = lf(["x1", "x2", "y3"], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="sample ids differ") as err:
        align_pair(a, b, "FG_C", "BG_S")
    msg = str(err.value)
    assert "2 only in FG_C" in msg and "'x3'" in msg and "1 only in BG_S" in msg and "'y3'" in msg


def test_different_class_counts():
    with pytest.raises(ValueError, match="FG has 3 classes, BG has 4"):
        align_pair(lf(["a"], np.zeros((1, 3))), lf(["a"], np.zeros((1, 4))), "FG", "BG")


def test_same_ids_in_another_order_are_aligned():
    a = lf(["a", "b", "c"], np.eye(3), labels=np.array([0, 1, 2]))
    b = lf(["c", "a", "b"], 2 * np.eye(3)[[2, 0, 1]], labels=np.array([2, 0, 1]))
    pair = align_pair(a, b)
    np.testing.assert_array_equal(pair.z2, 2 * np.eye(3))
    assert pair.labels.tolist() == [0, 1, 2]


def test_label_clash_and_duplicates():
    a = lf(["a", "b"], np.zeros((2, 2)), labels=np.array([0, 1]))
    b = lf(["a", "b"], np.zeros((2, 2)), labels=np.array([0, 0]))
    with pytest.raises(ValueError, match="labels disagree .* for 1 samples"):
        align_pair(a, b)
    dup = lf(["a", "a"], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="duplicated sample ids"):
        align_pair(dup, dup)


def test_resolve_logits_path(tmp_path):
    path = lf(["a"], np.zeros((1, 2))).save(tmp_path / "run" / "logits" / "val.npz")
    assert resolve_logits_path(tmp_path / "run", "val") == path
    assert resolve_logits_path(tmp_path / "run" / "logits", "val") == path
    with pytest.raises(FileNotFoundError, match="no logits for split 'test'.*predict"):
        resolve_logits_path(tmp_path / "run", "test")


def test_fuse_checks_each_runs_declared_view(tmp_path):
    """A run listed under a view its logits files do not record is one clear error naming the
    run folder and both views; candidate-prompted files may be declared as ``<view>_topk``."""
    import yaml

    from occam_l2r.cli import main
    from occam_l2r.fusion.inputs import LogitsCache, LogitsViewError
    from occam_l2r.fusion.synthetic import write_synthetic_runs

    runs = write_synthetic_runs(tmp_path / "runs", num_classes=3, seeds=1,
                                sizes={"val": 30, "test": 30})  # fmt: skip
    swapped = {"FULL": runs["FULL"], "FG_C": runs["BG_S"]}  # the BG_S run listed as FG_C
    cfg = {"runs": swapped, "output_dir": str(tmp_path / "out"), "methods": ["max_conf"]}
    (tmp_path / "fuse.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(LogitsViewError) as err:
        main(["fuse", "--config", str(tmp_path / "fuse.yaml")])
    msg = str(err.value)
    assert runs["BG_S"][0] in msg and "'FG_C'" in msg and "records view 'BG_S'" in msg

    topk = lf(["a", "a"], np.zeros((2, 3)), candidates=[0, 1], view="FG_C", split="val")
    topk.save(tmp_path / "topk" / "logits" / "val.npz")
    cache = LogitsCache(views={str(tmp_path / "topk"): ["FG_C_topk"]})
    assert cache.get(tmp_path / "topk", "val").view == "FG_C"
    cache = LogitsCache(views={str(tmp_path / "topk"): ["BG_S_topk"]})
    with pytest.raises(LogitsViewError, match="records view 'FG_C'"):
        cache.get(tmp_path / "topk", "val")
