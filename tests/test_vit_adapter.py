"""ViT-Adapter (DINOv2) backbone: parity with the official D2VitAdapterDinoV2 (fixture 02_vit_adapter)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close_ref, load_fixture
from dvis_sdk.models.backbones import dinov2
from dvis_sdk.models.backbones.dinov2 import DinoVisionTransformer, resize_patch_embed_kernel
from dvis_sdk.models.backbones.vit_adapter import ViTAdapter, vitl_adapter_kwargs

FIXTURE = "02_vit_adapter"


@pytest.fixture(scope="module")
def fx():
    return load_fixture(FIXTURE)


def _build(fx) -> ViTAdapter:
    c = fx.meta["hyperparameters"]["CUSTOM"]
    v, a = c["VIT"], c["ADAPTER"]
    assert v["BLOCK_CHUNKS"] == 0 and v["FFN_LAYER"] == "mlp"
    return ViTAdapter(
        img_size=v["IMG_SIZE"], patch_size=v["PATCH_SIZE"], embed_dim=v["EMBED_DIM"], depth=v["DEPTH"],
        num_heads=v["NUM_HEADS"], mlp_ratio=v["MLP_RATIO"], layer_scale_init_values=v["INIT_VALUES"],
        qkv_bias=v["QKV_BIAS"], proj_bias=v["PROJ_BIAS"], ffn_bias=v["FFN_BIAS"], ffn_layer=v["FFN_LAYER"],
        conv_inplane=a["CONV_INPLANE"], n_points=a["N_POINTS"], deform_num_heads=a["DEFORM_NUM_HEADS"],
        init_values=a["INIT_VALUES"], with_cffn=a["WITH_CFFN"], cffn_ratio=a["CFFN_RATIO"],
        deform_ratio=a["DEFORM_RATIO"], add_vit_feature=a["ADD_VIT_FEATURE"],
        use_extra_extractor=a["USE_EXTRA_EXTRACTOR"], interaction_indexes=a["INTERACTION_INDEXES"],
        freeze_vit=fx.meta["hyperparameters"]["FREEZE_VIT"],
    )


@pytest.fixture(scope="module")
def model(fx):
    m = _build(fx).eval()
    m.load_state_dict(fx.weights, strict=True)
    return m


def test_state_dict_keys_and_strict_load(fx):
    m = _build(fx)
    sd = m.state_dict()
    assert set(sd) == set(fx.weights)
    for k, v in fx.weights.items():
        assert sd[k].shape == v.shape and sd[k].dtype == v.dtype, k
    m.load_state_dict(fx.weights, strict=True)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("idx", [0, 1])
def test_parity(fx, model, idx, fused, monkeypatch):
    monkeypatch.setattr(dinov2.Attention, "fused_attn", fused)
    x = fx.io[f"in.image_{idx}"]
    with torch.no_grad():
        out = model(x)
    assert list(out) == ["res2", "res3", "res4", "res5"]
    for k in out:
        err = assert_close_ref(out[k], fx.io[f"out.image_{idx}.{k}"], f"image_{idx}.{k}")
        print(f"image_{idx}.{k} fused={fused}: max abs err {err:.3g}")


def test_other_size_and_attrs(model):
    x = torch.randn(3, 3, 128, 64)
    with torch.no_grad():
        out = model(x)
    assert model.out_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    for k, s in model.out_strides.items():
        assert out[k].shape == (3, model.out_channels[k], 128 // s, 64 // s)
        assert torch.isfinite(out[k]).all()
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 80, 64))


def test_bf16_smoke(fx):
    m = _build(fx).eval()
    m.load_state_dict(fx.weights, strict=True)
    m = m.to(torch.bfloat16)
    with torch.no_grad():
        out = m(fx.io["in.image_1"].to(torch.bfloat16))
    for k, o in out.items():
        ref = fx.io[f"out.image_1.{k}"]
        assert o.dtype == torch.bfloat16 and o.shape == ref.shape and torch.isfinite(o).all()
        assert F.cosine_similarity(o.float().flatten(), ref.flatten(), dim=0) > 0.99


def test_pos_embed_interpolation_non_square():
    vit = DinoVisionTransformer(img_size=592, patch_size=16, embed_dim=8, depth=0, num_heads=2)
    g = 37
    rows = torch.arange(g, dtype=torch.float32)[:, None].expand(g, g)
    with torch.no_grad():  # channel 0 encodes the grid row, channel 1 the grid column
        vit.pos_embed[0, 1:, 0] = rows.reshape(-1)
        vit.pos_embed[0, 1:, 1] = rows.t().reshape(-1)
    H, W = 64, 160  # 4 x 10 token grid
    pe = vit.interpolate_pos_encoding(1 + 4 * 10, H, W)
    assert pe.shape == (1, 41, 8)
    assert torch.equal(pe[:, 0], vit.pos_embed[:, 0])
    grid = pe[0, 1:].reshape(4, 10, 8)
    # rows vary along the height axis only, columns along the width axis only
    assert torch.allclose(grid[:, :, 0], grid[:, :1, 0].expand(4, 10), atol=1e-5)
    assert torch.allclose(grid[:, :, 1], grid[:1, :, 1].expand(4, 10), atol=1e-5)
    # exactly the official call: scale_factor=((H/16 + 0.1)/37, (W/16 + 0.1)/37), bicubic
    src = vit.pos_embed[:, 1:].reshape(1, g, g, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(src, scale_factor=((4 + 0.1) / math.sqrt(g * g), (10 + 0.1) / math.sqrt(g * g)), mode="bicubic")
    assert torch.equal(grid, ref[0].permute(1, 2, 0))
    # ... which is not the same as size=(4, 10)
    assert not torch.allclose(grid, F.interpolate(src, size=(4, 10), mode="bicubic")[0].permute(1, 2, 0), atol=1e-4)
    # official skip condition: token count equals the stored grid AND square image in pixels
    assert vit.interpolate_pos_encoding(1 + g * g, 592, 592) is vit.pos_embed
    assert vit.interpolate_pos_encoding(1 + 36 * 36, 576, 576).shape == (1, 1 + 36 * 36, 8)


def test_resize_patch_kernel_and_dinov2_loading(fx):
    w14 = torch.randn(64, 3, 14, 14)
    w16 = resize_patch_embed_kernel(w14, 16)
    assert w16.shape == (64, 3, 16, 16)
    assert torch.equal(w16, F.interpolate(w14, size=(16, 16), mode="bilinear", align_corners=True))
    for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):  # align_corners=True keeps the corners
        assert torch.allclose(w16[..., i, j], w14[..., i, j])
    m = _build(fx)
    raw = {k[len("vit_module."):]: v.clone() for k, v in fx.weights.items() if k.startswith("vit_module.")}
    raw["patch_embed.proj.weight"] = w14
    m.load_dinov2_weights(raw)
    assert torch.equal(m.vit_module.patch_embed.proj.weight, w16)


def test_vitl_construction_meta(fx):
    kw = vitl_adapter_kwargs()
    assert kw["embed_dim"] == 1024 and kw["depth"] == 24 and kw["num_heads"] == 16
    assert kw["deform_num_heads"] == 16 and kw["conv_inplane"] == 64 and kw["img_size"] == 592
    assert [list(i) for i in kw["interaction_indexes"]] == [[0, 5], [6, 11], [12, 17], [18, 23]]
    assert kw["deform_ratio"] == 0.5 and kw["cffn_ratio"] == 0.25
    assert kw["init_values"] == 1e-6 and kw["layer_scale_init_values"] == 1e-5 and kw["patch_size"] == 16
    with torch.device("meta"):
        m = ViTAdapter(**kw)
    sd = m.state_dict()
    # DINOv2 ViT-L/14 has 304,368,640 parameters; the 16x16 patch kernel adds 1024*3*(256-196).
    assert sum(p.numel() for p in m.vit_module.parameters()) == 304_368_640 + 1024 * 3 * 60
    # adapter: level_embed 3,072 + spm 1,760,576 + 6 extractors * 2,830,272 + up 4,195,328 + norms 8,192
    assert sum(p.numel() for p in m.parameters()) - 304_552_960 == 22_948_800
    shapes = {
        "vit_module.pos_embed": (1, 1370, 1024), "vit_module.patch_embed.proj.weight": (1024, 3, 16, 16),
        "vit_module.blocks.23.attn.qkv.weight": (3072, 1024), "vit_module.blocks.23.mlp.fc1.weight": (4096, 1024),
        "vit_module.blocks.23.ls2.gamma": (1024,), "level_embed": (3, 1024), "spm.stem.0.weight": (64, 3, 3, 3),
        "spm.conv4.0.weight": (256, 256, 3, 3), "spm.fc4.weight": (1024, 256, 1, 1), "up.weight": (1024, 1024, 2, 2),
        "interactions.3.extra_extractors.1.attn.sampling_offsets.weight": (128, 1024),
        "interactions.0.extractor.attn.attention_weights.weight": (64, 1024),
        "interactions.0.extractor.attn.value_proj.weight": (1024, 1024),
        "interactions.2.extractor.ffn.dwconv.dwconv.weight": (256, 1, 3, 3),
    }
    for k, s in shapes.items():
        assert tuple(sd[k].shape) == s, k
    # same key layout as the (4-block, 4-interaction) fixture once blocks 4..23 are left out
    keep = {k for k in sd if not (k.startswith("vit_module.blocks.") and int(k.split(".")[2]) >= 4)}
    assert keep == set(fx.weights)
    assert not any(p.requires_grad for p in m.vit_module.parameters())


def test_train_step_frozen_vit(fx):
    m = _build(fx)
    m.load_state_dict(fx.weights, strict=True)
    m.train()
    assert not m.vit_module.training and m.spm.training
    out = m(fx.io["in.image_0"][:1, :, :, :64])
    sum(o.square().mean() for o in out.values()).backward()
    assert all(p.grad is None for p in m.vit_module.parameters())
    assert m.interactions[3].extra_extractors[1].ffn.fc2.weight.grad is not None
    assert m.spm.stem[0].weight.grad is not None
