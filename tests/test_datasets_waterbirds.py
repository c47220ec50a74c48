"""Waterbirds on a fake copy of the original layout (tests/data/waterbirds/make_fake.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from occam_l2r.data.datasets.waterbirds import Waterbirds
from tests.conftest import load_fake

fake = load_fake("waterbirds")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wb")
    fake.make_fake(
        base / "waterbird_complete95_forest2water2", segmentations=base / "segmentations"
    )
    return base / "waterbird_complete95_forest2water2"


def test_records_and_groups(root: Path) -> None:
    ds = Waterbirds(root=str(root))
    assert ds.class_names == ["landbird", "waterbird"]
    assert ds.group_names == [
        "landbird_on_land",
        "landbird_on_water",
        "waterbird_on_land",
        "waterbird_on_water",
    ]
    assert (len(ds.records("train")), len(ds.records("val")), len(ds.records("test"))) == (8, 4, 4)
    assert Counter(r.group for r in ds.records("train")) == {g: 2 for g in ds.group_names}
    rec = ds.records("train")[0]
    assert rec.image_id.startswith("001.Black_footed_Albatross/")
    assert (rec.label, rec.group) == (1, "waterbird_on_land")
    assert rec.metadata == {"img_id": 1, "place": 0, "place_filename": "/b/bamboo_forest/x.jpg"}
    assert ds.read_image(rec).shape == (*fake.IMAGE_HW, 3)
    water = next(r for r in ds.records("test") if r.label == 0 and r.metadata["place"] == 1)
    assert water.group == "landbird_on_water"


def test_cub_segmentations(root: Path) -> None:
    rec = Waterbirds(root=str(root)).records("val")[0]
    with pytest.raises(ValueError, match="segmentations_root"):
        Waterbirds(root=str(root)).gt_masks(rec)
    ds = Waterbirds(root=str(root), segmentations_root=str(root.parent / "segmentations"))
    (mask,) = ds.gt_masks(rec)
    assert mask.shape == fake.IMAGE_HW and mask.sum() == 8 * 10 and not mask[3, 6]


def test_missing_root_and_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="group_DRO"):
        Waterbirds(root=str(tmp_path / "nowhere")).records("train")
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        Waterbirds(root=str(tmp_path)).records("train")
