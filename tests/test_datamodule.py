"""The ViewDataModule: views through the store, loaders per split, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.records import ImageReadError, Record, RecordDataset
from tests.conftest import TINY


def _dm(root, **kw) -> ViewDataModule:
    args = {"view": "FG_C", "image_size": 32, "batch_size": 4, "num_workers": 0} | kw
    return ViewDataModule(SyntheticSpurious(root=str(root), **TINY), **args)


@pytest.fixture
def root_copy(synthetic_copy):
    return synthetic_copy


def test_loaders_per_split(root_copy):
    dm = _dm(root_copy)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.uint8
    assert set(batch) == {
        "image", "label", "group", "index", "candidate", "fallback", "id", "group_name"
    }  # fmt: skip
    # every batch carries its sample ids (image paths relative to the dataset root)
    ids = {r.image_id for r in dm.splits["train"]}
    assert len(batch["id"]) == 4 and set(batch["id"]) <= ids
    assert dm.test_split_names == ["test_id", "test_shift", "test_random"]
    assert len(dm.test_dataloader()) == 3 and len(dm.predict_dataloader()) == 5
    assert (root_copy / "segmentations" / "gt" / "manifest.json").is_file()
    assert batch["fallback"].sum() == 0


def test_fg_view_is_the_object(root_copy):
    dm = _dm(root_copy, view="FG_M")
    dm.prepare_data()
    dm.setup("test")
    ds = dm._dataset("test_id", train=False)
    img, fallback = ds.render(0)
    assert fallback is None and img.shape[0] == img.shape[1] and img.shape[0] <= 36


def test_missing_from_store_error_or_fallback(root_copy):
    dm = _dm(root_copy)
    dm.prepare_data()
    victim = dm.dataset.records("test_shift")[0].image_id
    from occam_l2r.store import SegmentationStore, StoreWriter

    kept = [
        SegmentationStore(root_copy / "segmentations" / "gt")[i]
        for i in SegmentationStore(root_copy / "segmentations" / "gt").ids()
        if i != victim
    ]
    shutil.rmtree(root_copy / "segmentations" / "gt")
    w = StoreWriter(
        root_copy / "segmentations" / "gt",
        "gt",
        {"segmenter": "gt", "dataset": "SyntheticSpurious"},
    )
    w.write(kept)
    w.close()
    with pytest.raises(
        ValueError, match="1 of 8 images of split 'test_shift' are not in the segmentation store"
    ):
        _dm(root_copy).setup("test")
    dm = _dm(root_copy, on_missing="full")
    dm.setup("test")
    loader = dm.test_dataloader()[1]
    fallbacks = torch.cat([b["fallback"] for b in loader])
    assert fallbacks.sum().item() == 1


def test_corrupt_image_names_the_file(root_copy):
    dm = _dm(root_copy, view="FULL", segmentation=None)
    dm.setup("test")
    rec = dm.splits["test_id"][0]
    path = root_copy / rec.image_id
    path.write_bytes(path.read_bytes()[:40])  # truncated PNG
    with pytest.raises(ImageReadError, match=str(path)):
        dm._dataset("test_id", train=False)[0]


def test_view_needs_segmentation(root_copy):
    with pytest.raises(ValueError, match="needs data.segmentation"):
        _dm(root_copy, view="BG_S", segmentation=None).setup("fit")


class _NoVal(RecordDataset):
    val_split = None
    test_splits = ["test"]

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = __import__("pathlib").Path(root)
        self.class_names = ["a", "b"]

    def load_records(self):
        recs = [Record(f"{i}.png", i % 2, "train") for i in range(40)]
        return recs + [Record("t.png", 0, "test")]


def test_val_holdout_for_datasets_without_val(tmp_path):
    dm = ViewDataModule(
        _NoVal(str(tmp_path)), view="FULL", segmentation=None, val_fraction=0.25, seed=1
    )
    dm.setup("fit")
    train, val = dm.splits["train"], dm.splits["val"]
    assert len(train) == 30 and len(val) == 10
    assert {r.image_id for r in train}.isdisjoint(r.image_id for r in val)
    assert np.bincount([r.label for r in val]).tolist() == [5, 5]
    with pytest.raises(KeyError, match="split 'nope'"):
        ViewDataModule(
            _NoVal(str(tmp_path)), view="FULL", segmentation=None, test_splits=["nope"]
        ).setup("test")


def test_empty_gt_mask_gives_counted_fallback(root_copy):
    from PIL import Image

    ds = SyntheticSpurious(root=str(root_copy), **TINY)
    rec = ds.records("test_id")[0]
    Image.fromarray(np.zeros((64, 80), np.uint8)).save(root_copy / rec.mask_path)  # empty mask
    dm = _dm(root_copy, view="BG_S")
    dm.prepare_data()
    dm.setup("test")
    from occam_l2r.store import SegmentationStore

    assert len(SegmentationStore(root_copy / "segmentations" / "gt")[rec.image_id]) == 0
    image, fallback = dm._dataset("test_id", train=False).render(0)
    assert fallback == "no_detection" and np.array_equal(image, ds.read_image(rec))
    rates = torch.cat([b["fallback"] for b in dm.test_dataloader()[0]])
    assert rates.sum().item() == 1


@pytest.mark.parametrize(
    ("key", "value"), [("batch_size", "-4"), ("num_workers", "-1"), ("image_size", "0")]
)
def test_bad_numbers_rejected_when_the_config_is_parsed(tmp_path, capsys, key, value):
    from occam_l2r.cli import main
    from tests.conftest import tiny_fit_args

    out = tmp_path / "runs"
    with pytest.raises(SystemExit) as exc:
        main(["fit", *tiny_fit_args(tmp_path / "data", out), f"--data.init_args.{key}", value])
    assert exc.value.code != 0
    assert key in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "data").exists()  # nothing was created


def test_full_view_builds_no_gt_store(root_copy, tmp_path):
    dm = _dm(root_copy, view="FULL", segmentation="gt", gt_store_dir=str(tmp_path / "gt"))
    dm.prepare_data()
    dm.setup("fit")
    assert not (tmp_path / "gt").exists() and dm.store is None


def test_skip_policy_counts_per_split(root_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("OCCAM_L2R_CACHE", str(tmp_path / "cache"))
    ds = SyntheticSpurious(root=str(root_copy), **TINY)
    victim = ds.records("test_random")[2]
    (root_copy / victim.image_id).write_bytes(b"GIF89a broken")
    dm = _dm(root_copy, on_unreadable="skip")
    dm.prepare_data()
    dm.setup("test")
    assert dm.unreadable_counts == {
        "train": 0, "val": 0, "test_id": 0, "test_shift": 0, "test_random": 1
    }  # fmt: skip
    assert [r.image_id for r, _ in dm.unreadable["test_random"]] == [victim.image_id]
    assert len(dm.splits["test_random"]) == 7
    assert victim.image_id not in {r.image_id for r in dm.splits["test_random"]}
    assert sum(len(b["id"]) for b in dm.test_dataloader()[2]) == 7


def test_several_views_of_one_read(root_copy):
    """A list of views gives every view of each image in one sample; the first is ``image``."""
    dm = _dm(root_copy, view=["FG_C", "FULL", "BG_S"])
    dm.prepare_data()
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()[0]))
    assert set(batch["views"]) == {"FG_C", "FULL", "BG_S"} == set(batch["fallbacks"])
    assert torch.equal(batch["views"]["FG_C"], batch["image"])
    single = {v: next(iter(_ready(root_copy, v).test_dataloader()[0])) for v in ("FULL", "BG_S")}
    for v, b in single.items():
        assert torch.equal(batch["views"][v], b["image"]) and b["id"] == batch["id"]
    assert not batch["fallbacks"]["FULL"].any()


def _ready(root, view) -> ViewDataModule:
    dm = _dm(root, view=view)
    dm.prepare_data()
    dm.setup("test")
    return dm


def _write_store(path, segmenter: str, segs) -> None:
    from occam_l2r.store import StoreWriter

    writer = StoreWriter(path, segmenter, {"segmenter": segmenter})
    writer.write(segs)
    writer.close()


def test_crop_box_and_fg_aspect_options(root_copy, tmp_path):
    """A SAM mask reaching past the detector box: FG_C crops the mask's box by default, the
    detector's with data.crop_box: detector; fg_aspect: stretch fills the square."""
    from occam_l2r.store import Segmentation

    ds = SyntheticSpurious(root=str(root_copy), **TINY)
    rec = ds.records("test_id")[0]
    mask = np.zeros((64, 80), bool)
    mask[10:30, 20:60] = True  # 40 wide, 20 tall; the detector saw only x 20..40
    seg = Segmentation.from_masks(rec.image_id, [mask], boxes=np.array([[20.0, 10.0, 40.0, 30.0]]))
    _write_store(tmp_path / "store", "grounding_dino+sam", [seg])
    image = ds.read_image(rec)

    def render(**kw):
        dm = _dm(root_copy, segmentation=str(tmp_path / "store"), on_missing="full",
                 test_splits=["test_id"], **kw)  # fmt: skip
        dm.setup("test")
        return dm._dataset("test_id", train=False).render(0)[0]

    out = render()
    assert out.shape == (40, 40, 3) and np.array_equal(out[10:30], image[10:30, 20:60])
    assert not out[:10].any() and not out[30:].any()  # padded above and below
    det = render(crop_box="detector")
    assert det.shape == (20, 20, 3) and np.array_equal(det, image[10:30, 20:40])
    stretched = render(fg_aspect="stretch")
    assert stretched.shape == (40, 40, 3) and stretched[:10].any()  # no padding rows
    bg_b = render(view="BG_B")
    assert not bg_b[10:30, 20:60].any() and np.array_equal(bg_b[:10], image[:10])


