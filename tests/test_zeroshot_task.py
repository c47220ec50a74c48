"""The zero-shot task without a Trainer: ⊕max on hand-made logits, fallbacks, label spaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from occam_l2r.errors import UserError
from occam_l2r.models.prompts import (
    ClassNamesError,
    LabelSpaceError,
    prompt_classes,
    read_class_names_file,
    resolve_templates,
)
from occam_l2r.tasks.base import metric_key
from occam_l2r.tasks.zeroshot import ZeroShotTask, output_table
from tests._clip_tiny import TINY_VIT


class IdentityClassifier:
    """Stands in for ZeroShotClassifier: an image's 'features' are its first pixels, its logits
    those features; records which rows it was asked to encode."""

    def __init__(self, num_classes: int) -> None:
        self.k = num_classes
        self.encoded: list[int] = []

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        self.encoded.append(len(images))
        return images.float().flatten(1)[:, : self.k]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _image(logits: list[float]) -> torch.Tensor:
    """A (3, 2, 2) float 'image' whose first pixels are ``logits``."""
    x = torch.zeros(12)
    x[: len(logits)] = torch.tensor(logits)
    return x.view(3, 2, 2)


@pytest.fixture()
def task() -> ZeroShotTask:
    t = ZeroShotTask(model_name=TINY_VIT, num_classes=3, prototype_cache=None)
    t.views = ["FULL", "FG_C", "BG_S"]
    t.fusions = [("FG_C", "FULL"), ("FG_C", "BG_S")]
    t.zeroshot = IdentityClassifier(3)
    return t


def test_max_conf_takes_the_more_confident_view(task):
    full = [_image([1.0, 1.2, 1.0]), _image([0.0, 9.0, 0.0])]  # sample 0 unsure, 1 sure
    fg = [_image([6.0, 0.0, 0.0]), _image([0.0, 0.0, 2.0])]  # sample 0 sure, 1 unsure
    bg = [_image([0.0, 0.0, 0.1]), _image([0.0, 0.0, 50.0])]
    batch = {
        "views": {"FULL": torch.stack(full), "FG_C": torch.stack(fg), "BG_S": torch.stack(bg)},
        "fallbacks": {v: torch.zeros(2) for v in ("FULL", "FG_C", "BG_S")},
    }
    out = task.outputs_of(batch)
    assert list(out) == ["FULL", "FG_C", "BG_S", "FG_C+FULL", "FG_C+BG_S"]
    assert out["FG_C+FULL"][0].argmax(1).tolist() == [0, 1]  # FG for 0, FULL for 1
    torch.testing.assert_close(out["FG_C+FULL"][0][0], out["FG_C"][0][0])
    torch.testing.assert_close(out["FG_C+FULL"][0][1], out["FULL"][0][1])
    assert out["FG_C+BG_S"][0].argmax(1).tolist() == [0, 2]
    assert task.primary == "FG_C+FULL"


def test_fallback_views_reuse_full_and_are_counted(task):
    """A view that fell back is the FULL image: not encoded again, flagged in its outputs."""
    n = 4
    full = torch.stack([_image([0.0, 3.0, 0.0])] * n)
    fg = torch.stack([_image([5.0, 0.0, 0.0])] * n)
    fell = torch.tensor([1.0, 0.0, 1.0, 0.0])
    fg[fell.bool()] = full[fell.bool()]  # what the views give on a fallback
    batch = {
        "views": {"FULL": full, "FG_C": fg, "BG_S": fg.clone()},
        "fallbacks": {"FULL": torch.zeros(n), "FG_C": fell, "BG_S": fell},
        "label": torch.tensor([0, 0, 1, 1]),
        "group": torch.zeros(n, dtype=torch.long),
    }
    task.split_names = {"val": [], "test": ["test"], "predict": []}
    task.group_names = ["on_own_background", "elsewhere"]
    for key in ["test", *(f"test/{o}" for o in task.outputs)]:
        task.eval_metrics[metric_key(key)] = task.make_metrics()
    task.evaluate("test", batch, 0)
    assert task.zeroshot.encoded == [4, 2, 2]  # FULL all, FG_C and BG_S only their 2 own rows
    values = {}
    for key in ["test", *(f"test/{o}" for o in task.outputs)]:
        values.update(task.split_values(key))
    assert float(values["test/FULL/fallback_rate"]) == 0.0
    assert float(values["test/FG_C/fallback_rate"]) == 0.5
    assert (
        float(values["test/FG_C+FULL/fallback_rate"]) == 0.5 == float(values["test/fallback_rate"])
    )
    # rows 1, 3: FG says 0 (sure), rows 0, 2 fell back: FULL says 1 -> labels 0, 0, 1, 1: 2 of 4
    assert float(values["test/FG_C+FULL/acc"]) == 0.5 == float(values["test/acc"])
    assert float(values["test/FULL/acc"]) == 0.5 and float(values["test/FG_C/num_samples"]) == 4
    assert "| FG_C+FULL | 50.00 / 50.00 |" in output_table(values, ["test"], task.outputs)


def test_a_dataset_without_groups_is_evaluated(task):
    """One group (torchmetrics returns its accuracy as a 0-d tensor) is no error."""
    task.split_names = {"val": [], "test": ["test"], "predict": []}
    task.group_names = []
    task.eval_metrics[metric_key("test/FULL")] = task.make_metrics()
    task.update_metrics("test/FULL", {"label": torch.tensor([0, 1])}, torch.eye(3)[:2])
    values = task.split_values("test/FULL")
    assert float(values["test/FULL/acc"]) == 1.0 == float(values["test/FULL/worst_group_acc"])


def test_imagenet_label_space_maps_labels(task):
    task.label_map = torch.tensor([7, 3, 999])
    batch = task.on_after_batch_transfer({"label": torch.tensor([0, 2, -1, 1])}, 0)
    assert batch["label"].tolist() == [7, 999, -1, 3]


def test_fusions_must_name_two_views(task):
    task.hparams.fusions = ["FG_C+FG_M"]
    with pytest.raises(UserError, match="FG_C\\+FG_M"):
        task._fusions()
    task.hparams.fusions = ["BG_S+FULL"]
    assert task._fusions() == [("BG_S", "FULL")]


def test_centercrop_view_is_the_centred_square():
    """CENTERCROP resized to the input is CLIP's resize-shorter-side + centre crop."""
    from occam_l2r.views import apply_view

    image = np.arange(40 * 80 * 3, dtype=np.uint8).reshape(40, 80, 3)
    out = apply_view("CENTERCROP", image, None)
    assert out.fallback is None and np.array_equal(out.image, image[:, 20:60])
    tall = apply_view("CENTERCROP", image.transpose(1, 0, 2), None).image
    assert np.array_equal(tall, image.transpose(1, 0, 2)[20:60])


