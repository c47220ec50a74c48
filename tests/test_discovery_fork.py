"""OCCAM Table 1's CropFormer convention of the authors' ocl fork (issue 16, item 5).

The reference below is written from the fork's definition (AlexanderRubinstein/
object-centric-learning-framework, ``ocl/decoding.py`` ``EntitySegDecoder.forward`` and
``ocl/metrics/masks.py``), in torch, calling nothing of the toolkit: the masks sorted by
ascending score become channels, truncated to the ground truth's channel count; the metrics
take the argmax over channels (FG-ARI on the ground truth's foreground, mBO as the best IoU of
every ground-truth object with any one-hot predicted channel).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import adjusted_rand_score

from occam_l2r.data.records import Record
from occam_l2r.discovery import score_image
from occam_l2r.segmentation import Segmentation

MOVI = Path(__file__).parent.parent / "configs" / "movi" / "discover.yaml"


def fork_reference(pred_masks, scores, gt_masks, channels):
    """FG-ARI and mBO of the fork, from its definition (torch argmax, one-hot channels)."""
    h, w = gt_masks[0].shape
    ranks = torch.sort(torch.tensor(scores, dtype=torch.float64), stable=True).indices
    prediction = torch.zeros(channels, h, w)
    for i, index in enumerate(ranks.tolist()):
        if i == channels:
            break
        prediction[i] = torch.from_numpy(pred_masks[index].astype(np.float32))
    target = torch.zeros(channels, h, w)  # one-hot, channel 0 the background
    for k, m in enumerate(gt_masks):
        target[k + 1] = torch.from_numpy(m.astype(np.float32))
    target[0] = (target[1:].sum(0) == 0).float()
    pred_idx = prediction.argmax(0).flatten()  # ties and empty pixels: the lowest channel
    true_idx = target.argmax(0).flatten()
    fg = true_idx > 0
    ari = adjusted_rand_score(true_idx[fg].numpy(), pred_idx[fg].numpy())
    pred_oh = torch.nn.functional.one_hot(pred_idx, channels).T.bool()  # (C, N)
    ious = []
    for k in range(1, len(gt_masks) + 1):
        t = target[k].flatten().bool()
        inter = (pred_oh & t).sum(1).double()
        union = (pred_oh | t).sum(1).double()
        ious.append(torch.where(union > 0, inter / union.clamp(min=1), 0.0).max().item())
    return ari, float(np.mean(ious))


def _scene(seed: int):
    """Three objects; six predicted masks that overlap each other and leave holes."""
    rng = np.random.default_rng(seed)
    h, w = 32, 40
    gt = []
    for y, x in [(4, 4), (16, 20), (8, 26)]:
        m = np.zeros((h, w), bool)
        m[y : y + 10 + rng.integers(0, 4), x : x + 9 + rng.integers(0, 4)] = True
        gt.append(m & ~np.logical_or.reduce(gt) if gt else m)
    pred = []
    for _ in range(6):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        m = np.zeros((h, w), bool)
        m[y : y + rng.integers(5, 16), x : x + rng.integers(5, 18)] = True
        pred.append(m)
    pred[0] |= gt[0]  # one object well covered, overlapped by others
    scores = rng.permutation(6) / 6.0 + 0.05
    return gt, pred, scores.tolist()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("channels", [4, 11])
def test_the_fork_convention_matches_the_forks_definition(seed, channels):
    gt, pred, scores = _scene(seed)
    seg = Segmentation.from_masks("x.png", pred, scores=scores)
    ours = score_image(Record("x.png", 0, "test"), gt, seg, "occam_fork", channels)
    ari, mbo = fork_reference(pred, scores, gt, channels)
    assert ours.fg_ari == pytest.approx(ari, abs=1e-12)
    assert ours.mbo == pytest.approx(mbo, abs=1e-12)


def test_the_two_conventions_differ_on_overlaps_and_holes():
    gaps = []
    for seed in range(6):
        gt, pred, scores = _scene(seed)
        seg = Segmentation.from_masks("x.png", pred, scores=scores)
        rec = Record("x.png", 0, "test")
        ocl = score_image(rec, gt, seg, "ocl")
        fork = score_image(rec, gt, seg, "occam_fork", 11)
        gaps.append(max(abs(ocl.fg_ari - fork.fg_ari), abs(ocl.mbo - fork.mbo)))
    assert max(gaps) > 0.05


def test_overlaps_go_to_the_lowest_score_and_holes_to_channel_0():
    gt = [np.zeros((4, 6), bool)]
    gt[0][:, :3] = True
    low = np.zeros((4, 6), bool)
    low[:, :2] = True
    high = np.zeros((4, 6), bool)
    high[:, 1:4] = True  # overlaps low in column 1; columns 4-5 are holes
    seg = Segmentation.from_masks("x.png", [high, low], scores=[0.9, 0.2])
    rec = Record("x.png", 0, "test")
    fork = score_image(rec, gt, seg, "occam_fork", 2)
    # channels: 0 = low (columns 0-1, and the holes 4-5: 16 px), 1 = high (columns 2-3);
    # the object (columns 0-2, 12 px): IoU 8 / 20 with channel 0, 4 / 16 with channel 1
    assert fork.mbo == pytest.approx(8 / 20)
    ocl = score_image(rec, gt, seg, "ocl")
    assert ocl.mbo == pytest.approx(8 / 16)  # high wins columns 1-3: 8 / (12 + 12 - 8)
    # truncation: one channel keeps the lowest score only, everything is channel 0
    one = score_image(rec, gt, seg, "occam_fork", 1)
    assert one.mbo == pytest.approx(12 / 24) and one.fg_ari == 1.0
    assert not math.isnan(
        score_image(
            rec, gt, Segmentation.from_masks("x.png", [], height=4, width=6), "occam_fork"
        ).mbo
    )


def test_the_table_1_config_scores_cropformer_with_the_fork():
    config = yaml.safe_load(MOVI.read_text())
    channels = {b["name"]: b.get("channels") for b in config["benchmarks"]}
    assert channels == {"MOVi-C": 11, "MOVi-E": 24}
    for bench in config["benchmarks"]:
        assert bench["conventions"] == {"CropFormer": "occam_fork"}
        assert "SAM" in bench["stores"] and "CropFormer" in bench["stores"]
