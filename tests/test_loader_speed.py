"""The fast loader paths: the masked views keep their pixels, loaders pin for CUDA, and
``benchmarks/bench_loader.py`` runs end to end at a tiny size (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from occam_l2r.data.loaders import pin_memory_for
from occam_l2r.segmentation import decode_mask, encode_mask, mask_to_box
from occam_l2r.views import _int_box, bg_shape, fg_crop, fg_masked, keep_where

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loader.py"


# the rules as they were written before the speed-ups (numpy boolean indexing, np.nonzero)
def _fg_masked_ref(image, box, mask, fill, aspect):
    out = image.copy()
    out[~mask] = fill
    return fg_crop(out, box, fill, aspect)


def _bg_shape_ref(image, mask, fill):
    out = image.copy()
    out[mask] = fill
    return out


def _mask_to_box_ref(mask):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def test_masked_views_keep_their_pixels() -> None:
    """FG_M, BG_S and the mask's box are bit-identical to the reference rules on random images
    (1, 3, 4 channels and 2-D), random masks (C- and Fortran-ordered, as RLE decodes them),
    random fills, padded and stretched."""
    rng = np.random.default_rng(0)
    for t in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        image = rng.integers(0, 256, (h, w, [3, 4, 1][t % 3]), dtype=np.uint8)
        if t % 7 == 0:
            image = image[..., 0]
        mask = rng.random((h, w)) < rng.random()
        if t % 2:
            mask = decode_mask(encode_mask(mask), h, w)  # Fortran order
        fill = int(rng.integers(0, 256))
        np.testing.assert_array_equal(mask_to_box(mask), _mask_to_box_ref(mask))
        np.testing.assert_array_equal(bg_shape(image, mask, fill), _bg_shape_ref(image, mask, fill))
        if not mask.any():
            continue
        box = _int_box(mask_to_box(mask), w, h)
        for aspect in ("pad", "stretch"):
            if aspect == "stretch" and (image.ndim == 2 or image.shape[2] == 1):
                continue  # PIL cannot stretch a one-channel (H, W, 1) array, before or now
            got = fg_masked(image, box, mask, fill, aspect)
            want = _fg_masked_ref(image, box, mask, fill, aspect)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_keep_where_other_dtypes() -> None:
    """Arrays OpenCV's masked copy is not used for (float, > 4 channels) follow the same rule."""
    image = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    keep = np.array([[True, False], [False, True]])
    out = keep_where(image, keep, 7)
    assert out[0, 0].tolist() == [0, 1, 2] and out[0, 1].tolist() == [7, 7, 7]
    wide = np.arange(20, dtype=np.uint8).reshape(2, 2, 5)  # more channels than OpenCV's path
    np.testing.assert_array_equal(keep_where(wide, keep, 9), _bg_shape_ref(wide, ~keep, 9))


def test_pin_memory_for() -> None:
    """Pinned batches when the trainer runs on CUDA, not on CPU."""
    on = lambda kind: SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(kind)))  # noqa: E731
    assert pin_memory_for(on("cuda")) is True
    assert pin_memory_for(on("cpu")) is False
    assert pin_memory_for(None) is torch.cuda.is_available()


def test_datamodule_loaders_pin_and_persist(tiny_synthetic_root: Path) -> None:
    """The ViewDataModule's loaders keep their workers and pin for a CUDA trainer."""
    from occam_l2r.data.datamodule import ViewDataModule
    from occam_l2r.data.datasets.synthetic import SyntheticSpurious
    from tests.conftest import TINY

    dm = ViewDataModule(
        SyntheticSpurious(root=str(tiny_synthetic_root), **TINY),
        view="FULL", segmentation=None, image_size=16, batch_size=4, num_workers=1,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    dm.trainer = SimpleNamespace(  # what the loaders read of a CUDA trainer
        strategy=SimpleNamespace(root_device=torch.device("cuda")), world_size=1, global_rank=0
    )
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        assert loader.pin_memory and loader.persistent_workers


@pytest.mark.slow
def test_bench_loader_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark's code path at a tiny size: the JPEGs and mask PNGs written, the gt store
    of RLE masks built by the toolkit, every view's loaders and the plain one timed, the
    profile printed."""
    spec = importlib.util.spec_from_file_location("bench_loader", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = tmp_path / "set"
    rates = bench.main(
        ["--root", str(root), "--images", "10", "--measure", "4", "--repeats", "1",
         "--batch_size", "2", "--profile", "FG_M", "--plain_variants"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert len(list(root.glob("images/*/*/*.jpg"))) == 10
    assert (root / "segmentations" / "gt" / "manifest.json").is_file()
    for view in [*bench.VIEWS, *bench.PLAIN]:
        for mode in ("train", "eval"):
            assert rates[f"{view}/{mode}"] > 0
            assert f"| {view} | {mode} |" in out
    assert "FG_M __getitem__ over" in out and "worst view / plain ratio" in out
