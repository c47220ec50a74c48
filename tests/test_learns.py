"""``fit`` learns: a seeded FG_C run on the embedded benchmark beats chance on ``test_shift``.

The other end-to-end tests train one epoch on a few images and check only that numbers are
well formed (and equal the ones recomputed from the logits); a model that learned nothing would
pass them. Here FG_C (the object crop, from the ground-truth masks) is trained from scratch at
the smallest size measured to learn reliably (issue 17, item 9), and its accuracy on
``test_shift`` (every class on another class's background, so a model that learned the
background scores ~0) must clear chance (1 / 4) by a wide margin. Measured on this machine
(``train_per_class=30``, 8 epochs, 32 px, bicubic resizing): see MEASURED. With the model's own
(bicubic) interpolation (issue 16) the earlier 20 images per class and 5 epochs gave 0.375 for
seed 0, and 8 epochs exactly the threshold (0.400): too close to tell learning from luck.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from occam_l2r.cli import main
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from tests.conftest import TINY_FG

SIZES = {"train_per_class": 30, "val_per_class": 5, "test_per_class": 10}
EPOCHS = 8
CHANCE = 0.25
#: seed_everything -> test_shift/acc measured with these settings (40 test images)
MEASURED = {0: 0.525, 1: 0.625}
#: 6 of 40 images above chance; a model that learned the background instead scores ~0
THRESHOLD = 0.4


@pytest.mark.slow
@pytest.mark.parametrize("seed", sorted(MEASURED))
def test_fg_c_beats_chance_on_test_shift(tmp_path: Path, seed: int) -> None:
    root = tmp_path / "data"
    SyntheticSpurious(root=str(root), **SIZES).prepare()
    out = tmp_path / "runs"
    main([
        "fit", "--config", str(TINY_FG),
        "--data.init_args.dataset.init_args.root", str(root),
        *(a for k, v in SIZES.items() for a in (f"--data.init_args.dataset.init_args.{k}", str(v))),
        "--trainer.max_epochs", str(EPOCHS), "--seed_everything", str(seed),
        "--trainer.logger.init_args.save_dir", str(out), "--trainer.default_root_dir", str(out),
    ])  # fmt: skip
    metrics = json.loads(next(out.rglob("test_metrics.json")).read_text())
    assert metrics["test_shift/num_samples"] == 4 * SIZES["test_per_class"]
    assert metrics["test_shift/acc"] >= THRESHOLD >= CHANCE + 0.15, metrics
