"""Training and evaluation resize the views alike; the centre-crop option is timm's geometry.

L2R² trains and evaluates with one preprocessing; the toolkit used to train with OpenCV's
bilinear and evaluate with ``INTER_AREA`` (close to nearest-neighbour when upscaling small FG
crops). Now one interpolation serves both: ``data.interpolation``, else the model's own (timm's
``pretrained_cfg["interpolation"]``, bicubic for ConvNeXtV2), else bilinear. Evaluation squashes
a view to the square input (the paper's tables), or applies timm's shorter-side resize + centre
crop (``data.eval_resize: center_crop``).
"""

from __future__ import annotations

import cv2
import lightning as L
import numpy as np
import pytest
from PIL import Image

from occam_l2r.data.datamodule import ViewDataModule
from occam_l2r.data.datasets.synthetic import SyntheticSpurious
from occam_l2r.data.view_dataset import (
    ShorterSideCenterCrop,
    center_crop_geometry,
    eval_transform,
    train_transform,
)
from tests.conftest import TINY


def _dm(root, **kw) -> ViewDataModule:
    args = {"view": "FULL", "segmentation": None, "image_size": 32, "batch_size": 4,
            "num_workers": 0} | kw  # fmt: skip
    dm = ViewDataModule(SyntheticSpurious(root=str(root), **TINY), **args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _validate(task, dm) -> None:
    """One validation batch through a CPU Trainer: the task's ``setup`` tells the DataModule."""
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
    )  # fmt: skip
    trainer.validate(task, datamodule=dm, verbose=False)


def _flag(loader) -> int:
    """The OpenCV interpolation of the first (resizing) op of a loader's transform."""
    return loader.dataset.transform.transforms[0].interpolation


def test_train_and_eval_resize_with_one_interpolation(synthetic_copy):
    dm = _dm(synthetic_copy)  # no model told its preprocessing: bilinear for both
    train, evals = _flag(dm.train_dataloader()), [_flag(dm.val_dataloader())]
    evals += [_flag(loader) for loader in dm.test_dataloader() + dm.predict_dataloader()]
    assert train == cv2.INTER_LINEAR and set(evals) == {train}
    # the standalone transforms agree too (classify's ViewModel uses eval_transform)
    assert train_transform(32).transforms[0].interpolation == (
        eval_transform(32).transforms[0].interpolation
    )


def test_configured_interpolation_wins_over_the_model(synthetic_copy):
    dm = _dm(synthetic_copy, interpolation="area")
    dm.use_model_preprocessing("bicubic", 0.9)
    assert _flag(dm.train_dataloader()) == _flag(dm.val_dataloader()) == cv2.INTER_AREA


def test_classifier_tells_its_timm_interpolation(synthetic_copy):
    """A ConvNeXtV2 classifier's views are resized bicubic (timm's pretrained_cfg), in
    training and in evaluation."""
    from occam_l2r.tasks.classifier import ClassifierTask

    dm = _dm(synthetic_copy, eval_resize="center_crop")
    task = ClassifierTask("convnextv2_atto", num_classes=dm.num_classes)
    _validate(task, dm)
    assert dm.interpolation == "bicubic"
    assert _flag(dm.train_dataloader()) == _flag(dm.val_dataloader()) == cv2.INTER_CUBIC
    crop = dm.val_dataloader().dataset.transform.transforms[0]
    assert isinstance(crop, ShorterSideCenterCrop) and crop.crop_pct == 0.875  # timm's cfg


def _ramp(height: int, width: int) -> np.ndarray:
    """A smooth image whose values encode the position (so a shifted crop shows)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    chans = [x * 250 / width, y * 250 / height, (x + y) * 125 / (width + height)]
    return np.stack(chans, -1).round().astype(np.uint8)


@pytest.mark.parametrize("shape", [(300, 500), (500, 300), (97, 131), (64, 64), (40, 400)])
@pytest.mark.parametrize("crop_pct", [0.875, 1.0, 0.95])
def test_center_crop_is_timms_eval_geometry(shape, crop_pct):
    from timm.data import create_transform

    size = 36
    image = _ramp(*shape)
    timm_tf = create_transform(
        size, is_training=False, crop_pct=crop_pct, interpolation="bilinear", crop_mode="center"
    )
    theirs = timm_tf(Image.fromarray(image)).numpy().transpose(1, 2, 0)  # normalised
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    theirs = (theirs * std + mean) * 255.0
    ours = eval_transform(size, "bilinear", "center_crop", crop_pct)(image=image)["image"]
    assert ours.shape == theirs.shape == (size, size, 3)
    # PIL antialiases a downscale, OpenCV does not: equal on a ramp away from the border
    inner = np.abs(ours.astype(np.float64) - theirs)[2:-2, 2:-2]
    assert inner.max() <= 2.0, inner.max()
    # the geometry itself: torchvision's Resize(int) then CenterCrop
    h, w = shape
    new_h, new_w, top, left = center_crop_geometry(h, w, size, crop_pct)
    scale = int(size / crop_pct)
    assert min(new_h, new_w) == scale and (top, left) == (
        round((new_h - size) / 2),
        round((new_w - size) / 2),
    )


def test_squash_keeps_the_whole_image():
    image = _ramp(300, 500)
    out = eval_transform(36, "bilinear")(image=image)["image"]
    assert out.shape == (36, 36, 3)
    assert out[:, 0, 0].max() <= 8 and out[:, -1, 0].min() >= 240  # both side borders kept


def test_bad_crop_pct_and_interpolation_are_refused(synthetic_copy):
    with pytest.raises(ValueError, match="crop_pct"):
        ViewDataModule(SyntheticSpurious(root=str(synthetic_copy), **TINY), crop_pct=1.5)
    with pytest.raises(ValueError, match="crop_pct"):
        eval_transform(32, "bilinear", "center_crop", 0.0)


def test_embedded_clip_trains_on_the_views_zero_shot_reads(synthetic_copy):
    """The embedded CLIP's training views are resized with open_clip's own interpolation
    (bicubic), as the zero-shot and OCCAM tasks resize theirs: before, it trained on bilinear
    views and was evaluated zero-shot on bicubic ones."""
    from occam_l2r.data.caption_datamodule import CaptionDataModule
    from occam_l2r.tasks.clip_train import ClipTrainTask

    dm = CaptionDataModule(
        SyntheticSpurious(root=str(synthetic_copy), **TINY),
        image_size=32, batch_size=4, num_workers=0,
    )  # fmt: skip
    dm.prepare_data()
    task = ClipTrainTask("occam-tiny-convnext")
    _validate(task, dm)
    assert task.interpolation == "bicubic"
    assert _flag(dm.train_dataloader()) == _flag(dm.val_dataloader()) == cv2.INTER_CUBIC
