"""Fusion heads trained together (issue 21.1): the same heads as one at a time, the same batch order
as ``fit``'s loader, no whole-array copies of float16 / memory-mapped logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from occam_l2r.cli import main
from occam_l2r.fusion.head_training import EpochOrder, HeadJob, shuffled_loader, train_heads
from occam_l2r.fusion.heads import build_head
from occam_l2r.fusion.synthetic import write_synthetic_runs

C = 6


def _data(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    z1 = (2.0 * np.eye(C)[y] + rng.normal(size=(n, C))).astype(np.float32)
    z2 = (1.0 * np.eye(C)[y] + rng.normal(size=(n, C))).astype(np.float32)
    return z1, z2, y


def _job(name: str, seed: int, data, val, lr: float, hidden: int = 8, **kw) -> HeadJob:
    torch.manual_seed(seed)  # the head is built right after seeding, as on both paths
    head = build_head(name, C, hidden_dim=hidden)
    return HeadJob(head, *data, seed=seed, lr=lr, val=val, max_epochs=3, batch_size=64, **kw)


def test_epoch_order_is_the_seeded_shuffling_dataloader_order():
    """The order the heads saw when both paths walked a shuffling DataLoader with a seeded
    generator: the fusion numbers from before the in-memory loop stay the same."""
    n = 103
    old = DataLoader(
        range(n), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(5)
    )
    order = EpochOrder(n, 5)
    loader = shuffled_loader(range(n), 16, 5)  # fit's train loader
    for _ in range(3):
        expected = torch.cat(list(old)).tolist()
        assert order.next_epoch().tolist() == expected
        assert torch.cat(list(loader)).tolist() == expected


def test_heads_trained_together_equal_heads_trained_alone(tmp_path):
    """Two head kinds, three seeds and inputs, unlabelled rows, float16 memory maps: each head
    of one batched run is the head that training it alone gives (weights, epoch, val scores)."""
    val = _data(99, 300)
    sets = [_data(s) for s in range(3)]
    z1, z2, y = sets[2]
    y = y.copy()
    y[::5] = -1  # unlabelled rows are left out through an index array
    np.save(tmp_path / "z1.npy", z1.astype(np.float16))
    sets[2] = (np.load(tmp_path / "z1.npy", mmap_mode="r"), z2.astype(np.float16), y)
    # (head, hidden width, lr): every head kind, ConcatFC with and without its hidden layer
    kinds = [("concat_fc", 8, 3e-3), ("weighted_logits", 8, 1e-2), ("temperature", 8, 1e-2),
             ("concat_fc", 0, 3e-3)]  # fmt: skip
    spec = [(kind, s) for kind in kinds for s in range(3)]
    together = train_heads([_job(n, s, sets[s], val, lr, h) for (n, h, lr), s in spec])
    for ((name, hidden, lr), s), fit in zip(spec, together, strict=True):
        alone = train_heads([_job(name, s, sets[s], val, lr, hidden)])[0]
        assert fit.best_epoch == alone.best_epoch and fit.val_scores == alone.val_scores
        for p, q in zip(fit.head.parameters(), alone.head.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    # the float16 input trains as its float32 values do
    ref = train_heads(
        [
            _job(
                "weighted_logits",
                2,
                (z1.astype(np.float16).astype(np.float32), z2.astype(np.float16), y),
                val,
                1e-2,
            )
        ]
    )[0]
    torch.testing.assert_close(together[5].head.w1, ref.head.w1)  # weighted_logits, seed 2


class _ScaledSum(torch.nn.Module):
    """A head outside the registry, without a ``stacked_loss``: stacked through ``vmap``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.ones(C))
        self.b = torch.nn.Parameter(torch.full((C,), 0.25))

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return self.a * z1 + self.b * z2.tanh()

    def loss(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self(z1, z2), y)


