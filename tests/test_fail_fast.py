"""Fail before the Trainer, with one message: each user-facing fault a new user meets (issue 19).

Every case runs ``python -m occam_l2r`` in this process (``main()`` reading ``sys.argv``, as the
command line does) and asserts exit status 3, one ``occam_l2r VERB: error:`` line naming the
value at fault and the fix (the flag spelt as the command line spells it), no traceback, and no
run folder left behind. Before issue 19 the GPU backend, the missing ``wandb`` and the store
coverage cases ended in a traceback (exit 1), and the weights error named ``model.checkpoint_path``,
which is no flag.
"""

from __future__ import annotations

import contextvars
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import occam_l2r.commands.lightning  # noqa: F401  (Lightning's log handlers bind the real stderr, not a test's)
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.records import RecordDataset
from tests.conftest import TINY, load_fake
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


@pytest.mark.parametrize("generated", [True, False], ids=["synthetic", "real-reader"])
def test_segment_unknown_split(
    tmp_path, tiny_synthetic_root, monkeypatch, capsys, generated
) -> None:
    """``segment --data.splits`` naming no split of the dataset: one message naming the value,
    the dataset's splits and the flag as ``segment`` spells it; no store written. ``real-reader``:
    a dataset whose records exist on disk (checked before the Trainer), ``synthetic``: one that
    creates its data (checked once it exists, before the store)."""
    from tests._segment_tiny import segment_config, write_config

    gt = {"class_path": "occam_l2r.segment.segmenters.GroundTruth"}
    store = tmp_path / "store"
    cfg = segment_config(tiny_synthetic_root, gt, store, splits=["train", "tset"])
    cfg["data"]["dataset"]["init_args"] = {"root": str(tiny_synthetic_root), **TINY}
    if not generated:  # the same images, read by a reader that does not create them
        monkeypatch.setattr(SyntheticSpurious, "prepare", RecordDataset.prepare)
    conf = write_config(tmp_path / "segment.yaml", cfg)
    proc = cli_in_process(["segment", "--config", conf], tmp_path, monkeypatch, capsys)
    line = assert_one_message(proc, "segment", "--data.splits names 'tset'", "'test_id'",
                              "SyntheticSpurious", str(tiny_synthetic_root))  # fmt: skip
    assert "init_args.splits" not in line
    assert not store.exists()


def test_messages_spell_flags_as_segment_and_occam_do(tmp_path) -> None:
    """The messages of readers and models shared by every verb name the flag through
    ``option_flag``: under ``segment``/``occam`` (fixed classes) without ``init_args``."""
    from occam_l2r.data.datasets._layout import DatasetLayoutError
    from occam_l2r.data.datasets.imagenet9 import ImageNet9
    from occam_l2r.errors import use_option_spelling
    from occam_l2r.models.prompts import ClassNamesError, read_class_names_file

    in9 = load_fake("imagenet9")
    root = in9.make_fake(tmp_path / "bg_challenge", per_class=1)
    in9.write_training_tarball(root, "mixed_rand")

    def as_segment() -> None:  # in a context of its own, as a verb runs
        use_option_spelling(())
        with pytest.raises(DatasetLayoutError, match="--data.dataset.init_args.train_root DIR"):
            ImageNet9(root=str(root))
        with pytest.raises(ClassNamesError, match=r"\(--model.class_names_file\)"):
            read_class_names_file(tmp_path / "none.txt", ["a", "b"])

    contextvars.copy_context().run(as_segment)
    with pytest.raises(DatasetLayoutError, match="--data.init_args.dataset.init_args.train_root"):
        ImageNet9(root=str(root))  # fit's spelling outside a verb
