"""Where a segmentation store lives: the one rule (names vs paths) of
:func:`occam_l2r.store_location.resolve_store`, every shipped config resolving as it did before
the rule was written once, and the message for a store that does not exist."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.errors import EXIT_USER_ERROR, UserError
from occam_l2r.store import StoreNotFoundError
from occam_l2r.store_location import StoreLocationError, is_store_name, resolve_store
from tests.conftest import TINY

REPO = Path(__file__).parents[1]
ROOT = "/ROOT"

#: (config, key, what it says, gt_store_dir, folder) for every store named by a shipped config,
#: recorded from the five resolvers that existed before this one (dataset root ``/ROOT``)
BEFORE = [
    (
        "configs/counteranimal/data.yaml",
        "data.segmentation",
        "/data/CounterAnimal/segmentations/counteranimal_gdino_sam",
        None,
        "/data/CounterAnimal/segmentations/counteranimal_gdino_sam",
    ),
    (
        "configs/fungitastic/data.yaml",
        "data.segmentation",
        "/data/FungiTastic/segmentations/fungitastic_gdino_sam",
        None,
        "/data/FungiTastic/segmentations/fungitastic_gdino_sam",
    ),
    (
        "configs/hard_imagenet/data.yaml",
        "data.segmentation",
        "/data/ILSVRC2012/segmentations/hard_imagenet_owlv2_sam",
        None,
        "/data/ILSVRC2012/segmentations/hard_imagenet_owlv2_sam",
    ),
    (
        "configs/hard_imagenet/gt_masks.yaml",
        "data.segmentation",
        "gt",
        "/data/hardImageNet/segmentations/gt",
        "/data/hardImageNet/segmentations/gt",
    ),
    (
        "configs/hard_imagenet/topk.yaml",
        "data.segmentation",
        "/data/ILSVRC2012/segmentations/hard_imagenet_topk_owlv2_sam",
        None,
        "/data/ILSVRC2012/segmentations/hard_imagenet_topk_owlv2_sam",
    ),
    (
        "configs/imagenet/data.yaml",
        "data.segmentation",
        "/data/ILSVRC2012/segmentations/imagenet_owlv2_sam",
        None,
        "/data/ILSVRC2012/segmentations/imagenet_owlv2_sam",
    ),
    (
        "configs/movi/discover.yaml",
        "benchmarks.stores.SAM",
        "/data/movi/segmentations/movi_c_sam_auto",
        None,
        "/data/movi/segmentations/movi_c_sam_auto",
    ),
    ("configs/movi/discover.yaml", "benchmarks.stores.GT", "gt", None, "/ROOT/segmentations/gt"),
    (
        "configs/movi/discover.yaml",
        "benchmarks.stores.SAM",
        "/data/movi/segmentations/movi_e_sam_auto",
        None,
        "/data/movi/segmentations/movi_e_sam_auto",
    ),
    (
        "configs/movi/level_e.yaml",
        "model.store",
        "/data/movi/segmentations/movi_e_sam_auto",
        None,
        "/data/movi/segmentations/movi_e_sam_auto",
    ),
    (
        "configs/movi/sam_auto.yaml",
        "model.store",
        "/data/movi/segmentations/movi_c_sam_auto",
        None,
        "/data/movi/segmentations/movi_c_sam_auto",
    ),
    (
        "configs/occam/clip_l14.yaml",
        "data.mask_sources",
        "cropformer",
        None,
        "/ROOT/segmentations/cropformer",
    ),
    (
        "configs/occam/clip_l14.yaml",
        "data.mask_sources",
        "ft_dinosaur",
        None,
        "/ROOT/segmentations/ft_dinosaur",
    ),
    (
        "configs/spawrious/data.yaml",
        "data.segmentation",
        "/data/spawrious/segmentations/spawrious_gdino_sam",
        None,
        "/data/spawrious/segmentations/spawrious_gdino_sam",
    ),
    (
        "configs/stanford_dogs/data.yaml",
        "data.segmentation",
        "/data/StanfordDogs/segmentations/stanford_dogs_gdino_sam",
        None,
        "/data/StanfordDogs/segmentations/stanford_dogs_gdino_sam",
    ),
    ("configs/synthetic/base.yaml", "data.segmentation", "gt", None, "/ROOT/segmentations/gt"),
    (
        "configs/synthetic/classify.yaml",
        "segmentation",
        "data/new_images_store",
        None,
        "data/new_images_store",
    ),
    ("configs/synthetic/clip.yaml", "data.segmentation", "gt", None, "/ROOT/segmentations/gt"),
    (
        "configs/synthetic/discover.yaml",
        "benchmarks.stores.GT",
        "gt",
        None,
        "/ROOT/segmentations/gt",
    ),
    (
        "configs/synthetic/occam.yaml",
        "data.mask_sources",
        "synthetic_regions",
        None,
        "/ROOT/segmentations/synthetic_regions",
    ),
    ("configs/synthetic/zeroshot.yaml", "data.segmentation", "gt", None, "/ROOT/segmentations/gt"),
    (
        "configs/templates/convnextv2_base.yaml",
        "data.segmentation",
        "/path/to/segmentation/store",
        None,
        "/path/to/segmentation/store",
    ),
    ("configs/urbancars/data.yaml", "data.segmentation", "gt", None, "/ROOT/segmentations/gt"),
    (
        "configs/zeroshot/counteranimal.yaml",
        "data.segmentation",
        "/data/CounterAnimal/segmentations/counteranimal_gdino_sam",
        None,
        "/data/CounterAnimal/segmentations/counteranimal_gdino_sam",
    ),
    (
        "configs/zeroshot/fungitastic.yaml",
        "data.segmentation",
        "/data/FungiTastic/segmentations/fungitastic_gdino_sam",
        None,
        "/data/FungiTastic/segmentations/fungitastic_gdino_sam",
    ),
    (
        "configs/zeroshot/hard_imagenet.yaml",
        "data.segmentation",
        "/data/ILSVRC2012/segmentations/hard_imagenet_owlv2_sam",
        None,
        "/data/ILSVRC2012/segmentations/hard_imagenet_owlv2_sam",
    ),
    (
        "configs/zeroshot/spawrious.yaml",
        "data.segmentation",
        "/data/spawrious/segmentations/spawrious_gdino_sam",
        None,
        "/data/spawrious/segmentations/spawrious_gdino_sam",
    ),
    (
        "configs/zeroshot/stanford_dogs.yaml",
        "data.segmentation",
        "/data/StanfordDogs/segmentations/stanford_dogs_gdino_sam",
        None,
        "/data/StanfordDogs/segmentations/stanford_dogs_gdino_sam",
    ),
]


def _specs(cfg: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(key, spec, gt_store_dir) of every store a config names."""
    out = []
    data = cfg.get("data") or {}
    if isinstance(data, dict):
        data = data.get("init_args", data)  # class_path + init_args, or the arguments alone
        gt_dir = data.get("gt_store_dir")
        if data.get("segmentation") is not None:
            out.append(("data.segmentation", data["segmentation"], gt_dir))
        out += [("data.mask_sources", s, gt_dir) for s in data.get("mask_sources") or []]
    for bench in cfg.get("benchmarks") or []:
        out += [(f"benchmarks.stores.{k}", v, None) for k, v in (bench.get("stores") or {}).items()]
    model = cfg.get("model") or {}
    if isinstance(model, dict) and model.get("store"):
        out.append(("model.store", model["store"], None))
    if cfg.get("segmentation") is not None and "data" not in cfg:
        out.append(("segmentation", cfg["segmentation"], None))
    return out