def test_top1_of_a_sam_automatic_store_is_named(root_copy, tmp_path, caplog):
    """On a SAM automatic store the supervised views' top1 is the highest predicted IoU."""
    import logging

    from occam_l2r.store import Segmentation

    ds = SyntheticSpurious(root=str(root_copy), **TINY)
    rec = ds.records("test_id")[0]
    small, big = np.zeros((64, 80), bool), np.zeros((64, 80), bool)
    small[0:4, 0:4] = True
    big[8:40, 8:72] = True
    seg = Segmentation.from_masks(rec.image_id, [big, small], scores=[0.91, 0.98])
    _write_store(tmp_path / "auto", "sam_auto", [seg])
    dm = _dm(root_copy, segmentation=str(tmp_path / "auto"), on_missing="full",
             test_splits=["test_id"])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="occam_l2r.data.datamodule"):
        dm.setup("test")
    assert "highest sam_predicted_iou" in caplog.text
    img, _ = dm._dataset("test_id", train=False).render(0)
    assert img.shape == (4, 4, 3)  # the small mask: its predicted IoU is the higher


def test_candidates_of_a_store_without_prompt_ids(root_copy, tmp_path, caplog):
    """A store written before prompt_ids (old parquet schema) still reads, resumes, and gives
    per-candidate items from the detections' label_ids (with a warning)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from occam_l2r.store import SCHEMA, Segmentation, SegmentationStore, StoreWriter

    ds = SyntheticSpurious(root=str(root_copy), **TINY)
    recs = ds.records("test_id")
    (mask,) = ds.gt_masks(recs[0])
    store = tmp_path / "old"
    writer = StoreWriter(store, "owlv2+sam", {"k": 2})  # writes the manifest
    old = Segmentation.from_masks(recs[0].image_id, [mask, mask], label_ids=[2, 0],
                                  prompts=["two", "one", "zero"])  # fmt: skip
    row = {k: v for k, v in old.to_row().items() if k != "prompt_ids"}
    old_schema = pa.schema([f for f in SCHEMA if f.name != "prompt_ids"])
    pq.write_table(pa.Table.from_pylist([row], schema=old_schema), store / "shard-rank000.parquet")
    new = Segmentation.from_masks(recs[1].image_id, [mask], label_ids=[1], prompts=["one", "three"],
                                  prompt_ids=[1, 3])  # fmt: skip
    writer.write([new])
    writer.close()  # merges the new row into the old shard
    reader = SegmentationStore(store)
    assert reader[recs[0].image_id].prompt_ids == [] and reader[recs[1].image_id].prompt_ids == [
        1,
        3,
    ]
    dm = _dm(root_copy, segmentation=str(store), on_missing="full", per_candidate=True,
             test_splits=["test_id"])  # fmt: skip
    dm.setup("test")
    with caplog.at_level("WARNING", logger="occam_l2r.data.view_dataset"):
        items = dm._dataset("test_id", train=False).items
    assert items[:4] == [(0, 2), (0, 0), (1, 1), (1, 3)]  # candidate 3 found nothing: kept
    assert "1 image(s)" in caplog.text and "before prompt_ids" in caplog.text


def test_holdout_val_is_stratified_and_seeded():
    from occam_l2r.data.splits import holdout_val

    recs = [Record(f"{i}.png", i % 3, "train") for i in range(30)]
    train, val = holdout_val(recs, 0.2, seed=4)
    assert np.bincount([r.label for r in val]).tolist() == [2, 2, 2] and len(train) == 24
    assert [r.image_id for r in holdout_val(recs, 0.2, seed=4)[1]] == [r.image_id for r in val]