# ---------------------------------------------------------------------- prompts and label spaces
def test_templates_named_sets_files_and_strings(tmp_path):
    assert len(resolve_templates("openai_imagenet")) == 80
    assert all("{c}" in t for t in resolve_templates("simple_imagenet"))
    path = tmp_path / "t.txt"
    path.write_text("# digits\na photo of the digit {c}.\n\na drawing of {c}\n")
    assert resolve_templates(str(path)) == ["a photo of the digit {c}.", "a drawing of {c}"]
    assert resolve_templates(["{c}"]) == ["{c}"]
    with pytest.raises(ClassNamesError, match="needs \\{c\\}"):
        resolve_templates(["a photo"])


def test_class_name_files(tmp_path):
    classes = ["zero", "one", "two"]
    txt = tmp_path / "names.txt"
    txt.write_text("digit zero\ndigit one\ndigit two\n")
    assert read_class_names_file(txt, classes) == ["digit zero", "digit one", "digit two"]
    js = tmp_path / "names.json"
    js.write_text(json.dumps({"two": "2", "zero": "0", "one": "1"}))
    assert prompt_classes(classes, class_names_file=str(js)).names == ["0", "1", "2"]
    short = tmp_path / "short.txt"
    short.write_text("a\nb\n")
    with pytest.raises(ClassNamesError, match=r"short.txt has 2 names but the dataset has 3"):
        read_class_names_file(short, classes)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"zero": "0", "one": "1", "seven": "7"}))
    with pytest.raises(ClassNamesError, match=r"wrong.json.*missing \(first: \['two'\]\).*'seven'"):
        read_class_names_file(wrong, classes)
    with pytest.raises(ClassNamesError, match="not found"):
        read_class_names_file(tmp_path / "absent.txt", classes)


def test_imagenet1k_label_space():
    space = prompt_classes(["goldfish", "tench"], "imagenet1k", imagenet_indices=[1, 0])
    assert len(space.names) == 1000 and space.label_map == [1, 0]
    assert space.names[0] == "tench"
    with pytest.raises(LabelSpaceError, match="imagenet_class_indices is None"):
        prompt_classes(["a", "b"], "imagenet1k", imagenet_indices=None, dataset_name="Spawrious")
    with pytest.raises(LabelSpaceError, match="out of range"):
        prompt_classes(["a", "b"], "imagenet1k", imagenet_indices=[0, 1000])
