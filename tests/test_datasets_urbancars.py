"""UrbanCars on a fake copy of the layout Whac-A-Mole's generator writes
(tests/data/urbancars/make_fake.py): splits, the 8 groups, the car masks."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from occam_l2r.data.datasets._layout import DatasetNotFoundError
from occam_l2r.data.datasets.urbancars import UrbanCars
from tests.conftest import load_fake

fake = load_fake("urbancars")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake.make_fake(tmp_path_factory.mktemp("uc"))


def test_records_groups_and_masks(root: Path) -> None:
    ds = UrbanCars(root=str(root.parent))  # the folder holding urbancars/ works too
    assert ds.root == root and ds.class_names == ["urban car", "country car"]
    assert (
        len(ds.group_names) == 8
        and ds.group_names[5] == "obj-country_bg-urban_co_occur_obj-country"
    )
    assert (ds.train_split, ds.val_split, ds.test_splits) == ("train", "val", ["test"])
    sizes = {s: len(ds.records(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 12, "val": 8, "test": 16}
    train = Counter(r.group for r in ds.records("train"))
    assert train["obj-urban_bg-urban_co_occur_obj-urban"] == 3
    assert train["obj-urban_bg-country_co_occur_obj-country"] == 1
    assert Counter(r.group for r in ds.records("test")) == {g: 2 for g in ds.group_names}
    rec = next(r for r in ds.records("test") if r.group == ds.group_names[6])
    assert (rec.label, rec.metadata["bg"], rec.metadata["co_occur_obj"]) == (1, 1, 0)
    assert (
        rec.image_id
        == "bg-0.5_co_occur_obj-0.5/test/obj-country_bg-country_co_occur_obj-urban/000.jpg"
    )
    assert rec.metadata["co_occur_obj_mask"].endswith("000_co_occur_obj_mask.png")
    assert ds.read_image(rec).shape == (*fake.IMAGE_HW, 3)
    (mask,) = ds.gt_masks(rec)
    assert mask.shape == fake.IMAGE_HW and mask.sum() == 12 * 16 and not mask[5, 10]


def test_missing_parts(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="Whac-A-Mole"):
        UrbanCars(root=str(tmp_path / "nowhere"))
    copy = tmp_path / "urbancars"
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "bg-0.5_co_occur_obj-0.5" / "val")
    ds = UrbanCars(root=str(copy))
    assert ds.val_split is None and ds.train_split == "train"  # the DataModule holds val out
    (
        copy / "bg-0.95_co_occur_obj-0.95/train/obj-urban_bg-urban_co_occur_obj-urban/000_mask.png"
    ).unlink()
    rec = ds.records("train")[0]
    with pytest.raises(DatasetNotFoundError, match="000_mask.png"):
        ds.gt_masks(rec)
    gone = copy / "bg-0.5_co_occur_obj-0.5/test/obj-urban_bg-country_co_occur_obj-urban"
    shutil.rmtree(gone)
    with pytest.raises(DatasetNotFoundError, match="obj-urban_bg-country_co_occur_obj-urban"):
        UrbanCars(root=str(copy)).records("test")
    shutil.rmtree(copy / "bg-0.5_co_occur_obj-0.5")
    with pytest.raises(DatasetNotFoundError, match="test"):
        UrbanCars(root=str(copy))
