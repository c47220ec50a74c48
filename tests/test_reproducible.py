"""The same seed gives the same training batches (augmentations included), with or without
DataLoader workers; different workers do not repeat each other's augmentations."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from tests.conftest import TINY


def _batches(root, seed: int, workers: int) -> list[torch.Tensor]:
    L.seed_everything(seed, verbose=False)
    dm = ViewDataModule(SyntheticSpurious(root=str(root), **TINY), view="FG_C", image_size=32,
                        batch_size=4, num_workers=workers, train_scale=(0.2, 1.0))  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    loader = dm.train_dataloader()
    return [torch.cat([b["image"].flatten(1), b["index"][:, None]], 1) for b in loader]


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_seed_everything_reaches_the_augmentations(tiny_synthetic_root, workers):
    a = _batches(tiny_synthetic_root, 0, workers)
    b = _batches(tiny_synthetic_root, 0, workers)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    c = _batches(tiny_synthetic_root, 1, workers)
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_workers_draw_different_augmentations(tiny_synthetic_root):
    # the same image read by two workers (one sample per batch, 2 workers alternate batches)
    L.seed_everything(0, verbose=False)
    dm = ViewDataModule(SyntheticSpurious(root=str(tiny_synthetic_root), **TINY), view="FULL",
                        segmentation=None, image_size=32, batch_size=1, num_workers=2,
                        train_scale=(0.1, 1.0))  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    ds = dm._dataset("train", train=True)
    from occam_l2r.data.loaders import _seed_transform, _seed_worker

    _seed_transform(ds, 0)  # as train_loader does, then each worker reseeds
    loader = torch.utils.data.DataLoader(
        ds, batch_size=1, sampler=[0, 0, 0, 0], num_workers=2, worker_init_fn=_seed_worker
    )
    crops = [b["image"] for b in loader]  # image 0 by workers 0, 1, 0, 1
    assert not torch.equal(crops[0], crops[1])
