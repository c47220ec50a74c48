"""The classifier's GPU speed options (issue 21, item 5), on CPU through ``fit``: channels-last
memory format and ``torch.compile``, both off by default, and the GPU templates' bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from occam_l2r.cli import main
from occam_l2r.tasks.classifier import ClassifierTask
from tests.conftest import tiny_fit_args

REPO = Path(__file__).resolve().parents[1]


def _fit(root: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return main(["fit", *tiny_fit_args(root, out), *extra])


def _checkpoint_keys(out: Path) -> list[str]:
    (ckpt,) = sorted(out.rglob("*.ckpt"))[-1:]
    return sorted(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])


def _plain_keys() -> list[str]:
    return sorted(ClassifierTask(model_name="convnextv2_atto", num_classes=4).state_dict())


def test_options_are_off_by_default() -> None:
    task = ClassifierTask(model_name="convnextv2_atto", num_classes=4)
    assert task.hparams.channels_last is False and task.hparams.compile is False
    assert task.model._compiled_call_impl is None
    stem = task.model.stem[0].weight
    assert stem.is_contiguous() and not stem.is_contiguous(memory_format=torch.channels_last)
    image = task.on_after_batch_transfer({"image": torch.zeros(2, 3, 8, 8)}, 0)["image"]
    assert image.is_contiguous()


@pytest.mark.slow
def test_channels_last_fit(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    cli = _fit(tiny_synthetic_root, tmp_path / "cl", "--model.init_args.channels_last", "true")
    task = cli.model
    assert cli.trainer.state.finished and cli.trainer.global_step > 0
    conv = [m.weight for m in task.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv)
    batch = {"image": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)}
    image = task.on_after_batch_transfer(batch, 0)["image"]
    assert image.is_contiguous(memory_format=torch.channels_last)
    assert _checkpoint_keys(tmp_path / "cl") == _plain_keys()


@pytest.mark.slow
def test_compile_fit(tiny_synthetic_root: Path, tmp_path: Path) -> None:
    # dynamo traces the backbone; the eager backend keeps CPU compile time out of the test
    # (inductor's C++ compilation of a train and an eval graph takes minutes on 2 busy cores)
    args = ["--model.init_args.compile", "true",
            "--model.init_args.compile_options", '{"backend": "eager"}']  # fmt: skip
    cli = _fit(tiny_synthetic_root, tmp_path / "compiled", *args)
    task = cli.model
    assert cli.trainer.state.finished and cli.trainer.global_step > 0
    assert task.model._compiled_call_impl is not None, "the backbone runs compiled"
    # compiled in place: the checkpoint keeps the plain keys (no _orig_mod. prefix)
    assert _checkpoint_keys(tmp_path / "compiled") == _plain_keys()


def test_gpu_templates_train_in_bf16() -> None:
    template = yaml.safe_load((REPO / "configs" / "templates" / "convnextv2_base.yaml").read_text())
    assert template["trainer"]["precision"] == "bf16-mixed"
