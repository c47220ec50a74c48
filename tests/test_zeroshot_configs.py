"""The paper presets of configs/zeroshot/ compose (base + model overlay + dataset overlay)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.models.zeroshot import PRESETS

CONFIGS = Path(__file__).parents[1] / "configs" / "zeroshot"
DATASETS = {
    "spawrious": "Spawrious",
    "hard_imagenet": "HardImageNet",
    "stanford_dogs": "StanfordDogs",
    "counteranimal": "CounterAnimal",
    "fungitastic": "FungiTasticMini",
}


@pytest.mark.parametrize(
    ("dataset", "model"),
    [
        ("spawrious", None),
        ("hard_imagenet", "clip_l14"),
        ("stanford_dogs", "clip_b32"),
        ("counteranimal", None),
        ("fungitastic", None),
    ],  # fmt: skip
)
def test_presets_compose(dataset, model, capsys):
    configs = [CONFIGS / "base.yaml"]
    configs += [CONFIGS / "models" / f"{model}.yaml"] if model else []
    configs += [CONFIGS / f"{dataset}.yaml"]
    args = [a for c in configs for a in ("--config", str(c))]
    with pytest.raises(SystemExit) as done:
        main(["test", *args, "--print_config"])
    assert done.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    init = config["model"]["init_args"]
    expected = {None: "bioclip" if dataset == "fungitastic" else "siglip2"}.get(model)
    assert init["model_name"] == (expected or model.replace("_", "-"))
    assert init["model_name"] in PRESETS
    data = config["data"]["init_args"]
    assert data["dataset"]["class_path"].endswith("." + DATASETS[dataset])
    assert data["view"] == ["FULL", "FG_C", "BG_S", "CENTERCROP"]
    assert data["image_size"] == 256  # L2R² §4.3: every VLM's input is 256 x 256
