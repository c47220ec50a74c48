"""The dataset readers on what real downloads hold (fake layouts under tests/data/*/make_fake.py).

FungiTastic's released test CSV has no labels (they are in the DEV file the authors' code merges),
its images are read at the configs' size (``500p``) and a missing size names the flag that picks
another; CounterAnimal's archives carry ``__MACOSX`` folders, ``.DS_Store`` and AppleDouble files;
an ImageNet-9 training tarball unpacked into the release root would merge its unclean ``val/``
into a test split. Where the failure reaches the user, it is checked through
``python -m occam_l2r`` (:func:`occam_l2r.cli.main` without argv): one message, exit status 3.
"""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.data.datasets._layout import DatasetLayoutError
from occam_l2r.data.datasets.counteranimal import CounterAnimal
from occam_l2r.data.datasets.fungitastic import SIZE_FLAG, FungiTasticMini
from occam_l2r.data.datasets.imagenet9 import ImageNet9
from occam_l2r.errors import EXIT_USER_ERROR
from tests.conftest import load_fake

HERE = Path(__file__).parent
TINY = HERE / "conf" / "tiny_fg.yaml"
fungi = load_fake("fungitastic")
animals = load_fake("counteranimal")
in9 = load_fake("imagenet9")


def _config(tmp_path: Path, class_path: str, init_args: dict) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    cfg["data"]["init_args"].update(
        dataset={"class_path": f"occam_l2r.data.datasets.{class_path}", "init_args": init_args},
        view="FULL", segmentation=None, image_size=32, batch_size=8, num_workers=0,
    )  # fmt: skip
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "runs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _one_message(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run ``python -m occam_l2r <argv>``; assert exit 3 and one error line; return that line."""
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", *argv])
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):  # Lightning's, left on a closed capture
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", 0):
                monkeypatch.setattr(handler, "stream", sys.stderr)
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith(f"occam_l2r {argv[0]}: error:")]
    return line


# ---------------------------------------------------------------- FungiTastic
def test_fungitastic_test_labels_come_from_the_dev_file(tmp_path: Path) -> None:
    root = tmp_path / "FungiTastic"
    fungi.make_fake(root, with_masks=False)
    test_csv = pd.read_csv(root / "metadata/FungiTastic-Mini/FungiTastic-Mini-ClosedSet-Test.csv")
    assert "category_id" not in test_csv and "species" not in test_csv  # as released
    ds = FungiTasticMini(root=str(root))
    test = ds.records("test")
    assert [r.image_id.rsplit("/", 1)[1] for r in test] == list(test_csv["filename"])
    assert [r.label for r in test] == [1, 1, 2, 2]  # from the DEV file, in the test CSV's order
    assert test[0].metadata["habitat"] == fungi.HABITATS[1]  # the test CSV's own columns
    assert test[0].metadata["species"] == fungi.SPECIES[1]  # the columns it lacks, from DEV
    assert ds.class_names == fungi.SPECIES  # the DEV file's unknown species (-1) left out
    assert len(ds.all_records()) == 9 + 4 + 4


def test_fungitastic_without_the_dev_file_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "FungiTastic"
    fungi.make_fake(root, with_masks=False, test_labels=False)
    conf = _config(tmp_path, "fungitastic.FungiTasticMini", {"root": str(root)})
    line = _one_message(["test", "--config", str(conf)], monkeypatch, capsys)
    assert "has no labels" in line
    assert str(root / "metadata/FungiTastic/FungiTastic-test-DEV.csv") in line
    assert "download.py --metadata" in line


def test_fungitastic_reads_the_closed_set_names_first(tmp_path: Path) -> None:
    root = tmp_path / "FungiTastic"
    fungi.make_fake(root, with_masks=False)
    meta = root / "metadata/FungiTastic-Mini"
    # another copy's plain names beside the authors' ClosedSet ones: one row, a wrong label
    val = pd.read_csv(meta / "FungiTastic-Mini-ClosedSet-Val.csv")
    val.head(1).assign(category_id=2).to_csv(meta / "FungiTastic-Mini-Val.csv", index=False)
    ds = FungiTasticMini(root=str(root))
    assert [r.label for r in ds.records("val")] == list(val["category_id"])


def test_fungitastic_size_docs_defaults_and_error_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = HERE.parent / "configs"
    for config in ("fungitastic/data.yaml", "segment/fungitastic_gdino_sam.yaml"):
        text = yaml.safe_load((configs / config).read_text())
        data = text["data"].get("init_args", text["data"])
        assert data["dataset"]["init_args"]["image_size_folder"] == "500p"
    assert FungiTasticMini.__init__.__defaults__[0] == "500p"  # the class's default
    docs = (HERE.parent / "docs" / "datasets.md").read_text()
    section = docs[docs.index("## FungiTastic") : docs.index("## Spawrious")]
    assert "--subset m --size 500" in section and "{train,val,test}-500p" in section
    assert "-300p` images" not in section and "/300p/" not in section  # the old download advice
    assert f"{SIZE_FLAG} 300p" in section
    # a 300p download read with the configs' size: the message names the flag that reads it
    root = tmp_path / "FungiTastic"
    fungi.make_fake(root, with_masks=False, size="300p")
    conf = _config(tmp_path, "fungitastic.FungiTasticMini", {"root": str(root)})
    line = _one_message(["test", "--config", str(conf)], monkeypatch, capsys)
    assert f"{SIZE_FLAG} 300p" in line and "--size 500" in line
    assert str(root / "FungiTastic-Mini/train/500p") in line
    ds = FungiTasticMini(root=str(root), image_size_folder="300p")  # what the flag sets
    assert ds.records("train")[0].image_id.startswith("FungiTastic-Mini/train/300p/")
    shutil.rmtree(root / "FungiTastic-Mini")  # nothing downloaded: the download command only
    with pytest.raises(FileNotFoundError, match="--size 500") as err:
        FungiTasticMini(root=str(root)).records("train")
    assert SIZE_FLAG not in str(err.value)


