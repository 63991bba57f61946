"""Segmenter decoder (DVIS++ / original DVIS) against the official fixtures."""
from __future__ import annotations

import pytest
import torch

from conftest import assert_close_ref, load_fixture
from dvis_sdk.models.decoder import VideoMaskedAttentionDecoder

TINY = dict(in_channels=64, hidden_dim=32, num_queries=10, nheads=4, dim_feedforward=64, dec_layers=4,
            mask_dim=32, enforce_input_project=False, num_classes=5)


def _dvis_plus() -> VideoMaskedAttentionDecoder:
    return VideoMaskedAttentionDecoder(**TINY, variant="dvis++", num_reid_head_layers=3, reid_hidden_dim=32).eval()


@pytest.fixture(scope="module")
def fx06():
    return load_fixture("06_segmenter_decoder")


def test_fixture06_parity(fx06):
    m = _dvis_plus()
    m.load_state_dict(fx06.weights, strict=True)
    io = fx06.io
    x = [io[f"in.x.{i}"] for i in range(3)]
    with torch.no_grad():
        out = m(x, io["in.mask_features"])
    errs = {}
    for name in ("pred_logits", "pred_masks", "pred_embds", "pred_embds_without_norm", "pred_reid_embed"):
        errs[name] = assert_close_ref(out[name], io[f"out.{name}"], name)
    n_aux = len([k for k in io if k.startswith("out.aux_outputs.")])
    assert n_aux == 4 and len(out["aux_outputs"]) == n_aux
    for i, aux in enumerate(out["aux_outputs"]):
        errs[f"aux{i}"] = assert_close_ref(aux["pred_logits"], io[f"out.aux_outputs.{i}.pred_logits"], f"aux{i}")
        assert aux["pred_masks"].shape == out["pred_masks"].shape
    assert torch.equal(out["mask_features"], io["in.mask_features"])
    print("max abs errors:", errs)


def test_fixture06_num_frames_split(fx06):
    """num_frames only re-arranges the (per-frame) outputs: B=3 videos of 1 frame equal B=1 video of 3."""
    m = _dvis_plus()
    m.load_state_dict(fx06.weights, strict=True)
    io = fx06.io
    x = [io[f"in.x.{i}"] for i in range(3)]
    with torch.no_grad():
        out = m(x, io["in.mask_features"], num_frames=1)
    assert out["pred_logits"].shape == (3, 1, 10, 6)
    assert_close_ref(out["pred_logits"].transpose(0, 1), io["out.pred_logits"], "pred_logits")
    assert_close_ref(out["pred_masks"].permute(2, 1, 0, 3, 4), io["out.pred_masks"], "pred_masks")
    assert_close_ref(out["pred_embds"].permute(2, 1, 0, 3), io["out.pred_embds"], "pred_embds")


def test_keys_dvis_plus(fx06):
    assert set(_dvis_plus().state_dict()) == set(fx06.weights)


def test_dvis_variant_strict_loading_and_shapes():
    fx = load_fixture("12_e2e_online_dvis_swin")
    sd = fx.prefixed("sem_seg_head.predictor.")
    hp = fx.config["MODEL"]["MASK_FORMER"]
    m = VideoMaskedAttentionDecoder(
        in_channels=fx.config["MODEL"]["SEM_SEG_HEAD"]["CONVS_DIM"], hidden_dim=hp["HIDDEN_DIM"],
        num_queries=hp["NUM_OBJECT_QUERIES"], nheads=hp["NHEADS"], dim_feedforward=hp["DIM_FEEDFORWARD"],
        dec_layers=hp["DEC_LAYERS"] - 1, mask_dim=fx.config["MODEL"]["SEM_SEG_HEAD"]["MASK_DIM"],
        enforce_input_project=hp["ENFORCE_INPUT_PROJ"], num_classes=fx.config["MODEL"]["SEM_SEG_HEAD"]["NUM_CLASSES"],
        variant="dvis").eval()
    m.load_state_dict(sd, strict=True)
    assert not any(k.startswith("reid_embed") for k in m.state_dict())

    mf = fx.io["out.segmenter.window0.mask_features"]  # (t, mask_dim, 16, 24) of a 64x96 video
    t, _, h4, w4 = mf.shape
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(t, 64, h4 // s, w4 // s, generator=g) for s in (8, 4, 2)]
    with torch.no_grad():
        out = m(x, mf)
    for k in ("pred_logits", "pred_masks", "pred_embds"):
        ref = fx.io[f"out.segmenter.window0.{k}"]
        assert out[k].shape == ref.shape, k
    assert set(out) == {"pred_logits", "pred_masks", "aux_outputs", "pred_embds", "mask_features"}
    assert len(out["aux_outputs"]) == hp["DEC_LAYERS"] - 1
    assert out["mask_features"] is mf


def test_other_size_and_frames_no_input_proj():
    """Real-config style (in_channels == hidden: no input_proj keys), odd sizes, B=2 videos of 5 frames."""
    m = VideoMaskedAttentionDecoder(in_channels=48, hidden_dim=48, num_queries=7, nheads=6, dim_feedforward=40,
                                    dec_layers=5, mask_dim=24, num_classes=3, variant="dvis++",
                                    num_reid_head_layers=2, reid_hidden_dim=16).eval()
    assert not any(k.startswith("input_proj") for k in m.state_dict())
    b, t = 2, 5
    sizes = [(3, 5), (5, 9), (10, 17)]
    x = [torch.randn(b * t, 48, h, w) for h, w in sizes]
    mf = torch.randn(b * t, 24, 19, 33)
    with torch.no_grad():
        out = m(x, mf, num_frames=t)
    assert out["pred_logits"].shape == (b, t, 7, 4)
    assert out["pred_masks"].shape == (b, 7, t, 19, 33)
    assert out["pred_embds"].shape == (b, 96, t, 7)
    assert out["pred_embds_without_norm"].shape == (b, 96, t, 7)
    assert out["pred_reid_embed"].shape == (b, 48, t, 7)
    assert len(out["aux_outputs"]) == 5
    assert all(torch.isfinite(v).all() for v in (out["pred_logits"], out["pred_masks"], out["pred_embds"]))
    # frames are independent: running the second video alone gives the same result
    with torch.no_grad():
        out2 = m([f[t:] for f in x], mf[t:])
    torch.testing.assert_close(out2["pred_logits"][0], out["pred_logits"][1], rtol=0, atol=1e-5)


def test_bf16_smoke(fx06):
    m = _dvis_plus()
    m.load_state_dict(fx06.weights, strict=True)
    m = m.to(torch.bfloat16)
    io = fx06.io
    x = [io[f"in.x.{i}"].to(torch.bfloat16) for i in range(3)]
    with torch.no_grad():
        out = m(x, io["in.mask_features"].to(torch.bfloat16))
    assert out["pred_logits"].dtype == torch.bfloat16
    assert out["pred_masks"].shape == io["out.pred_masks"].shape
    assert torch.isfinite(out["pred_logits"].float()).all() and torch.isfinite(out["pred_masks"].float()).all()
