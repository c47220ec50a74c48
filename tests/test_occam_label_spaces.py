"""OCCAM's label spaces and prompts are the authors' (issue 16, item 2): fine-grained names
max-mapped to the dataset's classes, ``max_prob`` / ``oracle`` over the mapped classes, the
CounterAnimal mean per-class accuracy, and the Waterbirds config run end to end in the ``cub200``
space on the fake layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from occam_l2r.cli import main
from occam_l2r.models.metrics import PresentClassAccuracy
from occam_l2r.models.prompts import (
    LABEL_SPACES,
    LabelSpaceError,
    MaxMappedClassifier,
    label_space_classifier,
    max_map,
    prompt_classes,
)
from occam_l2r.occam.model import Occam, SourceMasks
from tests._clip_tiny import save_tiny_clip
from tests.conftest import load_fake

CONFIGS = Path(__file__).parents[1] / "configs" / "occam"
QUIET = ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]


# ---------------------------------------------------------------------- the mapping
def test_max_map_takes_each_class_s_highest_member_and_ignores_unmapped_members():
    logits = torch.tensor([[1.0, 5.0, 2.0, 9.0, 3.0], [4.0, -1.0, 0.5, 7.0, 6.0]])
    class_of = torch.tensor([0, 0, 1, -1, 1])  # member 3 belongs to no class
    out = max_map(logits, class_of, 3)
    assert out[:, :2].tolist() == [[5.0, 3.0], [4.0, 6.0]]
    assert torch.isinf(out[:, 2]).all() and (out[:, 2] < 0).all()  # a class without members


def test_the_authors_fine_grained_spaces():
    wb = prompt_classes(["landbird", "waterbird"], "cub200")
    assert (len(wb.names), wb.num_outputs, wb.outputs) == (200, 2, ["landbird", "waterbird"])
    assert wb.names[0] == "house sparrow" and wb.names[154] == "pelagic cormorant"
    assert wb.class_of[:154] == [0] * 154 and wb.class_of[154:] == [1] * 46
    uc = prompt_classes(["urban car", "country car"], "stanford_cars196")
    assert (len(uc.names), uc.num_outputs) == (196, 2)
    assert uc.names[0] == "AM General Hummer SUV 2000" and uc.class_of[0] == 1  # country
    assert uc.names[1] == "Acura RL Sedan 2012" and uc.class_of[1] == 0  # urban
    assert sum(uc.class_of) == 68
    ca = prompt_classes(["salamander"], "imagenet1k_synonyms", imagenet_indices=[25])
    assert len(ca.names) == 1000 and ca.label_map == [25] and ca.class_of is None
    assert ca.names[0] == "tench, Tinca tinca" and ca.names[517] == "crane2"
    with pytest.raises(LabelSpaceError, match="cub200 maps 200 names onto Waterbirds"):
        prompt_classes(["dog", "cat"], "cub200", dataset_name="Other")
    with pytest.raises(LabelSpaceError, match="choose one of dataset, imagenet1k"):
        prompt_classes(["a"], "cub_200")
    assert {"dataset", "imagenet1k", "cub200", "stanford_cars196", "imagenet1k_max"} <= set(
        LABEL_SPACES
    )


def test_imagenet1k_max_maps_through_the_dataset_s_imagenet_to_class():
    class In9Like:
        imagenet_to_class = {0: 1, 1: 1, 2: 0, 999: 0}

    space = prompt_classes(["dog", "bird"], "imagenet1k_max", dataset=In9Like())
    assert len(space.names) == 1000 and space.num_outputs == 2
    assert space.class_of[:3] == [1, 1, 0] and space.class_of[999] == 0
    assert space.class_of.count(-1) == 996
    with pytest.raises(LabelSpaceError, match="imagenet_to_class"):
        prompt_classes(["dog", "bird"], "imagenet1k_max", dataset=object())


def test_imagenet_d_names_are_the_authors_bare_names():
    """The authors' names: imgnet_d_dir2imgnet_d_id.json's names with ``_`` and ``-`` as spaces,
    ``/`` as `` or ``, lower case (imagenet_d.py, convert_folder_name_to_category_name)."""
    from occam_l2r.data.datasets.imagenet_d import CLASS_FOLDERS, DISPLAY_NAMES

    theirs = {
        "binder_closed": "binder_(closed)", "coffee_or_french_press": "coffee/french press",
        "t_shirt": "t-shirt", "mixing_or_salad_bowl": "mixing/salad_bowl",
        "dress_shoe_men": "dress_shoe_(men)", "weight_exercise": "weight_(exercise)",
    }  # fmt: skip
    ours = {f: DISPLAY_NAMES.get(f, f.replace("_", " ")) for f in CLASS_FOLDERS}
    for folder, name in theirs.items():
        converted = name.replace("_", " ").replace("-", " ").replace("/", " or ").lower()
        assert ours[folder] == converted
    assert yaml.safe_load((CONFIGS / "imagenet_d.yaml").read_text())["model"]["templates"] == "{c}"


# ---------------------------------------------------------------------- the metric
def test_mean_class_acc_leaves_out_the_classes_with_nothing_right():
    preds = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    target = torch.tensor([0, 1, 1, 2, 2, 3, 3])
    m = PresentClassAccuracy(5, only_correct=True)
    m.update(preds, target)
    # the authors: accs only for labels with a correct prediction: 0: 1/1, 1: 1/2, 2: 2/2, 3: 1/2
    assert m.compute().item() == pytest.approx((1 + 0.5 + 1 + 0.5) / 4)
    m2 = PresentClassAccuracy(5, only_correct=True)
    m2.update(torch.tensor([1, 1, 0]), torch.tensor([0, 0, 1]))
    assert torch.isnan(m2.compute())  # nothing right anywhere (the authors divide by zero)
    m3 = PresentClassAccuracy(5, only_correct=True)
    m3.update(torch.tensor([1, 1, 1]), torch.tensor([0, 1, 2]))  # classes 0 and 2: nothing right
    assert m3.compute().item() == 1.0
    plain = PresentClassAccuracy(5)
    plain.update(torch.tensor([1, 1, 1]), torch.tensor([0, 1, 2]))
    assert plain.compute().item() == pytest.approx(1 / 3)


# ---------------------------------------------------------------------- max_prob / oracle
class Fixed(nn.Module):
    """Member logits fixed per applied mask (the mean of the first channel picks the row)."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.rows = rows

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.rows[images[:, 0, 0, 0].long()]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        raise AssertionError("not used")


