"""OCCAM's selection end to end on hand-made images: a sample of the OCCAM dataset (every mask
applied, nothing scored), its batch, and the task's outputs (its plain
:class:`~occam_l2r.occam.model.Occam` module) with a classifier whose answer is known per view.

The image holds three coloured rectangles (the masks): red A, which the stub classifier calls
class 0 with near certainty; green B (the object, label 1), class 1 with less confidence; blue C,
class 2. So ``max_prob`` and ``ens_entropy`` pick A, ``oracle`` and ``bbox_iou`` pick B. A second
image has no masks: it takes the whole image's logits and is flagged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from occam_l2r.data.occam_datamodule import OccamDataset, collate_occam
from occam_l2r.data.records import Record, RecordDataset
from occam_l2r.occam.model import Occam
from occam_l2r.segmentation import Segmentation
from occam_l2r.tasks.occam import OccamTask
from occam_l2r.weights import WeightsNotFoundError
from tests._clip_tiny import save_tiny_clip

H, W = 24, 36
SCORES = ["max_prob", "oracle", "ens_entropy", "bbox_iou"]
BOXES = {"A": (2, 2, 12, 10), "B": (14, 4, 30, 16), "C": (4, 14, 12, 22)}  # x0, y0, x1, y1
COLORS = {"A": (255, 0, 0), "B": (90, 200, 80), "C": (60, 70, 200)}


def _rect(name: str) -> np.ndarray:
    x0, y0, x1, y1 = BOXES[name]
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


class HandMade(RecordDataset):
    """Two images: the three rectangles on gray (label 1), and plain gray (label 2)."""

    class_names = ["red", "green", "blue"]
    root = Path(".")

    def load_records(self) -> list[Record]:
        return [Record("rects.png", 1, "test"), Record("plain.png", 2, "test")]

    def read_image(self, record: Record) -> np.ndarray:
        image = np.full((H, W, 3), 128, np.uint8)
        if record.image_id == "rects.png":
            for name, color in COLORS.items():
                image[_rect(name)] = color
        return image

    def gt_masks(self, record: Record) -> list[np.ndarray]:
        return [_rect("B")] if record.image_id == "rects.png" else []


class Store:
    """The two images' segmentations: the three rectangles, and nothing."""

    path = Path("hand-made")

    def get(self, image_id: str) -> Segmentation:
        if image_id == "rects.png":
            return Segmentation.from_masks(image_id, [_rect(n) for n in "ABC"])
        return Segmentation.from_masks(image_id, [], height=H, width=W)


class MeanColour(nn.Module):
    """Logits = 10 x the mean colour (R, G, B in [0, 1]) of each image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return 10.0 * images.float().mean(dim=(2, 3)) / 255.0


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> OccamTask:
    path = save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_vit.pt")
    task = OccamTask("occam-tiny-vit", str(path), num_classes=3, scores=SCORES)
    task.occam = Occam(MeanColour(), SCORES)  # the classifier whose answer per view is known
    task.sources, task.modes = ["hand"], ["crop_resize_gray", "crop_resize_original"]
    return task


@pytest.fixture(scope="module")
def batch() -> dict:
    dataset = HandMade()
    modes = ["crop_resize_gray", "crop_resize_original"]
    data = OccamDataset(dataset, dataset.records("test"), {"hand": Store()}, modes, 16, {})
    return collate_occam([data[0], data[1]])


def test_a_batch_holds_every_mask_of_every_image_applied(batch: dict):
    assert batch["num_masks"]["hand"].tolist() == [3, 0]
    assert batch["owner"]["hand"].tolist() == [0, 0, 0]
    assert batch["applied"]["hand"]["crop_resize_gray"].shape == (3, 3, 16, 16)
    assert batch["image"].shape == (2, 3, 16, 16) and batch["label"].tolist() == [1, 2]
    # rectangles: the authors' square around the 10 x 8 red one holds the red and gray bands
    # above and below it (the mask's outside turns gray), nothing else
    red = batch["applied"]["hand"]["crop_resize_gray"][0]
    assert red[0].min() >= 128 and torch.equal(red[1], red[2]) and red[1].max() <= 128
    assert (red[:, 0] == 128).all() and (red[0] == 255).any()
    # the masks themselves and the ground truth, per image: the data scores nothing
    assert [m.shape for m in batch["masks"]["hand"]] == [(3, H, W), (0, H, W)]
    assert np.array_equal(batch["masks"]["hand"][0][1], _rect("B"))
    assert batch["gt_box"][0].tolist() == list(BOXES["B"]) and batch["gt_box"][1] is None
    assert np.array_equal(batch["gt_object"][0], _rect("B")) and batch["gt_object"][1] is None
    assert not {"bbox_iou", "object_iou"} & set(batch)


@pytest.mark.parametrize(
    "score, mask, predicted",
    [("max_prob", "A", 0), ("ens_entropy", "A", 0), ("oracle", "B", 1), ("bbox_iou", "B", 1)],
)
def test_each_score_picks_the_expected_mask(task: OccamTask, batch: dict, score, mask, predicted):
    with torch.no_grad():
        outs = task.outputs_of(batch)
    masks_logits = MeanColour()(batch["applied"]["hand"]["crop_resize_gray"])
    chosen = outs[f"hand/crop_resize_gray/{score}"]
    assert torch.equal(chosen.logits[0], masks_logits["ABC".index(mask)])
    assert int(chosen.logits[0].argmax()) == predicted
    assert chosen.object_iou[0].item() == pytest.approx(1.0 if mask == "B" else 0.0)


def test_an_image_without_masks_uses_the_whole_image_and_is_flagged(task: OccamTask, batch: dict):
    with torch.no_grad():
        outs = task.outputs_of(batch)
    full = MeanColour()(batch["image"])
    assert torch.equal(outs["FULL"].logits, full)
    for key, out in outs.items():
        assert torch.equal(out.logits[1], full[1]), key  # the plain image: no masks
        masked = key != "FULL"
        assert out.fallback.tolist() == ([0.0, 1.0] if masked else [0.0, 0.0]), key
        assert torch.isnan(out.object_iou[1]), key
    assert len(outs) == 1 + 2 * 4  # FULL and every (mode, score)


def test_a_missing_alpha_checkpoint_fails_before_anything_runs(tmp_path: Path):
    path = save_tiny_clip(tmp_path / "tiny_vit.pt")
    with pytest.raises(WeightsNotFoundError, match="absent.pth.*model-zoo"):
        OccamTask("occam-tiny-vit", str(path), alpha_weights=str(tmp_path / "absent.pth"))


class SwappedColour(MeanColour):
    """A second ensemble member that reads red as blue and blue as red."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return super().forward(images)[:, [2, 1, 0]]


def test_ens_entropy_with_an_ensemble_picks_the_mask_the_members_agree_on(task, batch):
    single = task.occam
    # members disagree on A and C, agree on B
    task.occam = Occam(MeanColour(), SCORES, ensemble=[SwappedColour()])
    try:
        with torch.no_grad():
            outs = task.outputs_of(batch)
    finally:
        task.occam = single
    logits = MeanColour()(batch["applied"]["hand"]["crop_resize_gray"])
    chosen = outs["hand/crop_resize_gray/ens_entropy"].logits[0]
    assert torch.equal(chosen, logits[1])  # B, although A is the main model's most confident
    assert torch.equal(outs["hand/crop_resize_gray/max_prob"].logits[0], logits[0])
