"""A start that fails gives its claimed ``version_<k>`` folder back; a folder with work stays.

``fit`` claims the next free ``version_<k>`` before it starts (:func:`claim_version`); when the
start fails before its first optimizer step and checkpoint (a missing store, a bad config value
found at setup), :func:`release_failed_claim` removes the folder again, so failed starts leave no
empty version folders. Anything beyond what a start writes keeps the folder.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from occam_l2r.cli import main
from occam_l2r.store import StoreNotFoundError
from occam_l2r.tasks.run_folder import claim_version, release_failed_claim
from tests.conftest import tiny_fit_args


def _trainer(step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, checkpoint_callback=None, loggers=[])


def test_failed_fit_start_leaves_no_version_folder(tmp_path: Path, tiny_synthetic_root) -> None:
    out = tmp_path / "runs"
    args = ["fit", *tiny_fit_args(tiny_synthetic_root, out),
            "--data.init_args.segmentation", str(tmp_path / "no_store")]  # fmt: skip
    for _ in range(2):
        with pytest.raises(StoreNotFoundError):
            main(args)
    assert not list(out.rglob("version_*")), sorted(out.rglob("*"))


def test_release_keeps_a_folder_with_work(tmp_path: Path) -> None:
    folder = tmp_path / f"version_{claim_version(tmp_path)}"
    (folder / "events.out.tfevents.1.host").write_bytes(b"x")
    (folder / "hparams.yaml").write_text("{}")
    (folder / "checkpoints").mkdir()
    assert release_failed_claim(_trainer(), folder) and not folder.exists()

    stepped = tmp_path / f"version_{claim_version(tmp_path)}"
    assert not release_failed_claim(_trainer(step=3), stepped) and stepped.is_dir()
    ckpt = tmp_path / f"version_{claim_version(tmp_path)}"
    (ckpt / "checkpoints").mkdir()
    (ckpt / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert not release_failed_claim(_trainer(), ckpt) and ckpt.is_dir()
    foreign = tmp_path / f"version_{claim_version(tmp_path)}"
    (foreign / "logits").mkdir()
    (foreign / "logits" / "val.npz").write_bytes(b"x")
    assert not release_failed_claim(_trainer(), foreign) and (foreign / "logits").is_dir()
