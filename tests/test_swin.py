"""Mask2Former Swin backbone: parity with fixture 04_swin, key layout, shapes, bf16, Swin-L layout."""
import math

import pytest
import torch

from conftest import assert_close_ref, load_fixture
from dvis_sdk.models.backbones.swin import SwinTransformer, shifted_window_mask

NAMES = ("res2", "res3", "res4", "res5")


def _tiny() -> SwinTransformer:
    return SwinTransformer(pretrain_img_size=224, patch_size=4, embed_dim=16, depths=(2, 2, 2, 2),
                           num_heads=(1, 2, 4, 8), window_size=7, mlp_ratio=4.0, qkv_bias=True,
                           qk_scale=None, ape=False, patch_norm=True).eval()


@pytest.fixture(scope="module")
def fx():
    return load_fixture("04_swin")


def test_strict_load_and_index_buffer(fx):
    m = _tiny()
    sd = m.state_dict()
    assert set(sd) == set(fx.weights)
    # the structural int64 index must equal the official one (it is not randomised in the fixture)
    for k in fx.weights:
        if k.endswith("relative_position_index"):
            assert sd[k].dtype == torch.int64 and torch.equal(sd[k], fx.weights[k]), k
    m.load_state_dict(fx.weights, strict=True)


@pytest.mark.parametrize("img", ["image_0", "image_1"])
def test_parity_fixture(fx, img):
    m = _tiny()
    m.load_state_dict(fx.weights, strict=True)
    with torch.no_grad():
        out = m(fx.io[f"in.{img}"])
    assert set(out) == set(NAMES)
    for name in NAMES:
        err = assert_close_ref(out[name], fx.io[f"out.{img}.{name}"], f"{img}.{name}")
        print(f"04_swin {img}.{name}: max abs err {err:.3e}")


def test_mask_single_window():
    # padded map of exactly one window: official labels only the two shifted bands (0:-ws is empty)
    mask = shifted_window_mask(7, 7, 7, 3, torch.device("cpu"))
    assert mask.shape == (1, 49, 49)
    lab = torch.zeros(7, 7)
    lab[:4, 4:] = 1
    lab[4:, :4] = 2
    lab[4:, 4:] = 3
    lab = lab.flatten()
    ref = torch.where(lab[None, :] == lab[:, None], 0.0, -100.0)
    torch.testing.assert_close(mask[0], ref)


def test_shapes_other_size_and_attributes():
    m = _tiny()
    assert m.out_channels == {"res2": 16, "res3": 32, "res4": 64, "res5": 128}
    assert m.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    h, w = 100, 72  # not multiples of 32 or of the window: padding everywhere
    with torch.no_grad():
        out = m(torch.randn(3, 3, h, w))
    for n in NAMES:
        s = m.out_strides[n]
        assert out[n].shape == (3, m.out_channels[n], math.ceil(h / s), math.ceil(w / s)), n


def test_batch_independence(fx):
    m = _tiny()
    m.load_state_dict(fx.weights, strict=True)
    x = fx.io["in.image_0"]
    with torch.no_grad():
        both = m(x)
        one = m(x[1:])
    for n in NAMES:
        assert_close_ref(one[n], both[n][1:], n)


def test_out_features_subset_and_ape():
    m = SwinTransformer(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                        out_features=("res3", "res5")).eval()
    assert all(f"norm{i}.weight" in m.state_dict() for i in range(4))  # official keeps all four norms
    with torch.no_grad():
        out = m(torch.randn(1, 3, 64, 64))
    assert set(out) == {"res3", "res5"} and set(m.out_channels) == {"res3", "res5"}
    m = SwinTransformer(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), ape=True).eval()
    assert m.state_dict()["absolute_pos_embed"].shape == (1, 16, 56, 56)
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 96))["res2"].shape == (1, 16, 16, 24)


def test_swin_large_layout():
    with torch.device("meta"):
        m = SwinTransformer(pretrain_img_size=384, embed_dim=192, depths=(2, 2, 18, 2),
                            num_heads=(6, 12, 24, 48), window_size=12)
    sd = m.state_dict()
    assert len(sd) == 357
    expected = {
        "patch_embed.proj.weight": (192, 3, 4, 4),
        "patch_embed.norm.weight": (192,),
        "layers.0.blocks.0.attn.relative_position_bias_table": (529, 6),
        "layers.0.blocks.1.attn.relative_position_index": (144, 144),
        "layers.2.blocks.17.mlp.fc1.weight": (3072, 768),
        "layers.2.blocks.17.attn.relative_position_bias_table": (529, 24),
        "layers.3.blocks.1.attn.qkv.weight": (4608, 1536),
        "layers.0.downsample.reduction.weight": (384, 768),
        "layers.2.downsample.norm.weight": (3072,),
        "norm3.weight": (1536,),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert sd["layers.0.blocks.0.attn.relative_position_index"].dtype == torch.int64
    assert "layers.3.downsample.reduction.weight" not in sd
    assert m.out_channels == {"res2": 192, "res3": 384, "res4": 768, "res5": 1536}


def test_bf16_smoke(fx):
    m = _tiny()
    m.load_state_dict(fx.weights, strict=True)
    m = m.to(torch.bfloat16)
    with torch.no_grad():
        out = m(fx.io["in.image_1"].to(torch.bfloat16))
    for n in NAMES:
        assert out[n].dtype == torch.bfloat16 and torch.isfinite(out[n]).all()
        assert out[n].shape == fx.io[f"out.image_1.{n}"].shape
