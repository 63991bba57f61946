"""detectron2 ResNet backbone: parity with fixture 03_resnet, key layout, shapes, bf16."""
import math

import pytest
import torch

from conftest import assert_close_ref, load_fixture
from dvis_sdk.models.backbones.resnet import FrozenBatchNorm2d, ResNet

NAMES = ("res2", "res3", "res4", "res5")


def _tiny() -> ResNet:
    # fixture 03: R50 topology at 1/8 width
    return ResNet(depth=50, stem_out_channels=16, res2_out_channels=32, width_per_group=8).eval()


@pytest.fixture(scope="module")
def fx():
    return load_fixture("03_resnet")


def test_strict_load_and_key_set(fx):
    m = _tiny()
    assert set(m.state_dict()) == set(fx.weights)
    m.load_state_dict(fx.weights, strict=True)
    assert not any("num_batches_tracked" in k for k in m.state_dict())


def test_parity_fixture(fx):
    m = _tiny()
    m.load_state_dict(fx.weights, strict=True)
    inputs = sorted(k for k in fx.io if k.startswith("in."))
    assert inputs
    for key in inputs:
        img = key[len("in."):]
        with torch.no_grad():
            out = m(fx.io[key])
        assert set(out) == set(NAMES)
        for name in NAMES:
            err = assert_close_ref(out[name], fx.io[f"out.{img}.{name}"], f"{img}.{name}")
            print(f"03_resnet {img}.{name}: max abs err {err:.3e}")


def test_frozen_bn_formula():
    bn = FrozenBatchNorm2d(4)
    for t in (bn.weight, bn.bias, bn.running_mean):
        t.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 3, 5)
    scale = bn.weight / torch.sqrt(bn.running_var + 1e-5)
    ref = x * scale[:, None, None] + (bn.bias - bn.running_mean * scale)[:, None, None]
    torch.testing.assert_close(bn(x), ref)
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var"}


def test_shapes_other_size_and_attributes():
    m = _tiny()
    assert m.out_channels == {"res2": 32, "res3": 64, "res4": 128, "res5": 256}
    assert m.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    h, w = 70, 50  # not multiples of 32: detectron2 convs give ceil(H/s)
    with torch.no_grad():
        out = m(torch.randn(3, 3, h, w))
    for n in NAMES:
        s = m.out_strides[n]
        assert out[n].shape == (3, m.out_channels[n], math.ceil(h / s), math.ceil(w / s)), n


def test_out_features_subset_and_dilation():
    m = ResNet(stem_out_channels=16, res2_out_channels=32, width_per_group=8, out_features=("res2", "res3"))
    assert not any(k.startswith(("res4", "res5")) for k in m.state_dict())  # official builds only needed stages
    m = ResNet(stem_out_channels=16, res2_out_channels=32, width_per_group=8, res5_dilation=2).eval()
    assert m.out_strides["res5"] == 16
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 64))["res5"].shape == (1, 256, 4, 4)


def test_full_width_r50_r101_layout():
    r50 = ResNet(depth=50).eval()
    sd = r50.state_dict()
    assert len(sd) == 265
    assert sd["stem.conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["res2.0.shortcut.weight"].shape == (256, 64, 1, 1)
    assert sd["res3.0.conv2.weight"].shape == (128, 128, 3, 3)
    assert sd["res5.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert sd["res5.2.conv3.norm.running_var"].shape == (2048,)
    assert sum(p.numel() for p in r50.parameters()) == 23_454_912  # torchvision R50 minus fc and BN affine
    assert r50.out_channels == {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
    with torch.no_grad():
        out = r50(torch.randn(1, 3, 64, 32))
    assert out["res5"].shape == (1, 2048, 2, 1)
    with torch.device("meta"):
        r101 = ResNet(depth=101)
    sd = r101.state_dict()
    assert len(sd) == 520 and "res4.22.conv3.norm.weight" in sd and "res4.23.conv1.weight" not in sd


def test_bf16_smoke(fx):
    m = _tiny()
    m.load_state_dict(fx.weights, strict=True)
    m = m.to(torch.bfloat16)
    with torch.no_grad():
        out = m(fx.io["in.image_0"].to(torch.bfloat16))
    for n in NAMES:
        assert out[n].dtype == torch.bfloat16 and torch.isfinite(out[n]).all()
        assert out[n].shape == fx.io[f"out.image_0.{n}"].shape
