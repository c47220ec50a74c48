"""L2R² Table 15 (Spawrious, ResNet-50): timm vs torchvision initialisation, and the distorted
FG crops, through ``create_classifier``, the shipped configs and a tiny ``fit``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import yaml

from occam_l2r.cli import main
from occam_l2r.models.backbones import create_classifier, normalization
from occam_l2r.weights import WeightsFileError, WeightsNotFoundError
from tests.conftest import tiny_fit_args

CONFIGS = Path(__file__).parents[1] / "configs"


def test_torchvision_constructor_with_a_new_head():
    model = create_classifier("torchvision:resnet18", 4)
    assert model.fc.out_features == 4 and model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 4)
    mean, std = normalization(model)  # the weights' own transform
    assert mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    assert std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    with pytest.raises(ValueError, match="has no weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        create_classifier("torchvision:resnet18.IMAGENET9K", 4)
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet51'"):
        create_classifier("torchvision:resnet51", 4)
    with pytest.raises(ValueError, match="no stochastic depth"):
        create_classifier("torchvision:resnet18", 4, drop_path_rate=0.1)


def test_torchvision_weights_local_or_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    start = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match=r"resnet50-0676ba61\.pth.*checkpoint_path"):
        create_classifier("torchvision:resnet50.IMAGENET1K_V1", 4, pretrained=True)
    with pytest.raises(WeightsNotFoundError, match=r"resnet50\.tv_in1k"):
        create_classifier("resnet50.tv_in1k", 4, pretrained=True)  # timm's copy: HF cache only
    assert time.perf_counter() - start < 10
    from torchvision.models import mobilenet_v3_small

    src = mobilenet_v3_small()
    torch.save(src.state_dict(), tmp_path / "w.pth")
    name = "torchvision:mobilenet_v3_small"
    model = create_classifier(name, 4, pretrained=True, checkpoint_path=str(tmp_path / "w.pth"))
    assert torch.equal(model.features[0][0].weight, src.features[0][0].weight)
    assert model.classifier[-1].out_features == 4
    torch.save({"nope": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsFileError, match="bad.pth"):
        create_classifier(name, 4, pretrained=True, checkpoint_path=str(tmp_path / "bad.pth"))


@pytest.mark.parametrize(
    ("name", "model_name", "view", "aspect"),
    [
        ("resnet50_timm_full", "resnet50.a1_in1k", "FULL", "pad"),
        ("resnet50_timm_fg_c", "resnet50.a1_in1k", "FG_C", "pad"),
        ("resnet50_timm_fg_c_distorted", "resnet50.a1_in1k", "FG_C", "stretch"),
        ("resnet50_torchvision_full", "torchvision:resnet50.IMAGENET1K_V1", "FULL", "pad"),
        ("resnet50_torchvision_fg_c", "torchvision:resnet50.IMAGENET1K_V1", "FG_C", "pad"),
        ("resnet50_torchvision_fg_c_distorted", "torchvision:resnet50.IMAGENET1K_V1", "FG_C",
         "stretch"),
    ],
)  # fmt: skip
def test_configs_compose_with_the_template(capsys, name, model_name, view, aspect):
    template = CONFIGS / "templates" / "convnextv2_base.yaml"
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(template), "--config", str(CONFIGS / "spawrious" /
              f"{name}.yaml"), "--print_config"])  # fmt: skip
    assert exc.value.code == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert model["model_name"] == model_name and model["lr"] == 1e-5
    assert model["drop_path_rate"] == 0.0 and model["pretrained"] is True
    assert data["view"] == view and data["fg_aspect"] == aspect and data["crop_box"] == "mask"
    assert data["dataset"]["init_args"]["split_variant"] == "env1_97"
    assert data["dataset"]["init_args"]["root"] == "/path/to/spawrious"  # the template's


@pytest.mark.slow
def test_fit_torchvision_model_on_distorted_fg(tmp_path, synthetic_copy):
    """``fit`` through the CLI with a torchvision constructor and stretched FG_C crops."""
    root = synthetic_copy
    out = tmp_path / "runs"
    main(["fit", *tiny_fit_args(root, out), "--model.init_args.model_name",
          "torchvision:resnet18", "--data.init_args.fg_aspect", "stretch",
          "--test_after_fit", "false"])  # fmt: skip
    run = out / "tiny" / "FG_C" / "version_0"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["init_args"]["fg_aspect"] == "stretch"
    assert cfg["model"]["init_args"]["model_name"] == "torchvision:resnet18"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["state_dict"]["model.fc.weight"].shape == (4, 512)
    assert ckpt["datamodule_hyper_parameters"]["fg_aspect"] == "stretch"
