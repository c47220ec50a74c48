"""Shared pytest setup: offline hub (no multi-minute retries), quiet logs, small thread pools."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY = {"train_per_class": 6, "val_per_class": 2, "test_per_class": 2}
#: ``shutil.copytree(tiny_synthetic_root, dst, ignore=PRISTINE)``: a copy of the shared benchmark
#: without the segmentation stores that earlier tests built inside it (a copy is pristine
#: whatever ran before)
PRISTINE = shutil.ignore_patterns("segmentations")
TINY_FG = Path(__file__).parent / "conf" / "tiny_fg.yaml"


def tiny_fit_args(root: Path, out: Path) -> list[str]:
    """The tiny FG_C config on a dataset ``root``, with logs and checkpoints under ``out``."""
    return [
        "--config", str(TINY_FG),
        "--data.init_args.dataset.init_args.root", str(root),
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.default_root_dir", str(out),
    ]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated tiny embedded benchmark (4 classes, 6/2/2 images per class and split)."""
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious

    root = tmp_path_factory.mktemp("synthetic") / "tiny"
    SyntheticSpurious(root=str(root), **TINY).prepare()
    return root
