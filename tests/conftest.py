"""Shared pytest setup: offline hub (no multi-minute retries), quiet logs, small thread pools."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import importlib.util  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402

import pytest  # noqa: E402

TINY = {"train_per_class": 6, "val_per_class": 2, "test_per_class": 2}
#: what :func:`clean_copy` leaves out: the segmentation stores that earlier tests built inside the
#: shared benchmark (a copy is pristine whatever ran before)
PRISTINE = shutil.ignore_patterns("segmentations")
TINY_FG = Path(__file__).parent / "conf" / "tiny_fg.yaml"
#: one folder per dataset reader, each with a ``make_fake.py`` that writes its on-disk layout
FAKES = Path(__file__).parent / "data"


def load_fake(name: str) -> ModuleType:
    """``tests/data/<name>/make_fake.py`` as a module (``tests/data`` is not a package)."""
    spec = importlib.util.spec_from_file_location(f"fake_{name}", FAKES / name / "make_fake.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_copy(src: Path, dst: Path) -> Path:
    """Copy the benchmark ``src`` to ``dst`` without its segmentation stores; returns ``dst``."""
    shutil.copytree(src, dst, ignore=PRISTINE)
    return dst


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


@pytest.fixture
def synthetic_copy(tmp_path: Path, tiny_synthetic_root: Path) -> Path:
    """A private clean copy of the tiny benchmark at ``tmp_path / "data"``: a test may write
    stores into it or break its images."""
    return clean_copy(tiny_synthetic_root, tmp_path / "data")
