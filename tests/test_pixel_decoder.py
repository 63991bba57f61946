"""Parity of MSDeformAttnPixelDecoder with the official Mask2Former pixel decoder (fixture 05_pixel_decoder)."""
from __future__ import annotations

import pytest
import torch

from conftest import assert_close_ref, load_fixture
from dvis_sdk.models.pixel_decoder import MSDeformAttnPixelDecoder

NAME = "05_pixel_decoder"


@pytest.fixture(scope="module")
def fx():
    return load_fixture(NAME)


def _build(fx) -> MSDeformAttnPixelDecoder:
    hp = fx.meta["hyperparameters"]
    m = MSDeformAttnPixelDecoder(
        {k: (v["channels"], v["stride"]) for k, v in hp["input_shape"].items()},
        conv_dim=hp["conv_dim"],
        mask_dim=hp["mask_dim"],
        norm="GN",
        transformer_nheads=hp["transformer_nheads"],
        transformer_dim_feedforward=1024,
        transformer_enc_layers=hp["transformer_enc_layers"],
        transformer_in_features=hp["transformer_in_features"],
        common_stride=hp["common_stride"],
        n_points=hp["enc_n_points"],
    ).eval()
    m.load_state_dict(fx.weights, strict=True)
    return m


@pytest.fixture(scope="module")
def model(fx):
    return _build(fx)


def _inputs(fx) -> dict:
    return {k[len("in."):]: v for k, v in fx.io.items() if k.startswith("in.")}


def test_state_dict_keys(fx, model):
    assert set(model.state_dict()) == set(fx.weights)
    for k, v in model.state_dict().items():
        assert v.shape == fx.weights[k].shape, k


def test_parity(fx, model):
    with torch.no_grad():
        mask_features, enc_features, multi_scale = model.forward_features(_inputs(fx))
    assert isinstance(multi_scale, list) and len(multi_scale) == 3
    assert_close_ref(mask_features, fx.io["out.mask_features"], "mask_features")
    assert_close_ref(enc_features, fx.io["out.transformer_encoder_features"], "transformer_encoder_features")
    for i, feat in enumerate(multi_scale):
        assert_close_ref(feat, fx.io[f"out.multi_scale_features.{i}"], f"multi_scale_features.{i}")


def test_float64_inputs_are_cast_to_float32(fx, model):
    feats = {k: v.double() for k, v in _inputs(fx).items()}
    with torch.no_grad():
        mask_features, _, _ = model.forward_features(feats)
    assert mask_features.dtype == torch.float32
    assert_close_ref(mask_features, fx.io["out.mask_features"], "mask_features")


def test_frames_are_independent(fx, model):
    # no cross-frame interaction: frame 1 alone gives the batched frame-1 result
    feats = {k: v[1:2] for k, v in _inputs(fx).items()}
    with torch.no_grad():
        mask_features, enc_features, _ = model.forward_features(feats)
    assert_close_ref(mask_features, fx.io["out.mask_features"][1:2], "mask_features[1]")
    assert_close_ref(enc_features, fx.io["out.transformer_encoder_features"][1:2], "enc[1]")


def test_other_size(model):
    # a 96x128 image, batch 2: strides 4/8/16/32 -> 24x32, 12x16, 6x8, 3x4
    g = torch.Generator().manual_seed(0)
    chans = {"res2": 32, "res3": 64, "res4": 128, "res5": 256}
    strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    feats = {k: torch.randn(2, c, 96 // strides[k], 128 // strides[k], generator=g) for k, c in chans.items()}
    with torch.no_grad():
        mask_features, enc_features, multi_scale = model.forward_features(feats)
    assert mask_features.shape == (2, 32, 24, 32)
    assert enc_features.shape == (2, 64, 3, 4)
    assert [tuple(f.shape) for f in multi_scale] == [(2, 64, 3, 4), (2, 64, 6, 8), (2, 64, 12, 16)]
    assert torch.equal(enc_features, multi_scale[0])
    assert all(torch.isfinite(t).all() for t in [mask_features, *multi_scale])


def test_no_norm_variant_keys():
    m = MSDeformAttnPixelDecoder({"res2": (8, 4), "res3": (16, 8), "res4": (32, 16), "res5": (64, 32)},
                                 conv_dim=32, mask_dim=16, norm="", transformer_nheads=4, transformer_enc_layers=1)
    keys = set(m.state_dict())
    assert {"adapter_1.weight", "adapter_1.bias", "layer_1.weight", "layer_1.bias"} <= keys
    assert not any(k.startswith(("adapter_1.norm", "layer_1.norm")) for k in keys)
    assert m.transformer.encoder.layers[0].linear1.out_features == 1024


def test_bf16_smoke(fx):
    m = _build(fx).to(torch.bfloat16)
    feats = {k: v.to(torch.bfloat16) for k, v in _inputs(fx).items()}
    with torch.no_grad():
        mask_features, enc_features, multi_scale = m.forward_features(feats)
    for out, key in [(mask_features, "out.mask_features"), (enc_features, "out.transformer_encoder_features")]:
        assert out.dtype == torch.bfloat16 and out.shape == fx.io[key].shape
        assert torch.isfinite(out.float()).all()
        # loose sanity bound (measured ~1% of max|ref|); half precision is not held to the fp32 tolerance
        assert (out.float() - fx.io[key]).abs().max().item() < 0.05 * fx.io[key].abs().max().item()
    assert [f.shape for f in multi_scale] == [fx.io[f"out.multi_scale_features.{i}"].shape for i in range(3)]
