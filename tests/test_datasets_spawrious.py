"""Spawrious on a fake copy of the original layout (tests/data/spawrious/make_fake.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from occam_l2r.data.datasets.spawrious import Spawrious
from tests.conftest import load_fake

HERE = Path(__file__).parent
fake = load_fake("spawrious")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spaw")
    fake.make_fake(path, per_folder=20)
    return path


def _groups(records, label: int) -> Counter:
    return Counter((r.metadata["env"], r.group) for r in records if r.label == label)


def test_reference_variant_matches_the_reference_loader(root: Path) -> None:
    ds = Spawrious(root=str(root), split_variant="reference", images_per_class=20)
    assert ds.class_names == ["bulldog", "corgi", "dachshund", "labrador"]
    assert ds.val_split is None and ds.test_splits == ["test"]
    train = ds.records("train")
    assert len(train) == 4 * 40
    # env 1: int(0.97*20)=19 at the class location + 1 on beach; env 2: int(0.87*20)=17 + 3
    assert _groups(train, 0) == {
        ("0", "desert"): 19,
        ("0", "beach"): 1,
        ("1", "desert"): 17,
        ("1", "beach"): 3,
    }
    assert _groups(train, 2) == {
        ("0", "jungle"): 19,
        ("0", "beach"): 1,
        ("1", "jungle"): 17,
        ("1", "beach"): 3,
    }
    assert _groups(train, 3)[("0", "dirt")] == 19
    assert _groups(train, 1)[("0", "snow")] == 19
    # sorted names: the first 19 of 0/desert/bulldog
    own = sorted(
        r.image_id
        for r in train
        if r.label == 0 and r.group == "desert" and r.metadata["env"] == "0"
    )
    assert own[0] == "spawrious224/0/desert/bulldog/desert_bulldog_0000.png"
    assert own[-1].endswith("_0018.png")
    test = ds.records("test")
    assert len(test) == 4 * 40
    assert _groups(test, 0) == {("0", "dirt"): 20, ("1", "dirt"): 20}
    assert _groups(test, 2) == {("0", "snow"): 20, ("1", "snow"): 20}
    assert _groups(test, 3) == {("0", "desert"): 20, ("1", "desert"): 20}
    assert _groups(test, 1) == {("0", "jungle"): 20, ("1", "jungle"): 20}


def test_env1_variants(root: Path) -> None:
    full = Spawrious(root=str(root), images_per_class=20)
    assert full.split_variant == "env1_100"
    train = full.records("train")
    assert len(train) == 80
    assert _groups(train, 0) == {("0", "desert"): 20}
    assert len(full.records("test")) == 160
    easy97 = Spawrious(
        root=str(root / "spawrious224"), split_variant="env1_97", images_per_class=20
    )
    assert easy97.root == root
    assert _groups(easy97.records("train"), 1) == {("0", "snow"): 19, ("0", "beach"): 1}


def test_read_image_and_other_benchmark(root: Path) -> None:
    ds = Spawrious(root=str(root), benchmark="o2o_hard", images_per_class=20)
    rec = ds.records("train")[0]
    assert (rec.label, rec.group) == (0, "jungle")
    image = ds.read_image(rec)
    assert image.shape == (8, 8, 3)
    assert image[0, 0, 0] == 40 * fake.LOCATIONS.index("jungle")
    assert ds.name == "spawrious_o2o_hard_env1_100"


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="spawrious224"):
        Spawrious(root=str(tmp_path)).records("train")
    (tmp_path / "spawrious224/0/desert").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="0/desert/bulldog"):
        Spawrious(root=str(tmp_path)).records("train")


CONF = HERE / "conf" / "tiny_fg.yaml"
SYNTHETIC = """      class_path: occam_l2r.data.datasets.synthetic.SyntheticSpurious
      init_args:
        train_per_class: 6
        val_per_class: 2
        test_per_class: 2
"""


def _spawrious_config(tmp_path: Path, root: Path, images_per_class: int) -> Path:
    """tests/conf/tiny_fg.yaml with the fake Spawrious as dataset."""
    text = CONF.read_text()
    assert SYNTHETIC in text
    spawrious = (
        "      class_path: occam_l2r.data.datasets.spawrious.Spawrious\n"
        f"      init_args:\n        root: {root}\n        images_per_class: {images_per_class}\n"
    )
    path = tmp_path / "spawrious.yaml"
    path.write_text(text.replace(SYNTHETIC, spawrious))
    return path


def test_short_folders_warn_with_counts(root: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("OCCAM_L2R_CACHE", str(tmp_path / "cache"))
    from occam_l2r.cli import main

    config = _spawrious_config(tmp_path, root, images_per_class=25)
    # FULL: Spawrious has no ground-truth masks, and `check` of a view that reads the gt store
    # builds it, as `fit` would (test_gt_segmentation_without_masks_stops_early)
    full = ["--data.init_args.view", "FULL", "--data.init_args.segmentation", "null"]
    with caplog.at_level("WARNING", logger="occam_l2r"):
        result = main(
            ["check", "--config", str(config), *full, "--output", str(tmp_path / "u.csv")]
        )
    assert result["unreadable"] == []
    warnings = [r.getMessage() for r in caplog.records if "images_per_class=25" in r.getMessage()]
    assert len(warnings) == 1  # one warning with every folder's counts
    assert "4 folder(s)" in warnings[0] and "spawrious224/0/desert/bulldog: 20 of 25" in warnings[0]
    assert "train split has 80 images instead of 100" in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="occam_l2r"):
        Spawrious(root=str(root), images_per_class=20).records("train")
    assert not caplog.records


def test_gt_segmentation_without_masks_stops_early(root: Path, tmp_path: Path, caplog) -> None:
    from occam_l2r.cli import main

    config = _spawrious_config(tmp_path, root, images_per_class=20)
    out, store = tmp_path / "runs", tmp_path / "gt"
    args = ["fit", "--config", str(config), "--data.init_args.gt_store_dir", str(store)]
    args += [
        "--trainer.logger.init_args.save_dir",
        str(out),
        "--trainer.default_root_dir",
        str(out),
    ]
    with (
        caplog.at_level("WARNING"),
        pytest.raises(ValueError, match="gt needs ground-truth masks, but Spawrious") as exc,
    ):
        main(args)
    assert "python -m occam_l2r segment" in str(exc.value)
    assert not store.exists()  # stopped before the gt store was started
    assert not [r for r in caplog.records if "gt segmenter" in r.getMessage()]
