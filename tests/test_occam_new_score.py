"""Adding an OCCAM foreground score (docs/extending.md, "Add an OCCAM foreground score"): a score
registered from this test module with :func:`occam_l2r.occam.scores.foreground_score`, and no
other file touched, is a row of the ``occam`` verb's table and decides which mask it classifies.

The new score, ``worst_box_fit``, picks the mask whose pixels fit the ground-truth box least (the
opposite of ``bbox_iou``): on the regions store, where exactly one candidate per image is the
digit, ``bbox_iou`` always finds the digit (object IoU 1) and ``worst_box_fit`` never does.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from occam_l2r.cli import main
from occam_l2r.occam.scores import FOREGROUND_SCORES, Candidates, bbox_iou, foreground_score
from tests._clip_tiny import save_tiny_clip
from tests.conftest import PRISTINE, TINY

CONFIGS = Path(__file__).parents[1] / "configs"
QUIET = ["--data.num_workers", "0", "--trainer.enable_progress_bar", "false"]
SEEN: list[int] = []  # masks scored by the new score, per call


@pytest.fixture
def worst_box_fit() -> Iterator[str]:
    """The recipe: one function, registered by name (removed again after the test)."""

    @foreground_score("worst_box_fit")
    def score(c: Candidates) -> torch.Tensor:
        fit = [
            bbox_iou(masks, box) for masks, box in zip(c.masks, c.boxes, strict=True) if len(masks)
        ]
        SEEN.append(len(c.logits))
        return -torch.from_numpy(np.concatenate(fit)).to(c.logits.device)

    yield "worst_box_fit"
    del FOREGROUND_SCORES["worst_box_fit"]


@pytest.mark.slow
def test_a_registered_score_is_a_row_of_the_occam_verb(
    worst_box_fit: str, tiny_synthetic_root: Path, tmp_path: Path
):
    root = tmp_path / "tiny"
    shutil.copytree(tiny_synthetic_root, root, ignore=PRISTINE)
    dataset = ["--data.dataset.init_args.root", str(root)]
    for key, value in TINY.items():
        dataset += [f"--data.dataset.init_args.{key}", str(value)]
    regions = str(CONFIGS / "segment" / "synthetic_regions.yaml")
    main(["segment", "--config", regions, *dataset, "--data.splits", "[test_id]", *QUIET])
    weights = save_tiny_clip(tmp_path / "tiny_vit.pt")
    out = tmp_path / "occam"
    main([
        "occam", "--config", str(CONFIGS / "synthetic" / "occam.yaml"), *dataset,
        "--model.model_name", "occam-tiny-vit", "--model.pretrained", str(weights),
        "--model.prototype_cache", "null", "--model.scores", f"[bbox_iou, {worst_box_fit}]",
        "--data.splits", "[test_id]", "--trainer.default_root_dir", str(out), *QUIET,
    ])  # fmt: skip
    assert SEEN and sum(SEEN) >= 3 * 8, "the verb scored every mask with the new score"
    rows = list(csv.DictReader(open(out / "occam_table.csv")))
    by_score = {(r["fg_det"], r["bg"]): r for r in rows if r["source"] == "synthetic_regions"}
    for bg in ("gray", "original"):
        assert float(by_score["bbox_iou", bg]["object_iou"]) == pytest.approx(1.0)
        assert float(by_score[worst_box_fit, bg]["object_iou"]) < 0.2, "never the digit"
    assert f"| synthetic_regions | {worst_box_fit} | crop + resize | gray |" in (
        (out / "occam_table.md").read_text()
    )
    # the task's trainer defaults: no logger, no checkpoints
    assert not list(out.rglob("*.ckpt")) and not (out / "lightning_logs").exists()
