"""The embedded CLIP: captions, the multi-positive contrastive loss, and a tiny fit through the CLI
that exports an open_clip checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from occam_l2r.data.caption_datamodule import (
    CaptionDataModule,
    background_word,
    make_caption,
    template_fields,
)
from occam_l2r.data.datasets.synthetic import CLASS_NAMES, SyntheticSpurious
from occam_l2r.tasks.clip_train import MultiPositiveClipLoss, caption_positives
from tests.conftest import TINY

CONFIG = Path(__file__).parents[1] / "configs" / "synthetic" / "clip.yaml"
BOTH = "a photo of the digit {object} on {background}."


# ---------------------------------------------------------------------- captions
def test_caption_builder():
    assert make_caption(BOTH, "three", "brick") == "a photo of the digit three on brick."
    assert background_word("hubble_deep_field") == "hubble deep field"
    assert template_fields("a photo of {background}.") == {"background"}
    for bad in ("a photo of the digit {c}.", "no field at all"):
        with pytest.raises(ValueError, match="must name"):
            template_fields(bad)


def _first_training_batch(root: Path, **kwargs) -> tuple[CaptionDataModule, dict]:
    """A CaptionDataModule on the tiny benchmark (32 px, batch 24) and its first training batch."""
    dm = CaptionDataModule(
        SyntheticSpurious(root=str(root), **TINY),
        image_size=32, batch_size=24, num_workers=0, **kwargs,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    return dm, next(iter(dm.train_dataloader()))


def test_training_batches_carry_captions_naming_object_and_background(tiny_synthetic_root):
    dm, batch = _first_training_batch(
        tiny_synthetic_root,
        caption_templates=[BOTH, "a photo of the digit {object}."],
        segmentation=None,
    )
    assert len(batch["caption"]) == 24
    seen = set()
    for i, caption in enumerate(batch["caption"]):
        word = CLASS_NAMES[int(batch["label"][i])]
        place = batch["group_name"][i]
        if int(batch["caption_background"][i]) >= 0:
            assert caption == f"a photo of the digit {word} on {place}."
            assert int(batch["caption_background"][i]) == int(batch["group"][i])
        else:
            assert caption == f"a photo of the digit {word}."
        assert int(batch["caption_object"][i]) == int(batch["label"][i])
        seen.add(int(batch["caption_background"][i]) >= 0)
    assert seen == {True, False}  # both templates are drawn
    assert "caption" not in next(iter(dm.val_dataloader()))  # evaluation batches: class prompts


def test_several_views_each_with_their_own_captions(tiny_synthetic_root):
    _, batch = _first_training_batch(
        tiny_synthetic_root,
        caption_templates=[BOTH],
        view=["FULL", "FG_M"],
        view_captions={"FG_M": ["a photo of the digit {object}."]},
        segmentation="gt",
    )
    assert "views" not in batch and batch["image"].shape == (24, 3, 32, 32)
    kinds = set()
    for i, caption in enumerate(batch["caption"]):
        word, place = CLASS_NAMES[int(batch["label"][i])], batch["group_name"][i]
        filled = (batch["image"][i] == 0).all(0).float().mean()  # FG_M: off the digit, 0
        if caption == f"a photo of the digit {word}.":  # the FG_M view: no background shown
            assert int(batch["image_background"][i]) == -1 and filled > 0.2
            kinds.add("FG_M")
        else:
            assert caption == f"a photo of the digit {word} on {place}."
            assert int(batch["image_background"][i]) == int(batch["group"][i]) and filled < 0.05
            kinds.add("FULL")
    assert kinds == {"FULL", "FG_M"}
    # the FG_M sample is described by object-only captions, never by one naming a background
    positives = caption_positives(
        batch["label"], batch["image_background"], batch["caption_object"],
        batch["caption_background"],
    )  # fmt: skip
    fg = batch["image_background"] < 0
    assert not positives[fg][:, batch["caption_background"] >= 0].any()
    with pytest.raises(ValueError, match="view_captions"):
        CaptionDataModule(
            SyntheticSpurious(root=str(tiny_synthetic_root), **TINY),
            view=["FULL", "FG_C"], view_captions={"BG_S": [BOTH]}, segmentation="gt",
        )  # fmt: skip


# ---------------------------------------------------------------------- loss
def test_caption_positives_follow_what_the_caption_names():
    objects, backgrounds = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 0])
    # captions: "zero on 0", "zero" (no background), "1 on 1", background 0 only
    cap_obj, cap_bg = torch.tensor([0, 0, 1, -1]), torch.tensor([0, -1, 1, 0])
    expected = torch.tensor(
        [
            [1, 1, 0, 1],
            [1, 1, 0, 1],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(caption_positives(objects, backgrounds, cap_obj, cap_bg), expected)


def _features(seed: int, n: int = 5, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        F.normalize(torch.randn(n, d, generator=g), dim=1),
        F.normalize(torch.randn(n, d, generator=g), dim=1),
    )


def test_distinct_captions_give_open_clip_loss():
    image, text = _features(0)
    scale = torch.tensor(10.0)
    ours = MultiPositiveClipLoss()(image, text, scale, torch.eye(5, dtype=torch.bool))
    assert ours.item() == pytest.approx(ClipLoss()(image, text, scale).item(), abs=1e-6)


def test_equal_captions_are_not_negatives():
    # samples 0 and 1 have the same caption ("three on brick"), sample 2 another
    key = torch.tensor([0, 0, 1])
    positives = key[:, None] == key[None, :]
    loss = MultiPositiveClipLoss()
    e0, e1 = torch.eye(4)[0], torch.eye(4)[1]
    # perfect embedding: both "three on brick" images on their caption's embedding
    image = torch.stack([e0, e0, e1])
    text = torch.stack([e0, e0, e1])
    scale = torch.tensor(50.0)
    entropy = math.log(2) * 2 / 3  # of the targets: uniform over 2 positives in rows 0 and 1
    assert loss(image, text, scale, positives).item() == pytest.approx(entropy, abs=1e-4)

    # open_clip's one-hot loss calls the equal caption a negative: it prefers an embedding that
    # tears the two "three on brick" images (and captions) apart; the multi-positive loss does not
    e2 = torch.eye(4)[2]
    apart = torch.stack([e0, e2, e1])
    assert ClipLoss()(apart, apart, scale).item() < 1e-3 < entropy
    assert loss(apart, apart, scale, positives).item() > entropy + 1.0

    # swapping two equal captions changes nothing; for ClipLoss it is a different problem
    image, text = _features(1, n=3)
    swapped = text[[1, 0, 2]]
    assert loss(image, text, scale, positives).item() == pytest.approx(
        loss(image, swapped, scale, positives).item(), abs=1e-6
    )
    assert ClipLoss()(image, text, scale).item() != pytest.approx(
        ClipLoss()(image, swapped, scale).item(), abs=1e-3
    )

    # a descent step moves image 0 towards the equal caption 1 (open_clip's loss: away from it)
    def step_towards_caption_1(fn) -> float:
        image = torch.eye(4)[[0, 2, 3]].requires_grad_(True)
        text = torch.eye(4)[[0, 1, 3]]
        fn(image, text).backward()
        return float(-image.grad[0] @ text[1])

    assert step_towards_caption_1(lambda i, t: loss(i, t, torch.tensor(5.0), positives)) > 0
    assert step_towards_caption_1(lambda i, t: ClipLoss()(i, t, torch.tensor(5.0))) < 0


def test_diagonal_must_be_positive():
    image, text = _features(2, n=2)
    with pytest.raises(ValueError, match="its own caption"):
        MultiPositiveClipLoss()(image, text, torch.tensor(1.0), torch.zeros(2, 2, dtype=torch.bool))


# ---------------------------------------------------------------------- the CLI end to end
@pytest.mark.slow
def test_fit_exports_an_open_clip_checkpoint(tiny_synthetic_root, tmp_path):
    import open_clip

    from occam_l2r.cli import main
    from occam_l2r.models.clip_registry import register_configs

    out, stable = tmp_path / "runs", tmp_path / "stable" / "open_clip.pt"
    dataset = {"root": str(tiny_synthetic_root), "rho": 1.0, **TINY}
    args = ["fit", "--config", str(CONFIG)]
    for key, value in dataset.items():
        args += [f"--data.init_args.dataset.init_args.{key}", str(value)]
    args += [
        "--data.init_args.image_size", "32",
        "--data.init_args.batch_size", "8",
        "--data.init_args.num_workers", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1",
        "--trainer.max_steps", "3",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.logger.init_args.save_dir", str(out),
        "--trainer.default_root_dir", str(out),
        "--model.init_args.export_path", str(stable),
    ]  # fmt: skip
    cli = main(args)
    run = out / "synthetic" / "clip" / "version_0"
    metrics = json.loads((run / "test_metrics.json").read_text())
    for split in ("test_id", "test_shift", "test_random"):
        assert 0.0 <= metrics[f"{split}/acc"] <= 1.0 and metrics[f"{split}/num_samples"] == 8
    assert cli.trainer.checkpoint_callback.best_model_score is not None  # val/acc was logged

    exported = torch.load(run / "open_clip.pt", weights_only=True)
    assert stable.is_file()
    again = torch.load(stable, weights_only=True)
    assert exported.keys() == again.keys()
    assert all(torch.equal(exported[k], again[k]) for k in exported)
    assert not list(stable.parent.glob(".*tmp*"))  # the atomic write left no temporary file

    register_configs()
    loaded = open_clip.create_model("occam-tiny-convnext", pretrained=str(stable)).eval()
    trained = cli.model.clip.eval()  # `fit` tested the best checkpoint: these are its weights
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_image(x), trained.encode_image(x), atol=1e-6)
        tokens = open_clip.get_tokenizer("occam-tiny-convnext")(["a photo of the digit two."])
        assert torch.allclose(loaded.encode_text(tokens), trained.encode_text(tokens), atol=1e-6)
    assert loaded.logit_scale.item() == pytest.approx(trained.logit_scale.item())
