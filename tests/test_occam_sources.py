"""OCCAM's mask sources through the ``segment`` verb: scikit-image regions + the object
(``configs/segment/synthetic_regions.yaml``), and external instance-id PNGs round-tripping into a
store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.segment.external import (
    ExternalMasks,
    MaskFolderNotFoundError,
    read_instance_ids,
    write_instance_png,
)
from occam_l2r.segment.regions import candidate_masks
from occam_l2r.store import SegmentationStore
from tests.conftest import TINY, clean_copy

REGIONS = Path(__file__).parents[1] / "configs" / "segment" / "synthetic_regions.yaml"
QUIET = ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]


@pytest.fixture(scope="module")
def root(tiny_synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the tiny benchmark (its stores are written under it)."""
    out = tmp_path_factory.mktemp("occam_sources") / "tiny"
    clean_copy(tiny_synthetic_root, out)
    return out


def _dataset_args(root: Path) -> list[str]:
    args = ["--data.dataset.init_args.root", str(root)]
    for key, value in TINY.items():
        args += [f"--data.dataset.init_args.{key}", str(value)]
    return args


def test_candidate_masks_keep_the_object_and_order_by_area():
    labels = np.zeros((10, 10), int)
    labels[:, 5:] = 1
    labels[8:, :] = 2
    obj = np.zeros((10, 10), bool)
    obj[2:5, 1:4] = True
    masks = candidate_masks(labels, obj, min_area=4, max_masks=2)
    assert len(masks) == 2 and any(np.array_equal(m, obj) for m in masks)
    areas = [int(m.sum()) for m in masks]
    assert areas == sorted(areas, reverse=True)
    assert not any((m & obj).any() for m in masks if not np.array_equal(m, obj))


def test_regions_store_through_the_segment_verb(root: Path):
    summary = main(["segment", "--config", str(REGIONS), *_dataset_args(root), *QUIET])
    dataset = SyntheticSpurious(root=str(root), **TINY)
    store = SegmentationStore(root / "segmentations" / "synthetic_regions")
    assert store.segmenter == "regions" and summary["failures"] == 0
    tests = [r for s in dataset.test_splits for r in dataset.records(s)]
    assert len(store) == len(tests), "the config segments the test splits"
    several = 0
    for rec in dataset.records("test_shift"):
        seg = store[rec.image_id]
        masks = [seg.mask(i) for i in range(len(seg))]
        obj = np.logical_or.reduce(dataset.gt_masks(rec))
        assert sum(np.array_equal(m, obj) for m in masks) == 1, "one candidate is the object"
        assert np.sum(masks, axis=0).max() == 1, "candidates do not overlap"
        assert set(seg.labels) == {""} and (seg.label_ids == -1).all(), "class-agnostic"
        several += len(seg) >= 3
    assert several == len(dataset.records("test_shift")), "several candidates per image"


def _external_masks(image: np.ndarray, obj: np.ndarray) -> list[np.ndarray]:
    """The object, the left half of the rest and the right half of the rest."""
    h, w = obj.shape
    left = np.zeros((h, w), bool)
    left[:, : w // 2] = True
    return [obj, left & ~obj, ~left & ~obj]


def test_external_png_masks_round_trip_into_a_store(root: Path, tmp_path: Path):
    dataset = SyntheticSpurious(root=str(root), **TINY)
    records = dataset.records("test_id")
    folder = tmp_path / "cropformer_out"
    written = {}
    for rec in records[1:]:  # the first image has no mask file: a listed failure
        image = dataset.read_image(rec)
        masks = _external_masks(image, np.logical_or.reduce(dataset.gt_masks(rec)))
        png = folder / Path(rec.image_id).with_suffix(".png")
        write_instance_png(png, masks, *image.shape[:2])
        written[rec.image_id] = masks
    store = tmp_path / "store"
    config = {
        "model": {
            "segmenter": {
                "class_path": "occam_l2r.segment.external.ExternalMasks",
                "init_args": {"folder": str(folder), "source": "cropformer"},
            },
            "store": str(store),
        },
        "data": {
            "dataset": {
                "class_path": "occam_l2r.data.datasets.synthetic.SyntheticSpurious",
                "init_args": {"root": str(root), **TINY},
            },
            "splits": ["test_id"],
        },
        "trainer": {"accelerator": "cpu", "devices": 1},
    }
    cfg = tmp_path / "cropformer.yaml"
    cfg.write_text(yaml.safe_dump(config))
    summary = main(["segment", "--config", str(cfg), *QUIET])
    assert summary["stored"] == len(records) - 1 and summary["failures"] == 1
    reader = SegmentationStore(store)
    assert reader.segmenter == "cropformer"
    assert "no mask file" in reader.failures()[0]["error"]
    for image_id, masks in written.items():
        seg = reader[image_id]
        assert len(seg) == 3
        for i, m in enumerate(masks):
            assert np.array_equal(seg.mask(i), m)
    # a missing folder fails before any image is read
    config["model"]["segmenter"]["init_args"]["folder"] = str(tmp_path / "absent")
    cfg.write_text(yaml.safe_dump(config))
    with pytest.raises(MaskFolderNotFoundError, match="absent"):
        main(["segment", "--config", str(cfg), *QUIET])


def test_instance_id_pngs_of_every_depth(tmp_path: Path):
    ids = np.arange(300 * 4).reshape(30, 40) % 300
    Image.fromarray(ids.astype(np.uint16)).save(tmp_path / "deep.png")
    assert np.array_equal(read_instance_ids(tmp_path / "deep.png"), ids)
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 1] = 1  # id 256
    rgb[:10, :, 2] = 7  # id 263
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert set(np.unique(read_instance_ids(tmp_path / "rgb.png"))) == {256, 263}
    masks = [ids == v for v in range(1, 300)]
    write_instance_png(tmp_path / "many.png", masks, 30, 40)
    assert read_instance_ids(tmp_path / "many.png").max() == 299
    reader = ExternalMasks(str(tmp_path), background=None, min_area=4)
    seg = reader.read("many.jpg", 30, 40)  # the image's extension is replaced
    assert len(seg) == 300 and np.array_equal(seg.mask(0), ids == 0)
    with pytest.raises(ValueError, match="is 40x30, the image 50x30"):
        reader.read("many.png", 30, 50)
    with pytest.raises(ValueError, match="overlaps"):
        write_instance_png(tmp_path / "bad.png", [ids < 5, ids < 10], 30, 40)
