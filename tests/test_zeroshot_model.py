"""The plain zero-shot model: open_clip equivalence, one text encoding per run, fast failures."""

from __future__ import annotations

import time

import open_clip
import pytest
import torch

from occam_l2r.models.zeroshot import PRESETS, ZeroShotClassifier, load_clip
from occam_l2r.weights import WeightsFileError, WeightsNotFoundError
from tests._clip_tiny import TINY_CONVNEXT, TINY_VIT, save_tiny_clip

CLASSES = ["zero", "one", "two", "three"]
TEMPLATES = ["a photo of the digit {c}.", "a drawing of a {c}."]


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "open_clip.pt")


@pytest.fixture(scope="module")
def clip(clip_file):
    return load_clip(TINY_VIT, pretrained=str(clip_file))


def test_logits_equal_direct_open_clip(clip, clip_file):
    """Same numbers as open_clip by hand: encode, normalise, prototypes, logit scale."""
    zs = ZeroShotClassifier(clip, CLASSES, TEMPLATES)
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    ours = zs(images)

    ref = open_clip.create_model(TINY_VIT, pretrained=str(clip_file)).eval()
    tok = open_clip.get_tokenizer(TINY_VIT)
    with torch.no_grad():
        weights = open_clip.build_zero_shot_classifier(
            ref, tok, CLASSES, [t.replace("{c}", "{}") for t in TEMPLATES]
        )
        cfg = ref.visual.preprocess_cfg
        mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
        f = ref.encode_image((images.float() / 255 - mean) / std, normalize=True)
        direct = ref.logit_scale.exp() * f @ weights
    assert ours.shape == (5, len(CLASSES))
    torch.testing.assert_close(ours, direct, atol=1e-5, rtol=1e-5)
    assert abs(float(ref.logit_scale.exp()) - 100.0) < 1e-3  # the saved weights were loaded


def test_images_of_any_size_and_dtype(clip):
    zs = ZeroShotClassifier(clip, CLASSES)
    images = torch.randint(0, 256, (2, 3, 40, 90), dtype=torch.uint8)
    resized = torch.nn.functional.interpolate(
        images.float() / 255, size=(64, 64), mode="bicubic", antialias=True
    ).clamp(0, 1)
    torch.testing.assert_close(zs(images), zs(resized), atol=1e-5, rtol=1e-5)
    f = zs.encode_images(images)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(2))


def test_logits_are_float32_under_autocast(clip):
    zs = ZeroShotClassifier(clip, CLASSES, TEMPLATES)
    f = zs.encode_images(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = zs.logits(f)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z, zs.logits(f))


def test_logit_bias_is_added(clip):
    zs = ZeroShotClassifier(clip, CLASSES)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    before = zs(images)
    clip.model.logit_bias = torch.nn.Parameter(torch.tensor(-3.0), requires_grad=False)
    try:
        torch.testing.assert_close(zs(images), before - 3.0)
    finally:
        clip.model.logit_bias = None


def test_text_encoder_once_per_class_and_template_and_cached(clip, tmp_path, monkeypatch):
    """Every (class, template) is encoded exactly once per run; a second run reads the cache."""
    calls: list[int] = []
    encode = clip.model.encode_text

    def counting(text, normalize=False):
        calls.append(len(text))
        return encode(text, normalize=normalize)

    monkeypatch.setattr(clip.model, "encode_text", counting)
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    zs = ZeroShotClassifier(clip, CLASSES, TEMPLATES, cache_dir=str(tmp_path))
    first = [zs(images) for _ in range(3)]
    assert sum(calls) == len(CLASSES) * len(TEMPLATES) and zs.prototype_source == "computed"
    assert zs.cache_path is not None and zs.cache_path.is_file()

    again = ZeroShotClassifier(clip, CLASSES, TEMPLATES, cache_dir=str(tmp_path))
    torch.testing.assert_close(again(images), first[0])
    assert sum(calls) == len(CLASSES) * len(TEMPLATES) and again.prototype_source == "cache"

    other = ZeroShotClassifier(clip, CLASSES, TEMPLATES[:1], cache_dir=str(tmp_path))
    other.build_prototypes()  # other templates: another key, computed
    assert other.prototype_source == "computed" and other.cache_key != zs.cache_key
    assert sum(calls) == len(CLASSES) * (len(TEMPLATES) + 1)


def test_corrupt_cache_entry_is_rebuilt(clip, tmp_path):
    zs = ZeroShotClassifier(clip, CLASSES, cache_dir=str(tmp_path))
    zs.build_prototypes()
    zs.cache_path.write_bytes(b"garbage")
    again = ZeroShotClassifier(clip, CLASSES, cache_dir=str(tmp_path))
    torch.testing.assert_close(again.prototypes, zs.prototypes)
    assert again.prototype_source == "computed"


def test_templates_need_the_placeholder(clip):
    with pytest.raises(ValueError, match=r"\{c\}"):
        ZeroShotClassifier(clip, CLASSES, "a photo of a thing")


def test_missing_weights_fail_fast(tmp_path, monkeypatch):
    """Missing files, uncached tags and hub ids raise WeightsNotFoundError within seconds."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    t0 = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="configs/synthetic/clip.yaml"):
        load_clip(TINY_CONVNEXT, pretrained=str(tmp_path / "open_clip.pt"))
    for preset in PRESETS:
        with pytest.raises(WeightsNotFoundError, match="HF_HUB_OFFLINE|not in the local cache"):
            load_clip(preset)
    assert time.perf_counter() - t0 < 10


def test_unreadable_weights_file_is_named(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError, match="broken.pt"):
        load_clip(TINY_VIT, pretrained=str(bad))
    other = save_tiny_clip(tmp_path / "convnext.pt", TINY_CONVNEXT)
    with pytest.raises(WeightsFileError, match="convnext.pt"):  # another architecture's weights
        load_clip(TINY_VIT, pretrained=str(other))


def test_unknown_names_are_value_errors():
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_clip("no-such-model")
    with pytest.raises(ValueError, match="no pretrained tag"):
        load_clip("ViT-B-32", pretrained="no_such_tag")


def test_local_weights_file_does_not_warn_random_init(clip_file, caplog):
    """open_clip warns "initialized randomly" for a model built before its file is loaded; a
    local file is loaded right after, so the warning would mislead; random weights still warn."""
    with caplog.at_level("WARNING"):
        load_clip(TINY_VIT, pretrained=str(clip_file))
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
    with caplog.at_level("WARNING"):
        load_clip(TINY_VIT)
    assert [r for r in caplog.records if "initialized randomly" in r.getMessage()]
