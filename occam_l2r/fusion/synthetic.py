"""Synthetic logits files with a spurious background, for tests, benchmarks and demos.

Each sample has a class ``y`` and a background kind ``b``; in ``train``/``val``/``test_id`` the
background agrees with the class with probability ``tie`` (the shortcut), in ``test_shift`` it is
random. A FG model sees only ``y``, a BG model only ``b``, a FULL model both (and leans on the
background). Logits are Gaussian noise plus a class-dependent signal, written with
:meth:`occam_l2r.logits.LogitsFile.save` at ``<root>/<view>/seed<k>/logits/<split>.npz`` — the
layout ``predict`` produces, so the ``fuse`` verb reads them as it reads real runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from occam_l2r.logits import LogitsFile

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
    eye = np.eye(num_classes, dtype=np.float32)
    names = [f"class{k}" for k in range(num_classes)]
    runs: dict[str, list[str]] = {}
    for v_idx, (view, (w_obj, w_bg)) in enumerate(views.items()):
        runs[view] = []
        for s in range(seeds):
            run = root / view / f"seed{s}"
            noise_rng = np.random.default_rng([seed, v_idx, s])
            scale = 1.0 + 0.3 * s  # seeds differ in calibration, as real runs do
            for split, (y, b) in data.items():
                z = w_obj * eye[y] + w_bg * eye[b]
                z = scale * (z + noise * noise_rng.standard_normal(z.shape, dtype=np.float32))
                LogitsFile(
                    ids=np.array([f"{split}/{i:06d}.png" for i in range(len(y))]),
                    labels=y,
                    logits=z,
                    groups=np.array([f"bg{k}" for k in b]),
                    split=split,
                    view=view,
                    run=f"synthetic/{view}/seed{s}",
                    class_names=names,
                ).save(run / "logits" / f"{split}.npz")
            runs[view].append(str(run))
    return runs
