"""L2R²'s zero-shot settings in the shipped configs, and the timm ImageNet-1k checkpoint as FULL.

- every VLM gets 256 x 256 views (L2R² §4.3, "The input resolution to the models is 256×256"),
  the CLIP and BioCLIP presets included (they used to make them at 224);
- the template is exactly "A photo of a {c}" (§4.3: capital A, no period);
- the zero-shot task resizes the views with its model's interpolation, training and evaluation
  alike;
- ``configs/imagenet/full_timm_checkpoint.yaml`` evaluates the timm checkpoint as is (§4.2, "a
  single checkpoint from Timm"): no training, and offline without the weights it stops at once
  with the missing-weights message (exit status 3).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning as L
import pytest
import yaml

from occam_l2r.cli import main
from occam_l2r.models.zeroshot import DEFAULT_TEMPLATE
from tests.conftest import TINY, load_fake

CONFIGS = Path(__file__).parents[1] / "configs"
ZS = CONFIGS / "zeroshot"
TIMM_FULL = [
    CONFIGS / "templates" / "convnextv2_base.yaml",
    CONFIGS / "imagenet" / "data.yaml",
    CONFIGS / "imagenet" / "convnextv2_tiny.yaml",
    CONFIGS / "templates" / "views" / "full.yaml",
    CONFIGS / "imagenet" / "full_timm_checkpoint.yaml",
]


def _composed(configs: list[Path], capsys, verb: str = "test") -> dict:
    args = [a for c in configs for a in ("--config", str(c))]
    with pytest.raises(SystemExit) as done:
        main([verb, *args, "--print_config"])
    assert done.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("model", [None, "clip_b32", "clip_l14", "bioclip"])
@pytest.mark.parametrize("dataset", ["spawrious", "fungitastic"])
def test_every_vlm_gets_256_px_views_and_the_papers_template(model, dataset, capsys):
    configs = [ZS / "base.yaml", *([ZS / "models" / f"{model}.yaml"] if model else [])]
    config = _composed([*configs, ZS / f"{dataset}.yaml"], capsys)
    assert config["data"]["init_args"]["image_size"] == 256
    assert config["data"]["init_args"]["interpolation"] is None  # the model's own
    assert config["model"]["init_args"]["templates"] == "A photo of a {c}"


def test_default_template_is_l2r2s_exactly():
    assert DEFAULT_TEMPLATE == "A photo of a {c}"
    import inspect

    from occam_l2r.tasks.zeroshot import ZeroShotTask

    templates = inspect.signature(ZeroShotTask.__init__).parameters["templates"]
    assert templates.default == DEFAULT_TEMPLATE


def test_zeroshot_views_resize_with_the_models_interpolation(synthetic_copy):
    from occam_l2r.data.datamodule import ViewDataModule
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.tasks.zeroshot import ZeroShotTask

    dm = ViewDataModule(
        SyntheticSpurious(root=str(synthetic_copy), **TINY), view="FULL", segmentation=None,
        image_size=32, batch_size=4, num_workers=0, eval_resize="center_crop",
    )  # fmt: skip
    task = ZeroShotTask("occam-tiny-convnext", num_classes=dm.num_classes, prototype_cache=None)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
    )  # fmt: skip
    trainer.validate(task, datamodule=dm, verbose=False)
    assert dm.interpolation == task.clip.interpolation == "bicubic"
    crop = dm.val_dataloader().dataset.transform.transforms[0]
    assert crop.crop_pct == 1.0  # open_clip keeps the whole shorter side


def test_timm_checkpoint_full_config_evaluates_the_checkpoint_as_is(capsys):
    config = _composed(TIMM_FULL, capsys)
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    assert model["model_name"] == "convnextv2_tiny.fcmae_ft_in1k"
    assert model["pretrained"] is True and model["checkpoint_path"] is None
    assert data["view"] == "FULL" and data["segmentation"] is None
    assert data["eval_resize"] == "squash" and data["interpolation"] is None
    assert config["data"]["init_args"]["dataset"]["class_path"].endswith("ImageNet")


def test_timm_checkpoint_full_config_fails_fast_offline(tmp_path, monkeypatch, capsys):
    """Offline and without the weights in the cache: one message naming the checkpoint and
    ``--model.init_args.checkpoint_path``, exit status 3, within seconds (the dataset is a fake)."""
    from huggingface_hub import constants

    root = load_fake("imagenet").make_fake(tmp_path / "in1k", "devkit")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.delenv("OCCAM_L2R_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    args = [a for c in TIMM_FULL for a in ("--config", str(c))]
    args += ["--data.init_args.dataset.init_args.root", str(root),
             "--data.init_args.dataset.init_args.clean_labels", str(root / "clean_validation.csv"),
             "--data.init_args.num_workers", "0"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["occam_l2r", "test", *args])
    capsys.readouterr()
    start = time.perf_counter()
    with pytest.raises(SystemExit) as done:
        main()
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err
    assert done.value.code == 3, err
    assert "convnextv2_tiny.fcmae_ft_in1k" in err and "--model.init_args.checkpoint_path" in err
    assert "HF_HUB_OFFLINE" in err
    run = tmp_path / "checkpoints" / "imagenet" / "FULL_timm" / "timm_in1k"
    assert not (run / "test_metrics.json").exists()
