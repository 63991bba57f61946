"""Parity of the shared MSDeformAttn against the official module (fixtures 01_*), plus sampling semantics."""
from __future__ import annotations

import pytest
import torch

from conftest import assert_close_ref, load_fixture
from dvis_sdk.layers.ms_deform_attn import MSDeformAttn, ms_deform_attn

FIXTURES = ["01_ms_deform_attn_pixel_decoder", "01_ms_deform_attn_vit_adapter"]


def _build(fx) -> MSDeformAttn:
    m = MSDeformAttn(**fx.meta["hyperparameters"]).eval()
    m.load_state_dict(fx.weights, strict=True)
    return m


def _call(m: MSDeformAttn, io: dict, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    with torch.no_grad():
        return m(io["in.query"].to(dtype), io["in.reference_points"].to(dtype), io["in.input_flatten"].to(dtype),
                 io["in.input_spatial_shapes"], io["in.input_level_start_index"], None)


@pytest.mark.parametrize("name", FIXTURES)
def test_parity(name):
    fx = load_fixture(name)
    out = _call(_build(fx), fx.io)
    assert_close_ref(out, fx.io["out.output"], f"{name}.output")


def test_ratio_is_ignored():
    # The ViT-Adapter passes ratio=0.5 but the official module keeps value_proj d_model x d_model.
    fx = load_fixture("01_ms_deform_attn_vit_adapter")
    assert fx.meta["hyperparameters"]["ratio"] == 0.5
    m = _build(fx)
    assert tuple(m.value_proj.weight.shape) == (64, 64)
    assert set(m.state_dict()) == set(fx.weights)


def test_level_start_index_optional():
    fx = load_fixture("01_ms_deform_attn_pixel_decoder")
    m, io = _build(fx), fx.io
    with torch.no_grad():
        out = m(io["in.query"], io["in.reference_points"], io["in.input_flatten"], io["in.input_spatial_shapes"])
    assert_close_ref(out, io["out.output"], "output")


def _single_sample(loc_xy, value_hw: torch.Tensor) -> torch.Tensor:
    """Sample a one-level, one-head, one-channel map at one normalised location."""
    h, w = value_hw.shape
    value = value_hw.reshape(1, h * w, 1, 1)
    loc = torch.tensor(loc_xy, dtype=torch.float32).view(1, 1, 1, 1, 1, 2)
    attn = torch.ones(1, 1, 1, 1, 1)
    return ms_deform_attn(value, torch.tensor([[h, w]]), loc, attn).reshape(())


def test_zero_padding_semantics():
    v = torch.arange(1.0, 13.0).view(3, 4)
    # far outside [0, 1]: zero, not the border value
    for loc in [(5.0, 0.5), (-3.0, 0.5), (0.5, 7.0), (0.5, -2.5), (-10.0, 10.0)]:
        assert _single_sample(loc, v).item() == 0.0, loc
    # pixel centres (align_corners=False): (j + 0.5) / W, (i + 0.5) / H hit pixel (i, j) exactly
    for i in range(3):
        for j in range(4):
            got = _single_sample(((j + 0.5) / 4, (i + 0.5) / 3), v)
            assert torch.allclose(got, v[i, j]), (i, j)
    # on the left edge (x = 0) half of the bilinear weight falls on the zero padding
    assert torch.allclose(_single_sample((0.0, 1.5 / 3), v), 0.5 * v[1, 0])
    assert torch.allclose(_single_sample((1.0, 0.5 / 3), v), 0.5 * v[0, 3])


def test_joint_softmax_over_levels_and_points():
    # with zero sampling / attention weights every (level, point) weighs 1 / (n_levels * n_points)
    torch.manual_seed(0)
    m = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=3).eval()
    torch.nn.init.zeros_(m.sampling_offsets.weight)
    torch.nn.init.zeros_(m.sampling_offsets.bias)
    torch.nn.init.eye_(m.value_proj.weight)
    torch.nn.init.eye_(m.output_proj.weight)
    shapes = torch.tensor([[2, 3], [1, 2]])
    inp = torch.randn(1, 8, 8)
    ref = torch.tensor([[(0.5 / 3, 0.5 / 2), (0.25, 0.5)]]).view(1, 1, 2, 2)  # pixel (0,0) of both levels
    with torch.no_grad():
        out = m(torch.randn(1, 1, 8), ref, inp, shapes)
    expected = (inp[0, 0] + inp[0, 6]) / 2
    torch.testing.assert_close(out[0, 0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", FIXTURES)
def test_bf16_smoke(name):
    fx = load_fixture(name)
    m = _build(fx).to(torch.bfloat16)
    out = _call(m, fx.io, torch.bfloat16)
    assert out.dtype == torch.bfloat16 and out.shape == fx.io["out.output"].shape
    assert torch.isfinite(out.float()).all()
    ref = fx.io["out.output"]
    assert (out.float() - ref).abs().max().item() < 0.05 * ref.abs().max().item()
