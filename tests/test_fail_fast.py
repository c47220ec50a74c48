"""Fail before the Trainer, with one message: each user-facing fault a new user meets (issue 19).

Every case runs ``python -m occam_l2r`` in this process (``main()`` reading ``sys.argv``, as the
command line does) and asserts exit status 3, one ``occam_l2r VERB: error:`` line naming the
value at fault and the fix (the flag spelt as the command line spells it), no traceback, and no
run folder left behind. Before issue 19 the GPU backend, the missing ``wandb`` and the store
coverage cases ended in a traceback (exit 1), and the weights error named ``model.checkpoint_path``,
which is no flag.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import occam_l2r.commands.lightning  # noqa: F401  (Lightning's log handlers bind the real stderr, not a test's)
from tests.test_config_errors import cli_in_process
from tests.test_errors import TINY_FIT, assert_one_message


def _fit_args(root: Path, out: Path) -> list:
    return ["fit", "--config", TINY_FIT, "--data.init_args.dataset.init_args.root", root,
            "--trainer.logger.init_args.save_dir", out,
            "--trainer.default_root_dir", out]  # fmt: skip


def _left(out: Path) -> list[str]:
    """Every file and folder under ``out`` (a failed start leaves none)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_gpu_accelerator_without_gpu(tmp_path, tiny_synthetic_root, monkeypatch, capsys) -> None:
    out = tmp_path / "runs"
    args = [*_fit_args(tiny_synthetic_root, out), "--trainer.accelerator", "gpu"]
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    line = assert_one_message(
        proc, "fit", "--trainer.accelerator gpu", "--trainer.accelerator auto", "cpu"
    )
    assert "No supported gpu backend" in line
    assert _left(out) == []


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_logger_without_wandb(tmp_path, tiny_synthetic_root, monkeypatch, capsys) -> None:
    out = tmp_path / "runs"
    wandb = "lightning.pytorch.loggers.WandbLogger"
    args = [*_fit_args(tiny_synthetic_root, out), "--trainer.logger.class_path", wandb]
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "fit", wandb, "package wandb", "pip install", "TensorBoardLogger")
    assert _left(out) == []


def test_store_missing_images(tmp_path, tiny_synthetic_root, monkeypatch, capsys) -> None:
    """A store that misses images of a split: the one message names the store and both fixes,
    and the failed start gives its version folder back."""
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from occam_l2r.store import Segmentation, StoreWriter

    records = SyntheticSpurious(root=str(tiny_synthetic_root)).records("train")[:2]
    segs = []
    for rec in records:
        mask = np.zeros((64, 80), bool)  # the synthetic images' size
        mask[8:40, 8:40] = True
        segs.append(Segmentation.from_masks(rec.image_id, [mask]))
    store = tmp_path / "partial_store"
    writer = StoreWriter(store, "gt", {"segmenter": "gt"})
    writer.write(segs)
    writer.close()
    out = tmp_path / "runs"
    args = [*_fit_args(tiny_synthetic_root, out), "--data.init_args.segmentation", store]
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(
        proc, "fit", "are not in the segmentation store", str(store), "occam_l2r segment",
        "--data.init_args.on_missing full",
    )  # fmt: skip
    assert _left(out) == []


def test_weights_file_names_the_flag(tmp_path, tiny_synthetic_root, monkeypatch, capsys) -> None:
    out = tmp_path / "runs"
    missing = tmp_path / "convnextv2_atto.safetensors"
    args = [*_fit_args(tiny_synthetic_root, out), "--model.init_args.pretrained", "true",
            "--model.init_args.checkpoint_path", missing]  # fmt: skip
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    line = assert_one_message(proc, "fit", f"--model.init_args.checkpoint_path {missing}")
    assert "model.checkpoint_path" not in line.replace("model.init_args.checkpoint_path", "")
    assert _left(out) == []


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--config", "nope.yaml"], ["nope.yaml", "does not exist"]),
        (["--data.init_args.batch_sise", "4"], ["batch_sise", "spelling"]),
        (["--data.init_args.batch_size", "abc"], ["batch_size", "'abc'"]),
    ],
    ids=["missing-config", "key-typo", "non-numeric"],
)
def test_parse_faults(
    tmp_path, tiny_synthetic_root, monkeypatch, capsys, extra: list, needles: list
) -> None:
    out = tmp_path / "runs"
    proc = cli_in_process([*_fit_args(tiny_synthetic_root, out), *extra], tmp_path, monkeypatch,
                          capsys)  # fmt: skip
    assert_one_message(proc, "fit", *needles)
    assert _left(out) == []


@pytest.mark.parametrize("verb", ["test", "validate", "predict"])
def test_missing_ckpt_path(tmp_path, tiny_synthetic_root, monkeypatch, capsys, verb) -> None:
    out = tmp_path / "runs"
    args = [verb, *_fit_args(tiny_synthetic_root, out)[1:], "--ckpt_path", tmp_path / "no.ckpt"]
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, verb, f"checkpoint {tmp_path / 'no.ckpt'} does not exist", "ckpt_path")
    assert _left(out) == []


def test_empty_dataset_root(tmp_path, monkeypatch, capsys) -> None:
    """A real reader (Waterbirds) on an empty folder: one message naming the folder it wants."""
    empty = tmp_path / "waterbirds"
    empty.mkdir()
    out = tmp_path / "runs"
    args = [*_fit_args(empty, out),
            "--data.init_args.dataset.class_path", "occam_l2r.data.datasets.waterbirds.Waterbirds",
            "--data.init_args.view", "FULL", "--data.init_args.segmentation", "null"]  # fmt: skip
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "fit", str(empty), "metadata.csv")
    assert _left(out) == []
