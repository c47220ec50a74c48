"""CounterAnimal on a fake copy of the LAION-final layout (tests/data/counteranimal/make_fake.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from occam_l2r.data.datasets.counteranimal import CounterAnimal
from tests.conftest import load_fake

fake = load_fake("counteranimal")


def test_records(tmp_path: Path) -> None:
    base = fake.make_fake(tmp_path)
    ds = CounterAnimal(root=str(tmp_path))
    assert ds.class_names == ["brambling", "black swan", "lion"]  # ascending ImageNet index
    assert ds.imagenet_indices == ds.imagenet_class_indices == [10, 100, 291]
    assert ds.imagenet_to_class == {10: 0, 100: 1, 291: 2}
    assert ds.test_splits == ["common", "counter"] and ds.val_split is None
    common, counter = ds.records("common"), ds.records("counter")
    assert Counter(r.label for r in common) == {0: 2, 1: 3, 2: 2}
    assert Counter(r.label for r in counter) == {0: 1, 1: 2, 2: 2}
    rec = counter[0]
    assert rec.image_id == "LAION-final/10 brambling/counter-sky/000.jpg"
    assert rec.group == "counter"
    assert rec.metadata == {"imagenet_index": 10, "background": "sky"}
    assert ds.read_image(rec).shape == (*fake.IMAGE_HW, 3)
    assert len(ds.all_records()) == 12
    assert CounterAnimal(root=str(base)).root == tmp_path
    with pytest.raises(KeyError, match="known"):
        ds.records("train")


def test_missing_root_and_bad_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="LAION-final"):
        CounterAnimal(root=str(tmp_path))
    (tmp_path / "LAION-final" / "salamander").mkdir(parents=True)
    with pytest.raises(ValueError, match="ImageNet index"):
        CounterAnimal(root=str(tmp_path))
