"""MOVi-C / MOVi-E on a fake copy of SlotDiffusion's export (tests/data/movi/make_fake.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from occam_l2r.data.datasets._layout import DatasetLayoutError, DatasetNotFoundError
from occam_l2r.data.datasets.movi import MOVi
from occam_l2r.errors import UserError
from occam_l2r.gt_store import build_gt_store
from occam_l2r.store import SegmentationStore
from tests.conftest import load_fake

fake = load_fake("movi")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("movi")
    fake.make_fake(base, "C")
    return base


def test_records_frames_and_instance_masks(root: Path) -> None:
    ds = MOVi(root=str(root), level="C")
    assert (ds.name, ds.class_names, ds.train_split, ds.val_split) == ("movi_c", [], None, None)
    assert ds.test_splits == ["test"]
    records = ds.records("test")
    assert len(records) == fake.VIDEOS * fake.FRAMES
    assert [r.image_id for r in records] == [
        f"MOVi-C/validation/{v:08d}/{t:06d}.jpg"
        for v in range(fake.VIDEOS)
        for t in range(fake.FRAMES)
    ]
    rec = records[fake.FRAMES + 1]  # video 1, frame 1
    assert (rec.label, rec.split, rec.metadata) == (-1, "test", {"video": "00000001", "frame": 1})
    assert rec.mask_path == "MOVi-C/validation/00000001/000001_mask.png"
    assert ds.read_image(rec).shape == (*fake.SIZE, 3)
    masks = ds.gt_masks(rec)
    ids = fake.instance_ids(1, 1)
    assert len(masks) == fake.OBJECTS  # the background (id 0) is not an instance
    for k, mask in enumerate(masks, start=1):
        assert mask.dtype == bool and mask.shape == fake.SIZE
        assert np.array_equal(mask, ids == k)
    assert ds.has_gt_mask(rec)


def test_root_may_be_the_level_folder_and_frames_subsample(root: Path) -> None:
    ds = MOVi(root=str(root / "MOVi-C"), frames=[0, 2])
    ids = [r.image_id for r in ds.records("test")]
    assert ids == ["validation/00000000/000000.jpg", "validation/00000000/000002.jpg",
                   "validation/00000001/000000.jpg", "validation/00000001/000002.jpg"]  # fmt: skip
    assert len(ds.gt_masks(ds.records("test")[0])) == fake.OBJECTS


def test_gt_store_keeps_every_instance_with_no_class(root: Path, tmp_path: Path) -> None:
    ds = MOVi(root=str(root))
    store = SegmentationStore(build_gt_store(ds, tmp_path / "gt", workers=1))
    seg = store[ds.records("test")[0].image_id]
    assert len(seg) == fake.OBJECTS and seg.label_ids.tolist() == [-1] * fake.OBJECTS
    assert np.array_equal(seg.mask(2), fake.instance_ids(0, 0) == 3)


def test_missing_root_level_and_subset(root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="SlotDiffusion") as err:
        MOVi(root=str(tmp_path / "nowhere")).records("test")
    assert str(tmp_path / "nowhere") in str(err.value)
    with pytest.raises(DatasetNotFoundError, match=r"MOVi-E: folder not found: .*MOVi-E.*MOVi-C"):
        MOVi(root=str(root), level="E").records("test")
    with pytest.raises(DatasetNotFoundError, match=r"test.*subsets present: \['validation'\]"):
        MOVi(root=str(root), subset="test").records("test")
    with pytest.raises(ValueError, match="level"):
        MOVi(root=str(root), level="D")  # type: ignore[arg-type]


def test_incomplete_export_names_the_missing_files(tmp_path: Path) -> None:
    fake.make_fake(tmp_path, "E", videos=2, frames=2)
    video = tmp_path / "MOVi-E" / "validation" / "00000001"
    (video / "000001_mask.png").unlink()
    (video / "000000.jpg").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        MOVi(root=str(tmp_path), level="E").records("test")
    message = str(err.value)
    assert isinstance(err.value, UserError) and "2 file(s)" in message
    assert str(video / "000001_mask.png") in message and str(video / "000000.jpg") in message
    with pytest.raises(DatasetNotFoundError, match="000005.jpg"):  # a frame asked for, not there
        MOVi(root=str(tmp_path), level="E", frames=[5]).records("test")


def test_wrong_layout(tmp_path: Path) -> None:
    (tmp_path / "MOVi-C" / "validation" / "video_a").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no video folders"):
        MOVi(root=str(tmp_path)).records("test")
    (tmp_path / "MOVi-C" / "validation" / "00000000").mkdir()
    (tmp_path / "MOVi-C" / "validation" / "00000000" / "notes.txt").write_text("x")
    with pytest.raises(DatasetLayoutError, match="holds no frames"):
        MOVi(root=str(tmp_path)).records("test")
