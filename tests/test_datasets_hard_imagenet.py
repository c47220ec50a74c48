"""HardImageNet on a fake copy of the original layout (tests/data/hard_imagenet/make_fake.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from occam_l2r.data.datasets.hard_imagenet import HardImageNet

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("fake_hin", HERE / "data/hard_imagenet/make_fake.py")
fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fake)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {k: str(v) for k, v in fake.make_fake(tmp_path_factory.mktemp("hin")).items()}


def test_records_and_masks(roots: dict[str, str]) -> None:
    ds = HardImageNet(root=roots["root"], mask_root=roots["mask_root"])
    assert ds.num_classes == 15
    assert ds.class_names[0] == "dog sled" and ds.class_names[3] == "ski"
    assert ds.imagenet_indices[0] == 537 and ds.wnids[0] == "n03218198"
    assert ds.val_split is None and ds.test_splits == ["test"]
    train, test = ds.records("train"), ds.records("test")
    assert len(train) == 9 and len(test) == 6
    assert sorted({r.label for r in train}) == [0, 3, 12]
    rec = train[0]
    assert rec.image_id == "train/n03218198/n03218198_101.JPEG"
    assert rec.metadata == {"wnid": "n03218198", "imagenet_index": 537}
    assert test[0].image_id.startswith("val/n03218198/ILSVRC2012_val_")
    for r in (rec, test[0]):
        assert ds.read_image(r).shape == (*fake.IMAGE_HW, 3)
        (mask,) = ds.gt_masks(r)
        assert mask.shape == fake.IMAGE_HW
        assert mask[8, 10] and not mask[0, 0] and not mask[15, 20]


def test_flat_val_and_extra_test_sets(tmp_path: Path) -> None:
    roots = fake.make_fake(tmp_path, flat_val=True)
    ds = HardImageNet(**{k: str(v) for k, v in roots.items()})
    assert ds.test_splits == ["test", "test_lt", "test_ct"]
    assert ds.records("test")[0].image_id.startswith("val/ILSVRC2012_val_")
    assert ds.read_image(ds.records("test")[0]).shape == (*fake.IMAGE_HW, 3)
    lt = ds.records("test_lt")
    assert [r.label for r in lt] == [0, 0, 12, 12]
    assert lt[0].image_id == "long_tail/n03218198/img0.jpg"
    assert ds.read_image(lt[0]).shape == (*fake.IMAGE_HW, 3)
    assert [r.label for r in ds.records("test_ct")] == [0, 0]
    with pytest.raises(ValueError, match="detector segmenter"):
        ds.gt_masks(lt[0])


def test_missing_roots(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="hardImageNet.zip"):
        HardImageNet(root=str(tmp_path), mask_root=str(tmp_path / "nowhere"))
    roots = fake.make_fake(tmp_path)
    ds = HardImageNet(root=str(tmp_path / "no_imagenet"), mask_root=str(roots["mask_root"]))
    with pytest.raises(FileNotFoundError, match="ILSVRC2012"):
        ds.records("train")
    bad = tmp_path / "bad_lt" / "not_a_class"
    bad.mkdir(parents=True)
    ds = HardImageNet(
        root=str(roots["root"]), mask_root=str(roots["mask_root"]), long_tail_root=str(bad.parent)
    )
    with pytest.raises(ValueError, match="not_a_class"):
        ds.records("train")
