"""ImageNet9 on a fake copy of the backgrounds-challenge layout (tests/data/imagenet9/make_fake.py),
and 1000-way ImageNet classifiers scored on it through in_to_in9.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from occam_l2r.data.datasets._layout import DatasetLayoutError, DatasetNotFoundError
from occam_l2r.data.datasets.imagenet import imagenet_mapped_accuracy
from occam_l2r.data.datasets.imagenet9 import ImageNet9
from tests.conftest import load_fake

fake = load_fake("imagenet9")


def test_variations_masks_and_train(tmp_path: Path) -> None:
    fake.make_fake(tmp_path, per_class=2)
    ds = ImageNet9(root=str(tmp_path))
    assert ds.class_names[2] == "wheeled vehicle" and ds.num_classes == 9
    assert ds.test_splits == ["original", "mixed_rand", "only_fg"]
    rec = ds.records("mixed_rand")[2]
    assert (rec.image_id, rec.label, rec.group) == (
        "mixed_rand/val/01_bird/n01000000_0.JPEG",
        1,
        "mixed_rand",
    )
    assert ds.read_image(rec).shape == (*fake.IMAGE_HW, 3)
    assert len(ds.all_records()) == 3 * 18
    original = ds.records("original")[5]
    (mask,) = ds.gt_masks(original)
    assert mask.shape == fake.IMAGE_HW and mask.sum() == 60
    with pytest.raises(ValueError, match="'original' split only"):
        ds.gt_masks(rec)
    with pytest.raises(KeyError, match="known"):
        ds.records("train")
    trained = ImageNet9(root=str(tmp_path), train_variation="in9l")
    assert len(trained.records("train")) == 18 and trained.records("train")[0].group == "in9l"


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="backgrounds_challenge"):
        ImageNet9(root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no variation folder"):
        ImageNet9(root=str(tmp_path))
    fake.make_fake(tmp_path)
    with pytest.raises(FileNotFoundError, match="mixed_same/train"):
        ImageNet9(root=str(tmp_path), train_variation="mixed_same")


def test_in_to_in9_scores_1000_way_logits(tmp_path: Path) -> None:
    fake.make_fake(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="in_to_in9.json"):
        _ = ImageNet9(root=str(tmp_path)).in_to_in9
    fake.write_in_to_in9(tmp_path / "in_to_in9.json")
    ds = ImageNet9(root=str(tmp_path))
    assert ds.in_to_in9 == fake.IN_TO_IN9 == ds.imagenet_to_class  # the -1 entries left out
    recs = ds.records("mixed_rand")  # labels 0..8, one image each
    logits = np.zeros((len(recs), 1000))
    inverse = {c: i for i, c in sorted(fake.IN_TO_IN9.items(), reverse=True)}
    for row, rec in enumerate(recs):
        logits[row, inverse[rec.label]] = 1.0  # a 1000-way prediction of the right IN-9 class
    labels = [r.label for r in recs]
    assert imagenet_mapped_accuracy(logits, labels, ds.in_to_in9) == 1.0
    logits[0] = 0.0
    logits[0, 999] = 1.0  # an ImageNet class of no IN-9 class: wrong
    logits[1] = 0.0
    logits[1, 7] = 1.0  # a bird for a bird (label 1 at row 1): right
    assert imagenet_mapped_accuracy(logits, labels, ds.in_to_in9) == pytest.approx(8 / 9)
    other = tmp_path / "elsewhere.json"
    other.write_text('{"5": 12}')
    with pytest.raises(DatasetLayoutError, match="IN-9 classes 0-8"):
        _ = ImageNet9(root=str(tmp_path), in_to_in9=str(other)).in_to_in9
    other.write_text("[1, 2]")
    with pytest.raises(DatasetLayoutError, match="not a JSON object"):
        _ = ImageNet9(root=str(tmp_path), in_to_in9=str(other)).in_to_in9
