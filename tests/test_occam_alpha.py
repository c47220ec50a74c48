"""The α-channel encoder: zero alpha weights give exactly the RGB model's embeddings; AlphaCLIP
checkpoints (AlphaCLIP's own key names) load onto it, into its own copy of the tower (the
zero-shot model's RGB embeddings stay bit-identical); what cannot load says why."""

from __future__ import annotations

import pytest
import torch

from occam_l2r.models.alpha_clip import (
    AlphaClipEncoder,
    AlphaVisual,
    alpha_clip_state_dict,
    load_alpha_clip_weights,
)
from occam_l2r.models.zeroshot import ZeroShotClassifier, load_clip
from occam_l2r.occam.model import Occam
from occam_l2r.weights import WeightsFileError, WeightsNotFoundError
from tests._clip_tiny import TINY_CONVNEXT, save_tiny_clip, tiny_open_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = save_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_vit.pt")
    return load_clip("occam-tiny-vit", pretrained=str(path))


def _rgba(n: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    alpha = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    alpha[0] = 255  # the whole image
    alpha[1, :, 8:40, 16:48] = 255  # a box
    return torch.cat([rgb, alpha], 1)  # image 2: an empty mask


def _encoder(clip) -> AlphaClipEncoder:
    return AlphaClipEncoder(clip.model.visual, clip.image_size, clip.mean, clip.std).eval()


@torch.no_grad()
def test_zero_alpha_weights_give_exactly_the_rgb_embeddings(clip):
    enc = _encoder(clip)
    x = _rgba()
    rgb, alpha = enc.preprocess(x)
    expected = clip.model.encode_image(rgb, normalize=True)
    assert torch.equal(enc(x), expected)  # whatever the mask
    assert torch.equal(enc.tower(rgb, alpha), clip.model.visual(rgb))
    # and the zero-shot classifier's own encoding of the RGB images
    zs = ZeroShotClassifier(clip, ["zero", "one"])
    assert torch.equal(enc(x), zs.encode_images(x[:, :3]))


@torch.no_grad()
def test_trained_alpha_weights_read_the_mask_and_leave_the_rgb_tower_alone(clip):
    enc = _encoder(clip)
    torch.manual_seed(1)
    enc.tower.conv1_alpha.weight.normal_(std=0.05)
    x = _rgba()
    out = enc(x)
    rgb, _ = enc.preprocess(x)
    rgb_only = clip.model.encode_image(rgb, normalize=True)
    assert not torch.allclose(out, rgb_only)
    assert not torch.allclose(out[0], out[1])  # the mask changes the embedding ...
    x2 = x.clone()
    x2[:, :3] = x[[1, 0, 2], :3]
    assert not torch.allclose(enc(x2)[1], rgb_only[0])
    # ... and the zero-shot model's own RGB tower is untouched (the encoder holds a copy)
    assert torch.equal(clip.model.encode_image(rgb, normalize=True), rgb_only)


def _as_alpha_clip_checkpoint(visual, alpha_weight: torch.Tensor, prefix: str = "") -> dict:
    """The tiny tower's weights under AlphaCLIP's key names (attn.in_proj.{weight,bias})."""
    out = {}
    for key, value in visual.state_dict().items():
        key = key.replace("attn.in_proj_weight", "attn.in_proj.weight")
        key = key.replace("attn.in_proj_bias", "attn.in_proj.bias")
        out[prefix + key] = value.clone()
    out[prefix + "conv1_alpha.weight"] = alpha_weight
    return out


@pytest.mark.parametrize("prefix", ["", "visual.", "module.visual."])
def test_alpha_clip_checkpoint_keys_load_onto_the_open_clip_tower(clip, tmp_path, prefix):
    donor = tiny_open_clip(seed=7).visual  # "fine-tuned" weights: another seed
    alpha_w = torch.randn_like(clip.model.visual.conv1.weight[:, :1])
    ckpt = _as_alpha_clip_checkpoint(donor, alpha_w, prefix)
    assert "transformer.resblocks.0.attn.in_proj.weight" in {k[len(prefix) :] for k in ckpt}
    path = tmp_path / "clip_tiny_alpha.pth"
    torch.save(ckpt, path)
    tower = AlphaVisual(tiny_open_clip(seed=3).visual)
    load_alpha_clip_weights(tower, path)
    state = tower.state_dict()
    assert torch.equal(state["conv1_alpha.weight"], alpha_w)
    for key, value in donor.state_dict().items():
        assert torch.equal(state["visual." + key], value), key
    mapped = alpha_clip_state_dict(ckpt)
    assert "visual.transformer.resblocks.1.attn.in_proj_bias" in mapped


def test_checkpoints_that_do_not_fit_say_why(clip, tmp_path):
    tower = AlphaVisual(tiny_open_clip().visual)
    alpha_w = torch.zeros_like(tower.conv1_alpha.weight)
    with pytest.raises(WeightsNotFoundError, match="model-zoo"):
        load_alpha_clip_weights(tower, tmp_path / "absent.pth")
    plain = tmp_path / "plain_clip.pth"
    torch.save(tiny_open_clip().visual.state_dict(), plain)
    with pytest.raises(WeightsFileError, match="conv1_alpha"):
        load_alpha_clip_weights(tower, plain)
    lora = _as_alpha_clip_checkpoint(tiny_open_clip().visual, alpha_w)
    lora["transformer.resblocks.0.attn.in_proj.lora_A"] = torch.zeros(2, 64)
    torch.save(lora, tmp_path / "lora.pth")
    with pytest.raises(WeightsFileError, match="LoRA"):
        load_alpha_clip_weights(tower, tmp_path / "lora.pth")
    short = _as_alpha_clip_checkpoint(tiny_open_clip().visual, alpha_w)
    short["positional_embedding"] = short["positional_embedding"][:5]
    del short["ln_post.bias"]
    torch.save(short, tmp_path / "other_arch.pth")
    with pytest.raises(WeightsFileError, match="does not fit.*ln_post.bias.*positional_embedding"):
        load_alpha_clip_weights(tower, tmp_path / "other_arch.pth")


def test_a_timm_image_tower_has_no_alpha_mode():
    with pytest.raises(ValueError, match="needs an open_clip ViT"):
        AlphaVisual(tiny_open_clip(TINY_CONVNEXT).visual)


@torch.no_grad()
def test_loading_alpha_weights_leaves_the_zero_shot_rgb_embeddings_bit_identical(clip, tmp_path):
    """Issue 16, item 1: the α encoder is built on the zero-shot model's tower, as the task builds
    it; an AlphaCLIP checkpoint whose RGB weights differ must load into the α encoder's own copy
    (the authors' alpha_clip_wrapper.py builds a separate AlphaCLIP model), never into the tower
    that classifies the whole image and the crop + resize rows."""
    model = clip
    donor = tiny_open_clip(seed=11).visual  # AlphaCLIP's fine-tuned RGB weights: another seed
    alpha_w = 0.05 * torch.randn_like(model.model.visual.conv1.weight[:, :1])
    path = tmp_path / "clip_tiny_alpha.pth"
    torch.save(_as_alpha_clip_checkpoint(donor, alpha_w, "visual."), path)
    x = _rgba()
    zs = ZeroShotClassifier(model, ["zero", "one"])
    before = zs.encode_images(x[:, :3]).clone()
    before_state = {k: v.clone() for k, v in model.model.visual.state_dict().items()}
    # through the plain Occam module, as OccamTask.setup builds it
    enc = AlphaClipEncoder(
        model.model.visual, model.image_size, model.mean, model.std, str(path)
    ).eval()
    occam = Occam(zs, ["max_prob"], alpha=enc)
    assert torch.equal(zs.encode_images(x[:, :3]), before)  # bit-identical
    for key, value in model.model.visual.state_dict().items():
        assert torch.equal(value, before_state[key]), key
    assert torch.equal(occam.encode("FULL", x[:, :3])[0], zs(x[:, :3]))
    # the α encoder did load the checkpoint: its RGB tower is the donor's
    for key, value in donor.state_dict().items():
        assert torch.equal(enc.tower.visual.state_dict()[key], value), key
    assert enc.tower.visual is not model.model.visual
