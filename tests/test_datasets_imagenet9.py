"""ImageNet9 on a fake copy of the backgrounds-challenge layout (tests/data/imagenet9/make_fake.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from occam_l2r.data.datasets.imagenet9 import ImageNet9

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("fake_in9", HERE / "data/imagenet9/make_fake.py")
fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake)


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