def test_every_shipped_config_resolves_to_the_same_folder_as_before():
    found = set()
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        for key, spec, gt_dir in _specs(cfg):
            found.add((str(path.relative_to(REPO)), key, spec, gt_dir))
            resolve_store(spec, ROOT, gt_dir)  # every store of every config resolves
    for config, key, spec, gt_dir, folder in BEFORE:
        assert (config, key, spec, gt_dir) in found, f"{config} no longer names {spec}"
        assert str(resolve_store(spec, ROOT, gt_dir)) == folder, (config, key, spec)


def test_names_and_paths():
    assert resolve_store("synthetic_regions", "/r") == Path("/r/segmentations/synthetic_regions")
    assert resolve_store("gt", "/r") == Path("/r/segmentations/gt")
    assert resolve_store("gt", "/r", "/elsewhere/gt") == Path("/elsewhere/gt")
    assert resolve_store("gt", None, "/elsewhere/gt") == Path("/elsewhere/gt")
    # a path: any separator, ~, . and .., or a Path object; relative to the current directory
    assert resolve_store("./synthetic_regions", "/r") == Path("synthetic_regions")
    assert resolve_store("stores/a", "/r") == Path("stores/a")
    assert resolve_store("/abs/a", "/r", "/gt") == Path("/abs/a")
    assert resolve_store("~/a", "/r") == Path.home() / "a"
    assert resolve_store(Path("gt"), "/r") == Path("gt")
    assert not any(map(is_store_name, ["a/b", "a\\b", ".", "..", "~", "~a", "", Path("a")]))
    assert is_store_name("movi_c_sam_auto") and is_store_name("a.b-c")
    with pytest.raises(StoreLocationError, match=r"'mine' is a name.*\./mine"):
        resolve_store("mine", None)


def test_a_missing_store_name_names_the_folder_and_the_fix(synthetic_copy: Path):
    dm = ViewDataModule(
        SyntheticSpurious(root=str(synthetic_copy), **TINY), view="FG_C", segmentation="nope"
    )
    with pytest.raises(StoreNotFoundError) as err:
        dm.setup("fit")
    text = str(err.value)
    assert isinstance(err.value, UserError)
    assert "'nope'" in text and str(synthetic_copy / "segmentations" / "nope") in text
    assert "configs/segment/nope.yaml" in text and "./nope" in text


def test_a_missing_store_exits_3_with_one_message_through_the_cli(
    tiny_synthetic_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
):
    cfg = yaml.safe_load((REPO / "configs/synthetic/discover.yaml").read_text())
    cfg["benchmarks"][0]["dataset"]["init_args"].update(root=str(tiny_synthetic_root), **TINY)
    cfg["benchmarks"][0]["stores"] = {"SAM": "no_such_store", "other": str(tmp_path / "no_dir")}
    cfg["output_dir"] = str(tmp_path / "out")
    conf = tmp_path / "discover.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "discover", "--config", str(conf)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("occam_l2r discover: error: no segmentation store named 'no_such_store'")
    assert str(tiny_synthetic_root / "segmentations" / "no_such_store") in err
    assert "python -m occam_l2r segment --config configs/segment/no_such_store.yaml" in err
    cfg["benchmarks"][0]["stores"] = {"other": str(tmp_path / "no_dir")}
    conf.write_text(yaml.safe_dump(cfg))
    with pytest.raises(
        StoreNotFoundError, match=r"no segmentation store at '.*no_dir'.*--model\.store"
    ):
        main(["discover", "--config", str(conf)])
