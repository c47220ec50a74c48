"""The data is checked before a Trainer is built, and messages spell flags as the verb does.

Issue 19, item 2. Each case runs ``python -m occam_l2r`` in this process (``main()`` reading
``sys.argv``) with ``lightning.pytorch.Trainer.__init__`` counting its calls:

- a segmenter's weights file that is not there (``segment``: weights first, then data), a
  dataset folder that is not there, a segmentation store that is not there (``fit``, ``occam``)
  and a FungiTastic size that is not downloaded (``segment``) are one message, exit 3, and no
  Trainer was built (before the pre-flight check, ``setup`` found them after the Trainer);
- the same store-coverage fault through ``fit`` and through ``occam`` names each verb's flag
  (``--data.init_args.on_missing`` / ``--data.on_missing``), as does FungiTastic's size error
  through ``segment`` (``--data.dataset.init_args.image_size_folder``);
- the spelling ends with the verb: a message raised outside any verb afterwards is ``fit``'s.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest

import occam_l2r.commands.lightning  # noqa: F401  (Lightning's log handlers bind the real stderr, not a test's)
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.errors import option_flag, use_option_spelling
from occam_l2r.store import Segmentation, StoreWriter
from tests._clip_tiny import save_tiny_clip
from tests.conftest import TINY, load_fake
from tests.test_config_errors import cli_in_process
from tests.test_errors import TINY_FIT, assert_one_message

CONFIGS = Path(__file__).parents[1] / "configs"
WATERBIRDS = "occam_l2r.data.datasets.waterbirds.Waterbirds"
FUNGI = "occam_l2r.data.datasets.fungitastic.FungiTasticMini"


@pytest.fixture
def trainers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the Trainers built (one entry each)."""
    built: list[int] = []
    init = pl.Trainer.__init__

    @functools.wraps(init)  # the parser reads the Trainer's signature
    def counted(self, *args, **kwargs) -> None:
        built.append(1)
        init(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", counted)
    return built


def _fit(root: Path, out: Path, *extra) -> list:
    return ["fit", "--config", TINY_FIT, "--data.init_args.dataset.init_args.root", root,
            "--trainer.logger.init_args.save_dir", out, "--trainer.default_root_dir", out,
            *extra]  # fmt: skip


def _left(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")) if out.exists() else []


def _partial_store(root: Path, folder: Path, split: str, keep: int) -> Path:
    """A store of the tiny benchmark's images of ``split`` that holds only the first ``keep``."""
    segs = []
    for rec in SyntheticSpurious(root=str(root), **TINY).records(split)[:keep]:
        mask = np.zeros((64, 80), bool)  # the synthetic images' size
        mask[8:40, 8:40] = True
        segs.append(Segmentation.from_masks(rec.image_id, [mask]))
    writer = StoreWriter(folder, "gt", {"segmenter": "gt"})
    writer.write(segs)
    writer.close()
    return folder


def _occam(root: Path, tmp_path: Path, source: Path, *extra: str) -> list:
    args = ["occam", "--config", CONFIGS / "synthetic" / "occam.yaml",
            "--data.dataset.init_args.root", root, "--data.mask_sources", f"[{source}]",
            "--model.model_name", "occam-tiny-vit",
            "--model.pretrained", save_tiny_clip(tmp_path / "tiny_vit.pt"),
            "--model.prototype_cache", tmp_path / "prototypes", "--data.splits", "[test_id]",
            "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", tmp_path / "occam", *extra]  # fmt: skip
    for key, value in TINY.items():
        args += [f"--data.dataset.init_args.{key}", value]
    return args


# ---------------------------------------------------------------- before the Trainer
def test_fit_missing_dataset_root(tmp_path, monkeypatch, capsys, trainers) -> None:
    missing = tmp_path / "no_waterbirds"
    out = tmp_path / "runs"
    args = _fit(missing, out, "--data.init_args.dataset.class_path", WATERBIRDS,
                "--data.init_args.view", "FULL")  # fmt: skip
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "fit", str(missing), "Waterbirds")
    assert trainers == [] and _left(out) == []


def test_fit_missing_store(tmp_path, tiny_synthetic_root, monkeypatch, capsys, trainers) -> None:
    out = tmp_path / "runs"
    store = tmp_path / "no_store"
    args = _fit(tiny_synthetic_root, out, "--data.init_args.segmentation", store)
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "fit", "no segmentation store", str(store), "occam_l2r segment")
    assert trainers == [] and _left(out) == []