def test_max_prob_and_oracle_are_over_the_mapped_classes():
    """Two masks; members 0-2 -> class 0, members 3-4 -> class 1. Over the 5 members mask 0 is
    the more confident (p = 0.52 against 0.32: mask 1 spreads over three members of class 0);
    over the 2 mapped classes mask 1 is (0.95 against 0.52). The authors' softmax is over the
    mapped classes (ModelClassesWrapper before compute_foreground_score): max_prob picks mask 1."""
    rows = torch.tensor([[6.0, 0.0, 0.0, 5.9, 0.0], [3.0, 3.0, 3.0, 0.0, 0.0]])
    assert torch.softmax(rows, -1).amax(-1).argmax() == 0  # the member space would pick mask 0
    classifier = MaxMappedClassifier(Fixed(rows), [0, 0, 0, 1, 1], 2)
    occam = Occam(classifier, ["max_prob", "oracle"], image_size=4)
    applied = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    applied[1] = 1
    masks = torch.ones(2, 4, 4, dtype=torch.bool).numpy()
    source = SourceMasks({"crop_resize_gray": applied}, torch.tensor([0, 0]), [masks])
    whole = torch.zeros(1, 2)
    label = torch.tensor([1])  # waterbird
    choices = occam.choose_masks("crop_resize_gray", source, label, [None], whole)
    assert choices["max_prob"].index.tolist() == [1]
    assert choices["max_prob"].logits.tolist() == [[3.0, 0.0]]  # the mapped (B, 2) logits
    assert choices["oracle"].index.tolist() == [0]  # p(class 1): 0.48 on mask 0, 0.05 on 1
    plain = Fixed(rows)
    assert label_space_classifier(plain, prompt_classes(["a", "b"])) is plain


# ---------------------------------------------------------------------- end to end
def _prototype_meta(cache: Path) -> list[dict]:
    return [
        json.loads(torch.load(p, weights_only=True)["meta"]) for p in sorted(cache.glob("*.pt"))
    ]


@pytest.mark.slow
def test_waterbirds_config_classifies_in_the_cub200_space(tmp_path: Path):
    root = tmp_path / "waterbirds"
    load_fake("waterbirds").make_fake(root, segmentations=tmp_path / "cub_seg")
    weights = save_tiny_clip(tmp_path / "tiny_vit.pt")

    def run(extra: list[str], name: str) -> tuple[list[dict], str]:
        cache, out = tmp_path / f"cache_{name}", tmp_path / f"out_{name}"
        main([
            "occam", "--config", str(CONFIGS / "clip_l14.yaml"),
            "--config", str(CONFIGS / "waterbirds.yaml"),
            "--data.dataset.init_args.root", str(root),
            "--data.dataset.init_args.segmentations_root", str(tmp_path / "cub_seg"),
            "--data.mask_sources", "[gt]", "--data.gt_store_dir", str(tmp_path / f"gt_{name}"),
            "--data.apply_modes", "[crop_resize_gray]", "--data.batch_size", "4",
            "--model.model_name", "occam-tiny-vit", "--model.pretrained", str(weights),
            "--model.alpha_weights", "null", "--model.prototype_cache", str(cache),
            "--trainer.default_root_dir", str(out), *QUIET, *extra,
        ])  # fmt: skip
        table = json.loads((out / "occam_table.json").read_text())
        return _prototype_meta(cache), json.dumps(table)

    meta, table = run([], "authors")
    assert len(meta) == 1
    assert meta[0]["templates"] == ["A photo of {c}"]
    names = meta[0]["class_names"]
    assert len(names) == 200 and names[0] == "house sparrow" and names[-1] == "least tern"
    assert '"worst_group_acc"' in table and '"mean_class_acc"' in table
    # the earlier setting, kept as a named option: the dataset's two names
    old, _ = run(["--model.label_space", "dataset"], "dataset")
    assert old[0]["class_names"] == ["landbird", "waterbird"]
