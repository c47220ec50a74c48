"""The embedded spurious-background benchmark: layout, determinism, the tie rules, reuse."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest

from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from tests.conftest import TINY


def _digest(root):
    h = hashlib.sha1()
    for p in sorted(root.rglob("*.png")):
        h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_counts(tiny_synthetic_root):
    ds = SyntheticSpurious(root=str(tiny_synthetic_root), **TINY)
    assert (tiny_synthetic_root / "metadata.csv").is_file()
    counts = {
        s: len(ds.records(s)) for s in ["train", "val", "test_id", "test_shift", "test_random"]
    }
    assert counts == {"train": 24, "val": 8, "test_id": 8, "test_shift": 8, "test_random": 8}
    rec = ds.records("test_shift")[0]
    img = ds.read_image(rec)
    assert img.shape == (64, 80, 3) and img.dtype == np.uint8
    (mask,) = ds.gt_masks(rec)
    assert mask.shape == (64, 80) and 10 < mask.sum() < 36 * 36
    with open(tiny_synthetic_root / "metadata.csv") as fh:
        assert set(next(csv.reader(fh))) >= {"img_filename", "y", "split", "place", "mask_filename"}


def test_tie_rules(tiny_synthetic_root):
    ds = SyntheticSpurious(root=str(tiny_synthetic_root), **TINY)
    k = ds.num_classes
    for split, rule in [
        ("train", lambda y: y),
        ("val", lambda y: y),
        ("test_id", lambda y: y),
        ("test_shift", lambda y: (y + 1) % k),
    ]:
        for r in ds.records(split):
            assert r.metadata["place"] == rule(r.label), (split, r)
            assert r.group == ds.group_names[r.metadata["place"]]


def test_rho_breaks_the_tie_sometimes(tmp_path):
    ds = SyntheticSpurious(
        root=str(tmp_path / "r"), rho=0.5, train_per_class=20, val_per_class=1, test_per_class=1
    )
    ds.prepare()
    off = [r for r in ds.records("train") if r.metadata["place"] != r.label]
    assert 0.25 < len(off) / 80 < 0.75


def test_deterministic_and_reused(tmp_path, tiny_synthetic_root):
    other = SyntheticSpurious(root=str(tmp_path / "again"), **TINY)
    other.prepare()
    assert _digest(tmp_path / "again") == _digest(tiny_synthetic_root)
    before = (tmp_path / "again" / "metadata.csv").stat().st_mtime_ns
    other.prepare()  # already there: not regenerated
    assert (tmp_path / "again" / "metadata.csv").stat().st_mtime_ns == before


def test_parameter_mismatch_and_bad_values(tmp_path, tiny_synthetic_root):
    with pytest.raises(ValueError, match="generated with"):
        SyntheticSpurious(root=str(tiny_synthetic_root), seed=3, **TINY).prepare()
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSpurious(num_classes=11)
    with pytest.raises(ValueError, match="rho"):
        SyntheticSpurious(rho=1.5)
    with pytest.raises(FileNotFoundError, match="not generated yet"):
        SyntheticSpurious(root=str(tmp_path / "none")).records("train")
