"""StanfordDogs on a fake copy of the original layout (tests/data/stanford_dogs/make_fake.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import scipy.io

from occam_l2r.data.datasets.stanford_dogs import StanfordDogs
from tests.conftest import load_fake

fake = load_fake("stanford_dogs")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dogs")
    fake.make_fake(path)
    return path


def test_fake_lists_have_the_matlab_cell_layout(root: Path) -> None:
    mat = scipy.io.loadmat(str(root / "train_list.mat"))
    assert mat["file_list"].shape == (9, 1)
    assert mat["file_list"][0, 0][0] == "n02085620-Chihuahua/n02085620_1001.jpg"


def test_records(root: Path) -> None:
    ds = StanfordDogs(root=str(root))
    assert ds.class_names == ["Chihuahua", "Japanese spaniel", "Maltese dog"]
    assert ds.wnids == ["n02085620", "n02085782", "n02085936"]
    assert ds.val_split is None and ds.test_splits == ["test"]
    train, test = ds.records("train"), ds.records("test")
    assert len(train) == 9 and len(test) == 6
    assert [r.label for r in test] == [0, 0, 1, 1, 2, 2]
    rec = train[0]
    assert rec.image_id == "Images/n02085620-Chihuahua/n02085620_1001.jpg"
    assert rec.metadata == {
        "wnid": "n02085620",
        "annotation": "Annotation/n02085620-Chihuahua/n02085620_1001",
    }
    assert ds.read_image(rec).shape == (*fake.IMAGE_HW, 3)


def test_boxes_and_box_masks(root: Path) -> None:
    ds = StanfordDogs(root=str(root))
    rec = ds.records("train")[0]  # odd number: two dogs
    assert ds.gt_boxes(rec) == [[2.0, 3.0, 12.0, 15.0], [15.0, 1.0, 28.0, 10.0]]
    masks = ds.gt_masks(rec)
    assert len(masks) == 2 and all(m.shape == fake.IMAGE_HW for m in masks)
    assert masks[0].sum() == 11 * 13 and masks[0][3, 2] and not masks[0][2, 2]
    assert len(ds.gt_masks(ds.records("train")[1])) == 1


def test_lists_subfolder(tmp_path: Path) -> None:
    fake.make_fake(tmp_path, lists_subfolder=True)
    assert len(StanfordDogs(root=str(tmp_path)).records("test")) == 6


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lists.tar"):
        StanfordDogs(root=str(tmp_path / "nowhere"))
    fake.make_fake(tmp_path)
    (tmp_path / "test_list.mat").unlink()
    with pytest.raises(FileNotFoundError, match="test_list.mat"):
        StanfordDogs(root=str(tmp_path))
    (tmp_path / "test_list.mat").write_bytes(b"")
    with pytest.raises(ValueError, match="re-extract lists.tar"):
        StanfordDogs(root=str(tmp_path))
