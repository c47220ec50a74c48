"""Every dataset reader end to end through the CLI on its fake layout (tests/data/*/make_fake.py).

For each dataset with a training split, ``fit`` (convnextv2_atto, ``--trainer.fast_dev_run
true``, 32 px, view FULL) and then ``test``; for the evaluation-only ones (CounterAnimal,
ImageNet-D) ``test``; for the readers this work left unchanged (FIT_ONLY), ``fit`` alone, whose
test after fitting writes the same test metrics. Checked on what the CLI built: the size of every split (the held-out val
included), the class count, the groups, that no image is in two splits (ImageNet's ``test_clean``
is by definition a subset of ``test``), that ``test`` scored every image of every test split, and
(where the ``test`` verb ran) that its logged metrics equal the ones recomputed with numpy from
``predict``'s logits of the same model (tests/_metrics_ref.py).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.errors import EXIT_USER_ERROR
from tests._metrics_ref import assert_logged_match
from tests.conftest import load_fake

HERE = Path(__file__).parent
TINY = HERE / "conf" / "tiny_fg.yaml"


def _fungi(tmp: Path) -> dict:
    load_fake("fungitastic").make_fake(tmp / "FungiTastic", with_masks=False)
    return {"root": str(tmp / "FungiTastic")}


def _spawrious(tmp: Path) -> dict:
    load_fake("spawrious").make_fake(tmp, per_folder=3)
    return {"root": str(tmp), "images_per_class": 3}


def _dogs(tmp: Path) -> dict:
    load_fake("stanford_dogs").make_fake(tmp)
    return {"root": str(tmp)}


def _waterbirds(tmp: Path) -> dict:
    load_fake("waterbirds").make_fake(tmp)
    return {"root": str(tmp)}


def _hard_imagenet(tmp: Path) -> dict:
    return {k: str(v) for k, v in load_fake("hard_imagenet").make_fake(tmp).items()}


def _counteranimal(tmp: Path) -> dict:
    load_fake("counteranimal").make_fake(tmp)
    return {"root": str(tmp)}


def _imagenet9(tmp: Path) -> dict:
    fake = load_fake("imagenet9")
    fake.make_fake(tmp, per_class=3)
    fake.write_in_to_in9(tmp / "in_to_in9.json")
    return {"root": str(tmp), "train_variation": "in9l"}


def _imagenet(tmp: Path) -> dict:
    root = load_fake("imagenet").make_fake(tmp, "devkit")
    return {"root": str(root), "clean_labels": str(root / "clean_validation.csv")}


def _imagenet_d(tmp: Path) -> dict:
    return {
        "root": str(load_fake("imagenet_d").make_fake(tmp)),
        "subsets": ["background", "texture"],
    }


def _urbancars(tmp: Path) -> dict:
    return {"root": str(load_fake("urbancars").make_fake(tmp))}


#: dataset -> (class, fake writer, split sizes, number of classes, number of groups)
CASES: dict[str, tuple[str, Callable[[Path], dict], dict[str, int], int, int]] = {
    "fungitastic": ("fungitastic.FungiTasticMini", _fungi, {"train": 9, "val": 4, "test": 4}, 3, 0),
    "spawrious": ("spawrious.Spawrious", _spawrious, {"train": 8, "val": 4, "test": 24}, 4, 6),
    "stanford_dogs": ("stanford_dogs.StanfordDogs", _dogs, {"train": 6, "val": 3, "test": 6}, 3, 0),
    "waterbirds": ("waterbirds.Waterbirds", _waterbirds, {"train": 8, "val": 4, "test": 4}, 2, 4),
    "hard_imagenet": (
        "hard_imagenet.HardImageNet", _hard_imagenet,
        {"train": 6, "val": 3, "test": 6, "test_lt": 4, "test_ct": 2}, 15, 0,
    ),
    "counteranimal": (
        "counteranimal.CounterAnimal", _counteranimal, {"common": 7, "counter": 5}, 3, 2,
    ),
    "imagenet9": (
        "imagenet9.ImageNet9", _imagenet9,
        {"train": 18, "val": 9, "original": 27, "mixed_rand": 27, "only_fg": 27}, 9, 3,
    ),
    "imagenet": (
        "imagenet.ImageNet", _imagenet, {"train": 16, "val": 4, "test": 8, "test_clean": 5}, 4, 0,
    ),
    "imagenet_d": ("imagenet_d.ImageNetD", _imagenet_d, {"background": 6, "texture": 6}, 113, 2),
    "urbancars": ("urbancars.UrbanCars", _urbancars, {"train": 12, "val": 8, "test": 16}, 2, 8),
}  # fmt: skip


def _config(tmp_path: Path, class_path: str, init_args: dict) -> Path:
    cfg = yaml.safe_load(TINY.read_text())
    cfg["data"]["init_args"].update(
        dataset={"class_path": f"occam_l2r.data.datasets.{class_path}", "init_args": init_args},
        view="FULL", segmentation=None, image_size=32, batch_size=64, num_workers=0,
        val_fraction=0.2,
    )  # fmt: skip
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "runs")
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "runs")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


#: readers this work left unchanged: ``fit`` (which tests after fitting) is enough for them
FIT_ONLY = {"fungitastic", "spawrious", "stanford_dogs", "waterbirds"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_fit_and_test_through_the_cli(tmp_path: Path, name: str) -> None:
    class_path, write, sizes, num_classes, num_groups = CASES[name]
    conf = _config(tmp_path, class_path, write(tmp_path / "data"))
    trains = sizes.get("train", 0) > 0
    verb_test = not trains or name not in FIT_ONLY
    if trains:  # fit tests after fitting unless the test verb follows
        after = ["--test_after_fit", "false"] if verb_test else []
        cli = main(["fit", "--config", str(conf), "--trainer.fast_dev_run", "true", *after])
    if verb_test:
        cli = main(["test", "--config", str(conf)])
    dm = cli.datamodule
    assert cli.model.num_classes == dm.num_classes == num_classes
    assert len(dm.group_names) == num_groups
    splits = dm.split_records()  # train, the held-out or given val, every test split
    assert {s: len(recs) for s, recs in splits.items()} == {"train": 0, "val": 0, **sizes}
    ids = {s: {r.image_id for r in recs} for s, recs in splits.items()}
    assert all(len(ids[s]) == len(splits[s]) for s in splits)  # no image twice in a split
    for a in ids:
        for b in ids:
            if a < b and {a, b} != {"test", "test_clean"}:  # test_clean: a subset of test
                assert not ids[a] & ids[b], f"{name}: {a} and {b} share images"
    written = max((tmp_path / "runs").rglob("test_metrics.json"), key=lambda p: p.stat().st_mtime)
    metrics = json.loads(written.read_text())
    for split in dm.test_split_names:
        assert metrics[f"{split}/num_samples"] == sizes[split]  # every image scored
        assert 0.0 <= metrics[f"{split}/acc"] <= 1.0
        if num_groups:
            assert 0.0 <= metrics[f"{split}/worst_group_acc"] <= 1.0
    if verb_test:  # `test` scored the seeded initial model: `predict` gives its logits
        logits = tmp_path / "logits"
        main(["predict", "--config", str(conf), "--model.init_args.logits_dir", str(logits)])
        for split in dm.test_split_names:  # acc, macro_acc, group_acc/<group>, worst_group_acc
            assert_logged_match(metrics, logits / f"{split}.npz", split)


def test_imagenet_config_composes_on_the_template(capsys: pytest.CaptureFixture[str]) -> None:
    configs = HERE.parent / "configs"
    with pytest.raises(SystemExit) as exit_:
        main(
            ["fit", "--config", str(configs / "templates" / "convnextv2_base.yaml"),
             "--config", str(configs / "imagenet" / "data.yaml"),
             "--config", str(configs / "imagenet" / "convnextv2_tiny.yaml"), "--print_config"]
        )  # fmt: skip
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["model_name"] == "convnextv2_tiny.fcmae_ft_in1k"
    data = printed["data"]["init_args"]
    assert data["dataset"]["class_path"] == "occam_l2r.data.datasets.ImageNet"
    assert (data["view"], data["image_size"], data["batch_size"]) == ("FG_C", 224, 128)
    assert data["segmentation"].endswith("segmentations/imagenet_owlv2_sam")


def _incomplete_imagenet(data: Path) -> tuple[dict, str]:
    args = _imagenet(data)
    (Path(args["root"]) / "val" / "ILSVRC2012_val_00000005.JPEG").unlink()
    return args, "1 of the 8 labelled val images are not in"


def _urbancars_without_a_group(data: Path) -> tuple[dict, str]:
    args = _urbancars(data)
    gone = "bg-0.5_co_occur_obj-0.5/test/obj-country_bg-urban_co_occur_obj-urban"
    shutil.rmtree(Path(args["root"]) / gone)
    return args, f"UrbanCars: folder not found: {Path(args['root']) / gone}"


def _imagenet_d_foreign_folder(data: Path) -> tuple[dict, str]:
    args = _imagenet_d(data)
    (Path(args["root"]) / "texture" / "armchair").mkdir()
    return args, "holds the folders ['armchair']"


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [
        ("imagenet.ImageNet", _incomplete_imagenet),
        ("urbancars.UrbanCars", _urbancars_without_a_group),
        ("imagenet_d.ImageNetD", _imagenet_d_foreign_folder),
    ],
    ids=["incomplete", "missing_folder", "wrong_layout"],
)
def test_broken_roots_give_one_message(
    case: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    class_path, breaks = case
    init_args, expected = breaks(tmp_path / "data")
    conf = _config(tmp_path, class_path, init_args)
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "test", "--config", str(conf)])
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):  # Lightning's, left on a closed capture
            if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, "closed", 0):
                monkeypatch.setattr(handler, "stream", sys.stderr)
    with pytest.raises(SystemExit) as exit_:
        main()  # what `python -m occam_l2r test --config config.yaml` runs
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("occam_l2r test: error:")]
    assert expected in line and "Traceback" not in err