# ---------------------------------------------------------------- CounterAnimal
def test_counteranimal_tolerates_what_archives_carry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clean = CounterAnimal(root=str(animals.make_fake(tmp_path / "clean")))
    base = animals.make_fake(tmp_path / "real", with_archive_debris=True)
    with caplog.at_level(logging.INFO, logger="occam_l2r.data.datasets.counteranimal"):
        ds = CounterAnimal(root=str(base.parent))
        records = ds.all_records()
    assert ds.class_names == clean.class_names
    assert [r.image_id for r in records] == [r.image_id for r in clean.all_records()]
    assert any("skipped" in m and "__MACOSX" in m for m in caplog.messages)


def test_counteranimal_wrong_layout_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = animals.make_fake(tmp_path / "data", with_archive_debris=True)
    (base / "salamander").mkdir()  # a class folder without its ImageNet index
    with pytest.raises(DatasetLayoutError, match="salamander"):
        CounterAnimal(root=str(base))
    conf = _config(tmp_path, "counteranimal.CounterAnimal", {"root": str(base.parent)})
    line = _one_message(["test", "--config", str(conf)], monkeypatch, capsys)
    assert f"{base / 'salamander'} is not named '<ImageNet index> <name>'" in line


# ---------------------------------------------------------------- ImageNet-9
def test_imagenet9_reads_exactly_the_release(tmp_path: Path) -> None:
    root = in9.make_fake(tmp_path / "bg_challenge", per_class=1)
    train_root = in9.write_training_tarball(tmp_path / "in9_train", "mixed_rand")
    assert (root / "in9l" / "val").is_dir()  # in9l.tar.gz's unclean val, unpacked as released
    ds = ImageNet9(root=str(root), train_variation="mixed_rand", train_root=str(train_root))
    assert ds.test_splits == in9.VARIATIONS  # in9l/val is not a test split
    assert {s: len(ds.records(s)) for s in ds.test_splits} == dict.fromkeys(in9.VARIATIONS, 9)
    train = ds.records("train")
    assert len(train) == 9 * 2 and train[0].group == "mixed_rand"
    assert ds.image_path(train[0]) == train_root / train[0].image_id
    assert train[0].image_id.startswith("mixed_rand/train/")
    legacy = ImageNet9(root=str(root), train_variation="in9l")  # in9l unpacked into root: fine
    assert len(legacy.records("train")) == 9 * 1


def test_imagenet9_training_tarball_in_the_release_root_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = in9.make_fake(tmp_path / "bg_challenge", per_class=1)
    in9.write_training_tarball(root, "mixed_rand")  # unpacked over the release
    assert len(list((root / "mixed_rand/val/00_dog").iterdir())) > 1  # the merge it makes
    with pytest.raises(DatasetLayoutError, match="mixed_rand.tar.gz"):
        ImageNet9(root=str(root))
    conf = _config(tmp_path, "imagenet9.ImageNet9", {"root": str(root)})
    line = _one_message(["test", "--config", str(conf)], monkeypatch, capsys)
    assert str(root / "mixed_rand" / "train") in line
    assert "--data.init_args.dataset.init_args.train_root" in line


# ---------------------------------------------------------------- the docs a user reads first
def _links(path: Path) -> list[str]:
    """The relative link targets of a Markdown file (no URLs, no in-page anchors)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [t.split("#")[0] for t in targets if not t.startswith(("http", "#", "mailto:"))]


def test_readme_quick_start_one_venv_named_outputs_links_inside_the_repo() -> None:
    repo = HERE.parent
    readme = (repo / "README.md").read_text()
    quick = readme[readme.index("## Quick start") : readme.index("\n## ", readme.index("## Quick"))]
    assert quick.count("python3 -m venv") == 1  # one environment for both commands
    pipeline = yaml.safe_load((repo / "configs/synthetic/pipeline.yaml").read_text())
    assert f"`{pipeline['experiment_dir']}/`" in quick  # the output folder, as the config sets it
    assert "fusion/report/report.html" in quick
    for page in [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]:
        assert "../shared" not in page.read_text(), f"{page} names a file a clone does not have"
        for target in _links(page):
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(repo), f"{page}: {target} leaves the repository"
            assert resolved.exists(), f"{page}: {target} does not exist"
