"""ImageNet-1k on fake copies of its three layouts (tests/data/imagenet/make_fake.py): the devkit's
ground truth through meta.mat, torchvision's class folders, Kaggle's CSVs; the clean-label
subset from clean_validation.csv and ReaL's real.json; the 1000-way scoring functions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets._layout import DatasetLayoutError, DatasetNotFoundError
from occam_l2r.data.datasets.imagenet import (
    ImageNet,
    accepted_label_accuracy,
    imagenet_mapped_accuracy,
    map_imagenet_predictions,
)
from tests.conftest import load_fake

fake = load_fake("imagenet")

#: class of each fake val image: the devkit's ILSVRC2012_IDs mapped through meta.mat, then ranked
VAL_LABELS = [fake.WNIDS.index(w) for w in fake.VAL_WNIDS]


@pytest.fixture(scope="module")
def devkit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake.make_fake(tmp_path_factory.mktemp("in1k"), "devkit")


@pytest.mark.parametrize("layout", ["devkit", "devkit_tar", "folders", "kaggle"])
def test_layouts(tmp_path: Path, layout: str) -> None:
    ds = ImageNet(root=str(fake.make_fake(tmp_path, layout)))
    assert ds.class_names == ["tench", "goldfish", "kit fox", "fake thing"]
    assert ds.imagenet_class_indices == [0, 1, 2, 3] and ds.val_split is None
    assert ds.train_split == "train" and ds.test_splits == ["test"]
    train, test = ds.records("train"), ds.records("test")
    assert len(train) == 4 * fake.TRAIN_PER_CLASS and len(test) == len(fake.VAL_WNIDS)
    labels = {Path(r.image_id).name: r.label for r in test}
    assert labels == {f"ILSVRC2012_val_{i:08d}.JPEG": y for i, y in enumerate(VAL_LABELS, 1)}
    prefix = "ILSVRC/Data/CLS-LOC/" if layout == "kaggle" else ""
    assert train[0].image_id == f"{prefix}train/n01440764/n01440764_0.JPEG"
    for rec in (train[-1], test[0]):
        assert ds.read_image(rec).shape == (*fake.IMAGE_HW, 3)


def test_clean_labels_as_published(devkit_root: Path) -> None:
    ds = ImageNet(root=str(devkit_root), clean_labels=str(devkit_root / "clean_validation.csv"))
    assert ds.test_splits == ["test", "test_clean"]
    clean = {Path(r.image_id).name[-9:-5]: r for r in ds.records("test_clean")}
    assert sorted(clean) == ["0001", "0002", "0003", "0005", "0006"]  # the CSV's rows
    assert (clean["0002"].label, clean["0002"].metadata["clean_labels"]) == (0, [0, 3])
    # image 3 is a goldfish (1) by the original label; the works agree on kit fox (2)
    assert clean["0003"].label == 2 and clean["0003"].metadata["original_label"] == 1
    assert clean["0003"].image_id == "val/ILSVRC2012_val_00000003.JPEG"
    real = ImageNet(root=str(devkit_root), clean_labels=str(devkit_root / "real.json"))
    accepted = real.accepted_labels()
    assert [Path(k).name[-9:-5] for k in accepted] == [
        "0001",
        "0002",
        "0004",
        "0005",
        "0006",
        "0007",
    ]
    assert accepted["val/ILSVRC2012_val_00000005.JPEG"] == [2, 1]
    assert real.records("test_clean")[3].label == 2  # original label 2 is among ReaL's [2, 1]


def test_scoring_functions() -> None:
    assert map_imagenet_predictions([3, 7, 999, -1], {3: 0, 999: 2}).tolist() == [0, -1, 2, -1]
    logits = np.zeros((4, 1000))
    logits[[0, 1, 2, 3], [3, 5, 999, 3]] = 1.0  # argmax 3, 5 (unmapped), 999, 3
    assert imagenet_mapped_accuracy(logits, [0, 1, 2, 1], {3: 0, 999: 2, 4: 1}) == 0.5
    with pytest.raises(ValueError, match="1000"):
        imagenet_mapped_accuracy(np.zeros((2, 9)), [0, 1], {})
    assert accepted_label_accuracy([0, 3, 1], [[0, 3], [0, 3], [2]]) == pytest.approx(2 / 3)


def test_held_out_val_is_deterministic_and_disjoint(devkit_root: Path) -> None:
    def split(seed: int) -> dict[str, list[str]]:
        dm = ViewDataModule(
            ImageNet(root=str(devkit_root)), view="FULL", segmentation=None, seed=seed,
            val_fraction=0.4, num_workers=0,
        )  # fmt: skip
        return {s: [r.image_id for r in recs] for s, recs in dm.split_records().items()}

    first, again, other = split(0), split(0), split(1)
    assert first == again and first["val"] != other["val"]
    assert len(first["val"]) == 4 * 2 and len(first["train"]) == 4 * 3
    assert not set(first["train"]) & set(first["val"])
    assert not (set(first["train"]) | set(first["val"])) & set(first["test"])


def test_errors_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="nowhere"):
        ImageNet(root=str(tmp_path / "nowhere"))
    root = fake.make_fake(tmp_path / "a", "devkit")
    (root / "val" / "ILSVRC2012_val_00000003.JPEG").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"1 of the 8 .*ILSVRC2012_val_00000003"):
        ImageNet(root=str(root)).records("test")
    for name in ("ILSVRC2012_validation_ground_truth.txt", "meta.mat"):
        (root / "ILSVRC2012_devkit_t12" / "data" / name).unlink()
    with pytest.raises(DatasetNotFoundError, match="LOC_val_solution.csv"):
        ImageNet(root=str(root)).records("test")
    (root / "train" / "dogs").mkdir()
    with pytest.raises(DatasetLayoutError, match="dogs"):
        ImageNet(root=str(root))
    root = fake.make_fake(tmp_path / "b", "devkit")
    (root / "bad.csv").write_text("image,label\nILSVRC2012_val_00000001.JPEG,3\n")
    with pytest.raises(DatasetLayoutError, match=r"lacks the columns \['id', 'proposed_labels'\]"):
        ImageNet(root=str(root), clean_labels=str(root / "bad.csv")).records("test_clean")
    (root / "real.json").write_text(json.dumps([[2]] * 10))  # 10 images; val holds 8
    with pytest.raises(DatasetLayoutError, match="ILSVRC2012_val_00000009"):
        ImageNet(root=str(root), clean_labels=str(root / "real.json")).records("test_clean")
