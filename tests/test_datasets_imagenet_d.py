"""ImageNet-D on a fake copy of its release layout (tests/data/imagenet_d/make_fake.py), and its
ImageNet-1k index sets (a 1000-way prediction is right if it is any index of the class)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from occam_l2r.data.datasets._layout import DatasetLayoutError, DatasetNotFoundError
from occam_l2r.data.datasets.imagenet import imagenet_mapped_accuracy
from occam_l2r.data.datasets.imagenet_d import ImageNetD
from tests.conftest import load_fake

fake = load_fake("imagenet_d")


def test_records_and_classes(tmp_path: Path) -> None:
    base = fake.make_fake(tmp_path)
    ds = ImageNetD(root=str(base))
    assert ds.num_classes == 113 and ds.test_splits == ["background"]
    assert ds.train_split is None and ds.group_names == ["background"]
    assert ds.class_names[0] == "alarm clock" and ds.class_names[8] == "binder (closed)"
    assert ds.class_names[112] == "wok" and ds.imagenet_class_indices is None
    recs = ds.records("background")
    assert Counter(r.label for r in recs) == {0: 2, 16: 3, 112: 1}
    assert recs[0].image_id == "background/alarm_clock/background_0.png"
    assert ds.read_image(recs[0]).shape == (*fake.IMAGE_HW, 3)
    both = ImageNetD(root=str(base), subsets=["background", "texture"])
    assert both.test_splits == ["background", "texture"] and len(both.all_records()) == 12
    assert {r.group for r in both.records("texture")} == {"texture"}


def test_imagenet_index_sets() -> None:
    ds_cls = ImageNetD
    mapping = ds_cls.imagenet_to_class.fget(None)  # a class-level table: no data needed
    assert len(mapping) == 125 and mapping[423] == mapping[559] == mapping[765] == 16  # chair
    logits = np.zeros((3, 1000))
    logits[[0, 1, 2], [765, 409, 0]] = 1.0  # rocking chair, alarm clock, tench (no class)
    assert imagenet_mapped_accuracy(logits, [16, 0, 0], mapping) == pytest.approx(2 / 3)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="ImageNet-D.tar"):
        ImageNetD(root=str(tmp_path))
    base = fake.make_fake(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="material"):
        ImageNetD(root=str(base), subsets=["material"])
    with pytest.raises(ValueError, match="among"):
        ImageNetD(root=str(base), subsets=["sketch"])
    (base / "background" / "armchair").mkdir()
    with pytest.raises(DatasetLayoutError, match="armchair"):
        ImageNetD(root=str(base)).records("background")
