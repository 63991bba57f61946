"""TemporalRefiner: parity with the official DVIS++ refiner (fixture 08) and shape/edge cases."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import assert_close_ref, load_fixture
from dvis_sdk.models.refiner import TemporalRefiner


@pytest.fixture(scope="module")
def fx():
    return load_fixture("08_refiner")


@pytest.fixture(scope="module")
def model(fx):
    m = TemporalRefiner(**fx.meta["hyperparameters"]).eval()
    m.load_state_dict(fx.weights, strict=True)
    return m


def _inputs(fx):
    return fx.io["in.instance_embeds"], fx.io["in.frame_embeds"], fx.io["in.mask_features"]


def test_state_dict_keys_match(fx):
    m = TemporalRefiner(**fx.meta["hyperparameters"])
    assert set(m.state_dict()) == set(fx.weights)
    for k, v in m.state_dict().items():
        assert v.shape == fx.weights[k].shape, k


def test_fixture_parity(fx, model):
    with torch.no_grad():
        out = model(*_inputs(fx))
    errs = {k: assert_close_ref(out[k], fx.io[f"out.{k}"], k) for k in ("pred_logits", "pred_masks", "pred_embds")}
    print("08_refiner max abs err:", errs)
    assert "aux_outputs" not in out


def test_refine_and_subset_masks_match_forward(fx, model):
    inst, frame, feats = _inputs(fx)
    with torch.no_grad():
        full = model(inst, frame, feats)
        r = model.refine(inst, frame)
        assert torch.equal(r["pred_logits"], full["pred_logits"])
        assert torch.equal(r["pred_embds"], full["pred_embds"])
        q = torch.tensor([7, 2, 5])
        m = model.predict_masks(r["pred_embds"], feats, query_indices=q, frame_indices=[1, 4, 6], windows=2,
                                output_device="cpu")
        torch.testing.assert_close(m, full["pred_masks"][:, q][:, :, [1, 4, 6]], rtol=0, atol=1e-5)
        # per-batch query indices (2-D) and a slice of frames
        m2 = model.predict_masks(r["pred_embds"], feats, query_indices=q[None], frame_indices=slice(2, 7))
        torch.testing.assert_close(m2, full["pred_masks"][:, q, 2:7], rtol=0, atol=1e-5)
        # the chunk size is numerically irrelevant
        m3 = model.predict_masks(r["pred_embds"], feats, windows=100)
        torch.testing.assert_close(m3, full["pred_masks"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("b,T,Q", [(2, 4, 6), (1, 1, 3), (2, 2, 5), (1, 11, 4)])
def test_other_shapes(model, b, T, Q):
    C, D = 64, 32
    g = torch.Generator().manual_seed(T * 100 + Q)
    inst = torch.randn(b, C, T, Q, generator=g)
    frame = torch.randn(b, C, T, Q, generator=g)
    feats = torch.randn(b, T, D, 8, 12, generator=g)
    with torch.no_grad():
        out = model(inst, frame, feats, return_aux=True)
    assert out["pred_logits"].shape == (b, T, Q, 6)
    assert out["pred_masks"].shape == (b, Q, T, 8, 12)
    assert out["pred_embds"].shape == (b, C, T, Q)
    assert len(out["aux_outputs"]) == model.num_layers - 1
    assert out["aux_outputs"][0]["pred_masks"].shape == (b, Q, T, 8, 12)
    # one fused score per query: identical over time
    assert torch.equal(out["pred_logits"], out["pred_logits"][:, :1].expand_as(out["pred_logits"]))
    # batch elements are independent
    if b > 1:
        with torch.no_grad():
            o1 = model(inst[1:], frame[1:], feats[1:])
        torch.testing.assert_close(o1["pred_masks"], out["pred_masks"][1:], rtol=0, atol=1e-4)
        torch.testing.assert_close(o1["pred_logits"], out["pred_logits"][1:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("T", [1, 2])
def test_replicate_padding_short_clips(model, T):
    # With T shorter than the kernel, replicate padding repeats the edge frames; for T=1 the conv reduces
    # to the kernel summed over its taps.
    conv = model.conv_short_aggregate_layers[0][0]
    x = torch.randn(3, 64, T)
    with torch.no_grad():
        ref = F.conv1d(F.pad(x, (2, 2), mode="replicate"), conv.weight, conv.bias)
        torch.testing.assert_close(conv(x), ref)
        if T == 1:
            torch.testing.assert_close(conv(x)[..., 0], x[..., 0] @ conv.weight.sum(-1).T + conv.bias,
                                       rtol=0, atol=1e-5)


def test_bf16_smoke(fx, model):
    m = TemporalRefiner(**fx.meta["hyperparameters"]).eval()
    m.load_state_dict(model.state_dict())
    m = m.to(torch.bfloat16)
    inst, frame, feats = (t.to(torch.bfloat16) for t in _inputs(fx))
    with torch.no_grad():
        out = m(inst, frame, feats)
    assert out["pred_masks"].dtype == torch.bfloat16
    for k in ("pred_logits", "pred_masks", "pred_embds"):
        assert torch.isfinite(out[k].float()).all(), k
    # coarse sanity against fp32: same argmax class per query on most queries
    ref = fx.io["out.pred_logits"][0, 0].argmax(-1)
    assert (out["pred_logits"][0, 0].float().argmax(-1) == ref).float().mean() >= 0.7


def test_train_mode_backward(fx):
    m = TemporalRefiner(**fx.meta["hyperparameters"]).train()
    m.load_state_dict(fx.weights, strict=True)
    inst, frame, feats = (t[..., :4, :] if t.dim() == 4 else t[:, :4] for t in _inputs(fx))
    out = m(inst, frame, feats, return_aux=True)
    loss = out["pred_logits"].sum() + out["pred_masks"].mean() + sum(a["pred_masks"].mean() for a in out["aux_outputs"])
    loss.backward()
    assert m.activation_proj.weight.grad is not None and m.conv_short_aggregate_layers[0][0].weight.grad is not None
