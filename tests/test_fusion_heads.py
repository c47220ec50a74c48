"""Plain nn.Module heads: hand-computed forwards, training that learns, the fusers interface."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch

from occam_l2r.fusion import heads as H
from occam_l2r.fusion.fusers import Calibration, FitSettings, HeadConfig, build_method, method_names
from occam_l2r.fusion.head_training import head_logits, train_head
from occam_l2r.fusion.inputs import LogitsPair


def test_weighted_logits_forward_hand_computed():
    h = H.WeightedLogits(3)
    with torch.no_grad():
        h.w1.copy_(torch.tensor([1.0, 0.0, 2.0]))
        h.w2.copy_(torch.tensor([0.0, 1.0, -1.0]))
    z1 = torch.tensor([[1.0, 2.0, 3.0]])
    z2 = torch.tensor([[10.0, 20.0, 30.0]])
    torch.testing.assert_close(h(z1, z2), torch.tensor([[1.0, 20.0, -24.0]]))


def test_temperature_fusion_forward_and_single_input():
    h = H.TemperatureFusion(2)
    with torch.no_grad():
        h.scales[0].log_t.fill_(np.log(2.0))
    z1 = torch.tensor([[2.0, 0.0]])
    z2 = torch.tensor([[0.0, 0.0]])
    expect = 0.5 * ((z1 / 2).softmax(1) + z2.softmax(1))
    torch.testing.assert_close(h(z1, z2).exp(), expect)
    one = H.TemperatureFusion(1)
    torch.testing.assert_close(one(z1), z1)
    with pytest.raises(ValueError, match="num_inputs"):
        H.TemperatureFusion(3)


def test_concat_fc_shapes():
    assert H.ConcatFC(5, 8)(torch.zeros(4, 5), torch.zeros(4, 5)).shape == (4, 5)
    assert H.ConcatFC(5, 0)(torch.zeros(4, 5), torch.zeros(4, 5)).shape == (4, 5)
    with pytest.raises(ValueError, match="unknown fusion head"):
        H.build_head("mlp", 3)


def test_build_head_from_the_one_registry():
    assert list(H.HEADS) == list(get_args(H.HeadName))
    z = torch.randn(4, 5)
    for name, cls in H.HEADS.items():
        head = H.build_head(name, 5)
        assert type(head) is cls and head(z, z).shape == (4, 5)
        assert head.loss(z, z, torch.zeros(4, dtype=torch.int64)).ndim == 0
    assert H.build_head("concat_fc", 5, hidden_dim=0).net[-1].in_features == 10
    assert H.build_head("concat_fc", 5, hidden_dim=7).net[0].out_features == 7
    one = H.build_head("temperature", 5, num_inputs=1)
    assert len(one.scales) == 1 and one(z).shape == (4, 5)
    with pytest.raises(ValueError, match="unknown fusion head 'mlp'.*'temperature'.*'concat_fc'"):
        H.build_head("mlp", 3)
    for name in ("weighted_logits", "concat_fc"):
        with pytest.raises(ValueError, match="fuses two inputs.*set data.input2 and num_inputs: 2"):
            H.build_head(name, 3, num_inputs=1)
    with pytest.raises(ValueError, match="'temperature' takes 1 or 2 inputs"):
        H.build_head("temperature", 3, num_inputs=3)


def informative_and_noise(n=2000, c=4, seed=0):
    """Input 1 carries the class, input 2 is pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z1 = 3.0 * np.eye(c)[y] + rng.normal(size=(n, c))
    z2 = 3.0 * rng.normal(size=(n, c))
    return z1.astype(np.float32), z2.astype(np.float32), y


def test_weighted_logits_learns_to_trust_the_informative_input():
    z1, z2, y = informative_and_noise()
    h = train_head(H.WeightedLogits(4), z1, z2, y, max_epochs=15, lr=0.1, batch_size=256).head
    assert (h.w1.detach().abs() > 3 * h.w2.detach().abs()).all()
    acc = (head_logits(h, z1, z2).argmax(1) == y).mean()
    assert acc > (z1.argmax(1) == y).mean() - 0.02


def test_train_head_errors():
    z = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="no labelled samples"):
        train_head(H.WeightedLogits(2), z, z, np.array([-1, -1, -1]))


def test_every_method_fits_and_predicts():
    z1, z2, y = informative_and_noise(n=400)
    pair = LogitsPair(
        ids=np.arange(len(y)).astype(str), labels=y, z1=z1, z2=z2, groups=np.full(len(y), "")
    )
    calib = Calibration(pair)
    for name in method_names():
        fuser = build_method(name, FitSettings(heads=HeadConfig(max_epochs=3, batch_size=128)))
        out = fuser.fit(pair, pair, calib).apply(pair)
        assert out.pred.shape == y.shape and np.isfinite(out.conf).all()
        assert (out.conf > 0).all() and (out.conf <= 1 + 1e-6).all()
    # temperatures are fitted once per input and shared
    assert set(calib.store) >= {
        ("input1", "t"),
        ("input2", "t"),
        ("input1", "ct"),
        ("input2", "ct"),
    }
    with pytest.raises(ValueError, match="unknown fusion method"):
        build_method("avg")
    with pytest.raises(ValueError, match="train logits"):
        build_method("weighted_logits").fit(None, pair, calib)
