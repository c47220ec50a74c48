"""Synthetic logits files with a spurious background, for tests, benchmarks and demos.

Each sample has a class ``y`` and a background kind ``b``; in ``train``/``val``/``test_id`` the
background agrees with the class with probability ``tie`` (the shortcut), in ``test_shift`` it is
random. A FG model sees only ``y``, a BG model only ``b``, a FULL model both (and leans on the
background). Logits are Gaussian noise plus a class-dependent signal, written at
``<root>/<view>/seed<k>/logits/<split>.npz`` — the layout ``predict`` produces, so the ``fuse``
verb reads them as it reads real runs.

Files are written streamed (:func:`occam_l2r.logits.write_streamed`), a block of rows at a time,
so an ImageNet-size split (1.28 M x 1000) never sits in the writer's memory; the noise is drawn
block by block from the same generator in the same order, so the values are those of one draw
of the whole split. ``dtype=float16`` writes format-3 files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from occam_l2r.logits import ROW_ARRAYS, row_blocks, write_streamed

#: view -> (weight of the object class signal, weight of the background signal)
VIEW_SIGNALS: dict[str, tuple[float, float]] = {
    "FULL": (2.0, 3.0),
    "FG_C": (3.0, 0.0),
    "BG_S": (0.0, 3.5),
}

DEFAULT_SIZES: dict[str, int] = {"train": 600, "val": 300, "test_id": 300, "test_shift": 300}


def write_synthetic_runs(
    root: str | Path,
    num_classes: int = 5,
    seeds: int = 2,
    sizes: dict[str, int] | None = None,
    views: dict[str, tuple[float, float]] | None = None,
    tie: float = 0.9,
    noise: float = 1.5,
    seed: int = 0,
    dtype: Any = np.float32,
    block_bytes: int = 16 * 2**20,
) -> dict[str, list[str]]:
    """Write logits files of every (view, seed, split) and return ``{view: [run dirs]}``.

    Args:
        root: output folder.
        num_classes: number of classes (and background kinds).
        seeds: runs per view; each seed draws its own noise.
        sizes: split name -> number of samples; a split whose name contains ``shift`` breaks
            the class/background tie.
        views: view name -> (object signal, background signal).
        tie: probability that the background matches the class outside shift splits.
        noise: standard deviation of the logit noise.
        seed: random seed of the data (labels, backgrounds).
        dtype: stored dtype of the logits (float32: format 2; float16: format 3).
        block_bytes: float32 logits generated and written at a time.
    """
    root = Path(root)
    sizes = sizes or DEFAULT_SIZES
    views = views or VIEW_SIGNALS
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in sizes.items():
        y = rng.integers(0, num_classes, n)
        if "shift" in split:
            b = rng.integers(0, num_classes, n)
        else:
            b = np.where(rng.random(n) < tie, y, rng.integers(0, num_classes, n))
        data[split] = (y, b)
    names = [f"class{k}" for k in range(num_classes)]
    runs: dict[str, list[str]] = {}
    for v_idx, (view, (w_obj, w_bg)) in enumerate(views.items()):
        runs[view] = []
        for s in range(seeds):
            run = root / view / f"seed{s}"
            noise_rng = np.random.default_rng([seed, v_idx, s])
            scale = 1.0 + 0.3 * s  # seeds differ in calibration, as real runs do
            for split, (y, b) in data.items():
                chunks = _split_chunks(split, y, b, num_classes, w_obj, w_bg, scale, noise,
                                       noise_rng, block_bytes)  # fmt: skip
                widths = (
                    len(split) + 5 + max(6, len(str(len(y) - 1))),
                    2 + len(str(num_classes - 1)),
                )
                write_streamed(run / "logits" / f"{split}.npz", len(y), num_classes, widths, chunks,
                               split, view, f"synthetic/{view}/seed{s}", names, {}, dtype)  # fmt: skip
            runs[view].append(str(run))
    return runs


def _split_chunks(
    split: str,
    y: np.ndarray,
    b: np.ndarray,
    num_classes: int,
    w_obj: float,
    w_bg: float,
    scale: float,
    noise: float,
    rng: np.random.Generator,
    block_bytes: int,
) -> Any:
    """``chunks(name)`` of :func:`occam_l2r.logits.write_streamed` for one split: each member's
    rows block by block; the logits' noise drawn from ``rng`` in row order."""
    eye = np.eye(num_classes, dtype=np.float32)
    blocks = row_blocks(len(y), num_classes, block_bytes, itemsize=4)

    def chunks(name: str) -> Iterator[np.ndarray]:
        assert name in ROW_ARRAYS
        for r in blocks:
            if name == "ids":
                yield np.array([f"{split}/{i:06d}.png" for i in range(r.start, r.stop)])
            elif name == "labels":
                yield y[r]
            elif name == "groups":
                yield np.array([f"bg{k}" for k in b[r]])
            elif name == "logits":
                z = w_obj * eye[y[r]] + w_bg * eye[b[r]]
                yield scale * (z + noise * rng.standard_normal(z.shape, dtype=np.float32))
            elif name == "candidates":
                yield np.full(r.stop - r.start, -1, np.int64)
            else:  # fallback
                yield np.zeros(r.stop - r.start, bool)

    return chunks
