"""Referring trackers: parity with the official DVIS++ (fixture 07) and original DVIS (fixture 14)
trackers, explicit per-video state, batching, other sizes, bf16."""
from __future__ import annotations

import pytest
import torch

from conftest import assert_close_ref, load_fixture
from dvis_sdk.models.tracker import DVISPlusTracker, ReferringTracker, TrackerState

WINDOWS = [(0, 3), (3, 6)]


@pytest.fixture(scope="module")
def fx07():
    return load_fixture("07_tracker")


@pytest.fixture(scope="module")
def fx14():
    return load_fixture("14_tracker_dvis")


def _plus(fx) -> DVISPlusTracker:
    m = DVISPlusTracker(**fx.meta["hyperparameters"]).eval()
    m.load_state_dict(fx.weights, strict=True)
    return m


def _dvis(fx) -> ReferringTracker:
    m = ReferringTracker(**fx.meta["hyperparameters"]).eval()
    m.load_state_dict(fx.weights, strict=True)
    return m


def _run_plus(m, fe, fn, mf, windows):
    state, res = None, []
    for a, b in windows:
        out, state, idx = m(fe[:, :, a:b], mf[:, a:b], state, frame_embeds_no_norm=fn[:, :, a:b])
        res.append((out, idx))
    return res, state


def _run_dvis(m, fe, mf, windows):
    state, res = None, []
    for a, b in windows:
        out, state, idx = m(fe[:, :, a:b], mf[:, a:b], state)
        res.append((out, idx))
    return res, state


@torch.no_grad()
def test_dvis_plus_fixture(fx07):
    io = fx07.io
    m = _plus(fx07)
    res, state = _run_plus(m, io["in.frame_embeds"], io["in.frame_embeds_no_norm"], io["in.mask_features"], WINDOWS)
    for w, (out, idx) in enumerate(res):
        for k in ("pred_logits", "pred_masks", "pred_embds", "pred_references"):
            assert_close_ref(out[k], io[f"out.window{w}.{k}"], f"window{w}.{k}")
        assert idx.dtype == torch.int64
        assert torch.equal(idx, io[f"out.window{w}.indices"]), f"window{w}.indices"
        assert out["aux_outputs"] == []
    assert isinstance(state, TrackerState) and state.num_frames == 6
    # the fixture must actually exercise the matching
    assert not torch.equal(res[1][1], torch.arange(10).expand(3, 10))


@torch.no_grad()
def test_dvis_fixture_inverse_matching_and_frame_forward(fx14):
    io = fx14.io
    m = _dvis(fx14)
    res, _ = _run_dvis(m, io["in.frame_embeds"], io["in.mask_features"], WINDOWS)
    for w, (out, idx) in enumerate(res):
        for k in ("pred_logits", "pred_masks", "pred_embds"):
            assert_close_ref(out[k], io[f"out.window{w}.{k}"], f"window{w}.{k}")
        assert "pred_references" not in out
        assert torch.equal(idx, io[f"out.window{w}.indices"]), f"window{w}.indices"
    # the official indices are the INVERSE of the aligning permutation (and differ from it)
    aligning = torch.tensor(fx14.meta["matching_check"]["aligning_permutations"])
    got = torch.cat([idx for _, idx in res], 0)
    assert torch.equal(got, aligning.argsort(dim=1))
    assert not torch.equal(got[1:], aligning[1:])
    assert_close_ref(m.frame_forward(io["in.frame_embeds"]), io["out.frame_forward"], "frame_forward")