def test_fit_view_without_segmentation(
    tmp_path, tiny_synthetic_root, monkeypatch, capsys, trainers
) -> None:
    out = tmp_path / "runs"
    args = _fit(tiny_synthetic_root, out, "--data.init_args.segmentation", "null")
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "fit", "--data.init_args.view ['FG_C'] needs data.segmentation",
                       "--data.init_args.segmentation")  # fmt: skip
    assert trainers == [] and _left(out) == []


def test_occam_missing_mask_source(
    tmp_path, tiny_synthetic_root, monkeypatch, capsys, trainers
) -> None:
    store = tmp_path / "no_regions"
    proc = cli_in_process(_occam(tiny_synthetic_root, tmp_path, store), tmp_path, monkeypatch,
                          capsys)  # fmt: skip
    assert_one_message(proc, "occam", "no segmentation store", str(store))
    assert trainers == [] and _left(tmp_path / "occam") == []


def test_segment_size_not_downloaded(tmp_path, monkeypatch, capsys, trainers) -> None:
    """FungiTastic downloaded at 300p, read at 500p through ``segment``: the message comes
    before the Trainer and names segment's flag (no ``init_args`` after ``data``)."""
    root = tmp_path / "FungiTastic"
    load_fake("fungitastic").make_fake(root, with_masks=False, size="300p")
    args = ["segment", "--config", CONFIGS / "segment" / "synthetic_regions.yaml",
            "--data.dataset.class_path", FUNGI, "--data.dataset.init_args.root", root,
            "--data.splits", "null", "--data.num_workers", "0"]  # fmt: skip
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    line = assert_one_message(proc, "segment", "--data.dataset.init_args.image_size_folder 300p")
    assert "--data.init_args" not in line
    assert trainers == []


def test_segment_missing_weights_first(tmp_path, monkeypatch, capsys, trainers) -> None:
    """Weights, then data: a missing SAM checkpoint (and a missing dataset) is the weights'
    message, before the Trainer (the segment verb checked them after it)."""
    ckpt = tmp_path / "weights" / "sam_vit_h_4b8939.pth"
    args = ["segment", "--config", CONFIGS / "segment" / "waterbirds_sam_auto.yaml",
            "--model.segmenter.init_args.sam.checkpoint", ckpt,
            "--data.dataset.init_args.root", tmp_path / "waterbirds", "--data.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.devices", "1"]  # fmt: skip
    proc = cli_in_process(args, tmp_path, monkeypatch, capsys)
    assert_one_message(proc, "segment", str(ckpt))
    assert trainers == []


# ---------------------------------------------------------------- the flag of each verb
def test_store_coverage_names_each_verbs_flag(
    tmp_path, tiny_synthetic_root, monkeypatch, capsys
) -> None:
    """The same fault (a store missing images of a split) through ``fit`` and ``occam``."""
    store = _partial_store(tiny_synthetic_root, tmp_path / "partial", "train", keep=2)
    out = tmp_path / "runs"
    fit = _fit(tiny_synthetic_root, out, "--data.init_args.segmentation", store)
    line = assert_one_message(cli_in_process(fit, tmp_path, monkeypatch, capsys), "fit",
                              "--data.init_args.on_missing full")  # fmt: skip
    assert str(store) in line and _left(out) == []

    store = _partial_store(tiny_synthetic_root, tmp_path / "partial_test", "test_id", keep=2)
    occam = _occam(tiny_synthetic_root, tmp_path, store)
    line = assert_one_message(cli_in_process(occam, tmp_path, monkeypatch, capsys), "occam",
                              "--data.on_missing empty")  # fmt: skip
    assert "init_args.on_missing" not in line and str(store) in line


def test_option_flag_spelling_ends_with_the_verb(tmp_path, monkeypatch, capsys) -> None:
    """Outside a verb the spelling is fit's; a verb's spelling does not outlive it."""
    assert option_flag("data", "on_missing") == "--data.init_args.on_missing"
    assert option_flag("trainer", "accelerator") == "--trainer.accelerator"
    args = ["occam", "--config", CONFIGS / "synthetic" / "occam.yaml", "--data.mask_sources",
            "[./nowhere]", "--data.dataset.init_args.root", tmp_path / "gone"]  # fmt: skip
    cli_in_process(args, tmp_path, monkeypatch, capsys)  # sets occam's spelling, then ends
    assert option_flag("model", "checkpoint_path") == "--model.init_args.checkpoint_path"
    token = use_option_spelling([])
    try:
        assert option_flag("data", "dataset.init_args.root") == "--data.dataset.init_args.root"
    finally:
        from occam_l2r.errors import _CLASS_PATH_SECTIONS

        _CLASS_PATH_SECTIONS.reset(token)