def test_heads_without_a_stacked_loss_train_together_through_vmap():
    val = _data(99, 300)
    sets = [_data(s) for s in range(3)]

    def jobs(seeds):
        out = []
        for s in seeds:
            torch.manual_seed(s)
            out.append(
                HeadJob(_ScaledSum(), *sets[s], seed=s, val=val, max_epochs=3, batch_size=64)
            )
        return out

    together = train_heads(jobs(range(3)))
    for s, fit in enumerate(together):
        alone = train_heads(jobs([s]))[0]
        assert fit.best_epoch == alone.best_epoch and fit.val_scores == alone.val_scores
        for p, q in zip(fit.head.parameters(), alone.head.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(together[0].head.a, together[1].head.a)  # each its own data


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak-RSS reset")
@pytest.mark.parametrize("aligned", [True, False], ids=["torch_gather", "numpy_gather"])
def test_no_whole_array_copies(aligned):
    """The train arrays are read a chunk of batches at a time: no float32 copy of float16 logits
    (400 MB here) and no copy that drops unlabelled rows when every row is labelled. Both gathers:
    torch's on an aligned array, numpy's on an unaligned one. Peak RSS (``VmHWM``, reset before)."""
    n, c = 1_000_000, 100
    rng = np.random.default_rng(0)
    buf = np.empty(n * c * 2 + 2, np.uint8)  # float16 logits at an aligned or an odd address
    z = buf[0 if aligned else 1 :][: n * c * 2].view(np.float16).reshape(n, c)
    z[:] = rng.standard_normal((n, c), dtype=np.float32)
    assert z.flags.aligned == aligned
    y = rng.integers(0, c, n)
    torch.manual_seed(0)
    job = HeadJob(build_head("weighted_logits", c), z, z, y, max_epochs=1, batch_size=8192)
    # warm up: Adam's first step imports torch._dynamo (~250 MB of RSS in a fresh process)
    train_heads([HeadJob(build_head("weighted_logits", c), z[:64], z[:64], y[:64], max_epochs=1)])
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = _rss_mib("VmRSS")
    train_heads([job])
    grown = _rss_mib("VmHWM") - before
    assert grown < 100, grown  # chunks of ~16 MB; a float32 copy of z is 400 MB


@pytest.mark.slow
def test_fuse_trains_the_sweeps_heads_together_with_the_same_numbers(tmp_path):
    """`fuse` trains the learnt heads of every (pair, seed) in one batch (`heads.together`, the
    default) and gets what one (pair, seed) at a time gets; `together` is no part of a cell's
    fingerprint."""
    runs = write_synthetic_runs(
        tmp_path / "logits", num_classes=4, seeds=2, sizes={"train": 200, "val": 80, "test": 80}
    )

    def fuse(out: Path, together: bool) -> dict[str, dict]:
        cfg = tmp_path / f"fuse_{together}.yaml"
        cfg.write_text(yaml.safe_dump({
            "runs": runs, "output_dir": str(out), "pairs": [["FG_C", "BG_S"], ["FG_C", "FULL"]],
            "methods": ["concat_fc", "weighted_logits", "max_conf"], "test_splits": ["test"],
            "fallback": "none", "heads": {"max_epochs": 3, "batch_size": 32, "together": together},
        }))  # fmt: skip
        main(["fuse", "--config", str(cfg)])
        lines = (out / "results.jsonl").read_text().splitlines()
        return {r["cell"]: r for r in map(json.loads, lines)}

    together, alone = fuse(tmp_path / "a", True), fuse(tmp_path / "b", False)
    learnt = [k for k in together if "concat_fc" in k or "weighted_logits" in k]
    assert len(learnt) == 8 and together.keys() == alone.keys()
    for cell, rec in together.items():
        other = alone[cell]
        assert rec["fingerprint"] == other["fingerprint"]
        assert rec["params"].get("best_epoch") == other["params"].get("best_epoch")
        for split, ms in rec["metrics"].items():
            for metric, value in ms.items():
                assert value == pytest.approx(other["metrics"][split][metric], abs=1e-6), cell