def _second_video(fe: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(fe.shape[-1], generator=g)
    return (fe[..., perm] + 0.3 * torch.randn(fe.shape, generator=g)).flip(2)


def _assert_same(res_a, res_b):
    for (oa, ia), (ob, ib) in zip(res_a, res_b):
        assert torch.equal(ia, ib)
        for k in oa:
            if k != "aux_outputs":
                assert torch.equal(oa[k], ob[k]), k


@torch.no_grad()
def test_interleaved_videos_independent_states(fx07, fx14):
    io = fx07.io
    m = _plus(fx07)
    fe_a, fn_a, mf = io["in.frame_embeds"], io["in.frame_embeds_no_norm"], io["in.mask_features"]
    fe_b, fn_b = _second_video(fe_a, 1), _second_video(fn_a, 1)
    mf_b = mf.flip(1)
    seq_a, _ = _run_plus(m, fe_a, fn_a, mf, WINDOWS)
    seq_b, _ = _run_plus(m, fe_b, fn_b, mf_b, WINDOWS)
    sa = sb = None
    inter_a, inter_b = [], []
    for a, b in WINDOWS:
        oa, sa, ia = m(fe_a[:, :, a:b], mf[:, a:b], sa, frame_embeds_no_norm=fn_a[:, :, a:b])
        ob, sb, ib = m(fe_b[:, :, a:b], mf_b[:, a:b], sb, frame_embeds_no_norm=fn_b[:, :, a:b])
        inter_a.append((oa, ia))
        inter_b.append((ob, ib))
    _assert_same(seq_a, inter_a)
    _assert_same(seq_b, inter_b)
    assert not torch.equal(seq_a[1][0]["pred_logits"], seq_b[1][0]["pred_logits"])

    io = fx14.io
    m = _dvis(fx14)
    fe_a, mf = io["in.frame_embeds"], io["in.mask_features"]
    fe_b, mf_b = _second_video(fe_a, 2), mf.flip(1)
    seq_a, _ = _run_dvis(m, fe_a, mf, WINDOWS)
    seq_b, _ = _run_dvis(m, fe_b, mf_b, WINDOWS)
    sa = sb = None
    inter_a, inter_b = [], []
    for a, b in WINDOWS:
        oa, sa, ia = m(fe_a[:, :, a:b], mf[:, a:b], sa)
        ob, sb, ib = m(fe_b[:, :, a:b], mf_b[:, a:b], sb)
        inter_a.append((oa, ia))
        inter_b.append((ob, ib))
    _assert_same(seq_a, inter_a)
    _assert_same(seq_b, inter_b)


@torch.no_grad()
def test_chunking_invariance(fx07, fx14):
    """One call over all frames == the same frames in several resumed chunks."""
    io = fx07.io
    m = _plus(fx07)
    fe, fn, mf = io["in.frame_embeds"], io["in.frame_embeds_no_norm"], io["in.mask_features"]
    (full, full_idx), = _run_plus(m, fe, fn, mf, [(0, 6)])[0]
    parts = _run_plus(m, fe, fn, mf, [(0, 1), (1, 4), (4, 6)])[0]
    assert torch.equal(full_idx, torch.cat([i for _, i in parts], 0))
    for k in ("pred_logits", "pred_embds", "pred_references"):
        assert_close_ref(torch.cat([o[k] for o, _ in parts], 2 if k != "pred_logits" else 1), full[k], k)

    io = fx14.io
    m = _dvis(fx14)
    (full, full_idx), = _run_dvis(m, io["in.frame_embeds"], io["in.mask_features"], [(0, 6)])[0]
    parts = _run_dvis(m, io["in.frame_embeds"], io["in.mask_features"], [(0, 1), (1, 6)])[0]
    assert torch.equal(full_idx, torch.cat([i for _, i in parts], 0))
    assert_close_ref(torch.cat([o["pred_embds"] for o, _ in parts], 2), full["pred_embds"], "pred_embds")


@pytest.mark.parametrize("variant", ["dvis++", "dvis"])
@torch.no_grad()
def test_other_sizes_and_batch(variant):
    torch.manual_seed(0)
    hidden, mask_dim, ncls, L = 48, 16, 3, 3
    if variant == "dvis++":
        m = DVISPlusTracker(hidden, 40, 4, L, mask_dim, ncls).eval()
    else:
        m = ReferringTracker(hidden, 40, 4, L, mask_dim, ncls).eval()
    b, t, q, h, w = 2, 4, 7, 5, 6
    fe = torch.randn(b, hidden, t, q)
    mf = torch.randn(b, t, mask_dim, h, w)
    out, state, idx = m(fe, mf)
    assert out["pred_logits"].shape == (b, t, q, ncls + 1)
    assert out["pred_masks"].shape == (b, q, t, h, w)
    assert out["pred_embds"].shape == (b, hidden, t, q)
    if variant == "dvis++":
        assert out["pred_references"].shape == (b, hidden, t, q)
    assert idx.shape == (t, b, q)
    assert torch.equal(idx.sort(-1).values, torch.arange(q).expand(t, b, q))
    assert state.last_output.shape == state.last_frame_embeds.shape == (q, b, hidden)
    # every video of a batch is matched and tracked on its own
    for i in range(b):
        o1, _, idx1 = m(fe[i:i + 1], mf[i:i + 1])
        assert torch.equal(idx1, idx[:, i])
        assert_close_ref(out["pred_logits"][i:i + 1], o1["pred_logits"], "batched logits")
    # resume with the state; aux outputs on request
    out2, state2, idx2 = m(fe[:, :, :1], mf[:, :1], state, return_aux=True)
    assert idx2.shape == (1, b, q) and state2.num_frames == t + 1
    assert len(out2["aux_outputs"]) == L - 1
    assert out2["aux_outputs"][0]["pred_masks"].shape == (b, q, 1, h, w)
    with pytest.raises(ValueError):
        m(torch.randn(b, hidden, 1, q + 1), mf[:, :1], state)


@pytest.mark.parametrize("variant", ["dvis++", "dvis"])
def test_bf16_smoke(variant, fx07, fx14):
    if variant == "dvis++":
        m, io = _plus(fx07).to(torch.bfloat16), fx07.io
        kw = lambda a, b: {"frame_embeds_no_norm": io["in.frame_embeds_no_norm"][:, :, a:b].bfloat16()}  # noqa: E731
    else:
        m, io = _dvis(fx14).to(torch.bfloat16), fx14.io
        kw = lambda a, b: {}  # noqa: E731
    fe, mf = io["in.frame_embeds"].bfloat16(), io["in.mask_features"].bfloat16()
    state = None
    with torch.no_grad():
        for a, b in WINDOWS:
            out, state, idx = m(fe[:, :, a:b], mf[:, a:b], state, **kw(a, b))
            assert out["pred_logits"].dtype == torch.bfloat16 and torch.isfinite(out["pred_masks"]).all()
            assert idx.shape == (3, fe.shape[-1])
        if variant == "dvis":
            assert m.frame_forward(fe).dtype == torch.bfloat16


def test_train_mode_noiser_hook(fx07):
    m = _plus(fx07).train()
    io = fx07.io
    fe, fn, mf = io["in.frame_embeds"][:, :, :3], io["in.frame_embeds_no_norm"][:, :, :3], io["in.mask_features"][:, :3]
    out, state, _ = m(fe, mf, frame_embeds_no_norm=fn)
    assert len(out["aux_outputs"]) == m.num_layers - 1
    out["pred_logits"].sum().backward()
    assert m.ref_proj.layers[0].weight.grad is not None
    assert not state.last_output.requires_grad

    calls = []

    def noiser(matched, cur_no_norm):
        calls.append(matched.shape)
        rev = matched.flip(-1)
        return rev, torch.gather(cur_no_norm, 0, rev.t()[..., None].expand(-1, -1, cur_no_norm.shape[-1]))

    m.noiser = noiser
    _, _, idx = m(fe, mf, frame_embeds_no_norm=fn)
    assert len(calls) == 2  # never on the first frame of a video
    assert not torch.equal(idx[1:], io["out.window0.indices"][1:])
