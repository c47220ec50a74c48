"""FungiTasticMini on a fake copy of the original layout (tests/data/fungitastic/make_fake.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from occam_l2r.data.datasets.fungitastic import FungiTasticMini, decode_fungitastic_rle
from tests.conftest import load_fake

fake = load_fake("fungitastic")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fungi") / "FungiTastic"
    fake.make_fake(path)
    return path


def test_records_per_split(root: Path) -> None:
    ds = FungiTasticMini(root=str(root))
    assert ds.class_names == fake.SPECIES
    assert ds.num_classes == 3
    assert (ds.train_split, ds.val_split, ds.test_splits) == ("train", "val", ["test"])
    assert len(ds.records("train")) == 9
    assert len(ds.records("val")) == 4
    assert len(ds.records("test")) == 4
    assert {r.label for r in ds.records("val")} == {0, 1}
    assert {r.label for r in ds.records("test")} == {1, 2}
    rec = ds.records("train")[0]
    assert rec.image_id == "FungiTastic-Mini/train/500p/train-0-0.JPG"
    assert rec.group == ""
    assert rec.metadata["habitat"] is None  # a missing CSV cell becomes None
    assert rec.metadata["month"] == 8
    assert rec.metadata["substrate"] == "soil"
    assert "filename" not in rec.metadata and "category_id" not in rec.metadata
    assert ds.read_image(rec).shape == (*fake.IMAGE_HW, 3)
    assert len(ds.all_records()) == 17


def test_masks_union_and_parts(root: Path) -> None:
    ds = FungiTasticMini(root=str(root))
    for split in ("train", "val"):  # list-valued and string-valued rle cells
        rec = next(r for r in ds.records(split) if ds.has_gt_mask(r))
        (mask,) = ds.gt_masks(rec)
        assert mask.dtype == bool and mask.shape == fake.IMAGE_HW
        # cap rows 4:20 x cols 8:40 and stem 20:44 x 20:28 at twice the size
        assert mask[5, 10] and mask[15, 12] and not mask[0, 0] and not mask[20, 2]
    parts = FungiTasticMini(root=str(root), mask_mode="parts")
    rec = parts.records("val")[0]
    masks = parts.gt_masks(rec)
    assert parts.gt_mask_labels(rec) == ["cap", "stem"]
    assert [m.shape for m in masks] == [fake.IMAGE_HW] * 2
    assert masks[0].sum() == 8 * 16 and masks[1].sum() == 12 * 4


def test_no_mask_errors(root: Path) -> None:
    ds = FungiTasticMini(root=str(root))
    unannotated = ds.records("train")[1]
    assert not ds.has_gt_mask(unannotated)
    with pytest.raises(ValueError, match="no ground-truth mask"):
        ds.gt_masks(unannotated)
    with pytest.raises(ValueError, match="train and val only"):
        ds.gt_masks(ds.records("test")[0])


def test_rle_decoder_follows_repo() -> None:
    # 2 background, 3 foreground, rest background; last four values are the bbox
    mask = decode_fungitastic_rle("[2, 3, 1, 0, 0, 1, 1]", 2, 3)
    assert mask.tolist() == [[False, False, True], [True, True, False]]
    runs = fake.rle_encode(mask)
    assert np.array_equal(decode_fungitastic_rle(runs, 2, 3), mask)


def test_missing_root_and_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="download.py"):
        FungiTasticMini(root=str(tmp_path / "nowhere"))
    root = tmp_path / "FungiTastic"
    fake.make_fake(root, with_masks=False)
    (root / "metadata/FungiTastic-Mini/FungiTastic-Mini-ClosedSet-Test.csv").unlink()
    with pytest.raises(FileNotFoundError, match="FungiTastic-Mini-Test.csv"):
        FungiTasticMini(root=str(root))


def test_missing_images_and_masks(tmp_path: Path) -> None:
    root = tmp_path / "FungiTastic"
    fake.make_fake(root, with_masks=False)
    ds = FungiTasticMini(root=str(root))
    with pytest.raises(FileNotFoundError, match="masks.zip"):
        ds.gt_masks(ds.records("val")[0])
    shutil.rmtree(root / "FungiTastic-Mini/test")
    with pytest.raises(FileNotFoundError, match="split 'test'"):
        FungiTasticMini(root=str(root)).records("train")
    with pytest.raises(FileNotFoundError, match="train/300p.*image_size_folder 500p"):
        FungiTasticMini(root=str(root), image_size_folder="300p").records("train")
