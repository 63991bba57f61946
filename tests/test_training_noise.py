"""Query-noise functions (public contract ``apply_noise``) and their wiring into the DVIS++ tracker."""
from __future__ import annotations

import pytest
import torch

from dvis_sdk.models.tracker import DVISPlusTracker
from dvis_sdk.training.noise import NOISE_MODES, QueryNoiser, apply_noise, attach_noiser, canonical_mode


def _queries(n=12, c=16, b=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, c) if b is None else (n, b, c)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", NOISE_MODES)
@pytest.mark.parametrize("batch", [None, 3])
def test_shape_dtype_and_target_type(mode, batch):
    q = _queries(b=batch).float()
    noised, targets = apply_noise(q, mode, _gen(1))
    assert noised.shape == q.shape and noised.dtype == q.dtype
    assert targets.dtype == torch.int64 and targets.shape == (q.shape[0],)
    assert targets.min() >= 0 and targets.max() < q.shape[0]


def test_none_is_identity():
    q = _queries()
    noised, targets = apply_noise(q, "none", _gen(0))
    assert torch.equal(noised, q) and torch.equal(targets, torch.arange(len(q)))
    assert noised.data_ptr() != q.data_ptr()  # a copy: callers may modify it


def test_shuffle_is_a_permutation_and_targets_are_it():
    q = _queries(n=20)
    noised, targets = apply_noise(q, "shuffle", _gen(3))
    assert sorted(targets.tolist()) == list(range(20))
    assert torch.equal(noised, q[targets])
    assert not torch.equal(targets, torch.arange(20))


def _best_convex_fit(q, row, i):
    """For a noised row, the (j, alpha) with row = alpha*q_i + (1-alpha)*q_j fitting best."""
    fits = []
    for j in range(len(q)):
        d = q[i] - q[j]
        if d.norm() < 1e-12:
            a = torch.tensor(1.0, dtype=q.dtype)
        else:
            a = ((row - q[j]) @ d) / (d @ d)
        err = (a * q[i] + (1 - a) * q[j] - row).abs().max()
        fits.append((err.item(), j, a.item()))
    return min(fits)


def test_weighted_average_is_a_convex_combination_with_dominant_target():
    q = _queries(n=8)
    noised, targets = apply_noise(q, "weighted_average", _gen(5))
    partners = []
    for k in range(len(q)):
        err, j, a = _best_convex_fit(q, noised[k], k)
        assert err < 1e-9, "slot k is a mix of its own query and one other"
        if torch.allclose(noised[k], q[k], rtol=0, atol=1e-12):
            j = k  # mixed with itself
        if j != k:  # a slot mixed with itself has no partner
            assert 0.0 <= a <= 1.0
            assert targets[k].item() == (k if a >= 0.5 else j)
        else:
            assert targets[k].item() == k
        partners.append(j)
    assert sorted(partners) == list(range(len(q))), "partners form one permutation"


def test_weighted_average_weights_are_uniform():
    q = _queries(n=64)
    g = _gen(11)
    own = 0
    total = 0
    for _ in range(30):
        noised, targets = apply_noise(q, "wa", g)
        moved = (noised - q).abs().amax(-1) > 0
        own += (targets[moved] == torch.arange(64)[moved]).sum().item()
        total += moved.sum().item()
    assert 0.4 < own / total < 0.6  # P(alpha >= 0.5) = 1/2


def test_crop_concat_splits_channels_and_targets_the_larger_share():
    c = 10
    q = _queries(n=16, c=c)
    noised, targets = apply_noise(q, "crop_concat", _gen(7))
    partners = []
    for k in range(len(q)):
        same = (noised[k] == q[k])
        split = c if bool(same.all()) else int((~same).nonzero()[0])
        assert bool(same[:split].all()), "a prefix of the own query"
        rest = noised[k, split:]
        if split < c:
            js = [j for j in range(len(q)) if torch.equal(q[j, split:], rest)]
            assert len(js) == 1
            j = js[0]
            partners.append(j)
            # own share: split channels, partner's: c - split
            assert targets[k].item() == (j if c - split > split else k)
        else:
            assert targets[k].item() == k
    assert len(set(partners)) == len(partners)


def test_crop_concat_split_points_cover_the_range():
    q = _queries(n=200, c=8)
    noised, _ = apply_noise(q, "cc", _gen(2))
    splits = set()
    for k in range(len(q)):
        diff = (noised[k] != q[k]).nonzero()
        splits.add(int(diff[0]) if len(diff) else 8)
    # k ~ randint(0, C): 0 (all channels from the partner) occurs; a row equal to its own query only when the
    # permutation maps it to itself
    assert 0 in splits and len(splits) >= 7


@pytest.mark.parametrize("mode", ["weighted_average", "crop_concat", "shuffle"])
def test_deterministic_per_generator(mode):
    q = _queries()
    a = apply_noise(q, mode, _gen(42))
    b = apply_noise(q, mode, _gen(42))
    c = apply_noise(q, mode, _gen(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("mode", ["weighted_average", "crop_concat", "shuffle"])
def test_batch_shares_one_draw(mode):
    q = _queries(n=9, b=4)
    noised, targets = apply_noise(q, mode, _gen(8))
    for b in range(4):
        nb, tb = apply_noise(q[:, b], mode, _gen(8))
        assert torch.equal(nb, noised[:, b]) and torch.equal(tb, targets)


def test_ratio_controls_how_often_noise_is_applied():
    q = _queries()
    g = _gen(0)
    assert all(torch.equal(apply_noise(q, "shuffle", g, ratio=0.0)[0], q) for _ in range(10))
    noised = sum(not torch.equal(apply_noise(q, "shuffle", g, ratio=0.5)[1], torch.arange(12)) for _ in range(200))
    assert 70 < noised < 130


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown noise mode"):
        apply_noise(_queries(), "blur")
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, B, C\)"):
        apply_noise(torch.zeros(3), "shuffle")
    with pytest.raises(ValueError, match="ratio"):
        apply_noise(_queries(), "shuffle", ratio=1.5)
    assert canonical_mode("WA") == "weighted_average" and canonical_mode("rs") == "shuffle"


# ---------------------------------------------------------------------------------------------- tracker wiring
def _tracker():
    torch.manual_seed(0)
    return DVISPlusTracker(hidden_channel=32, feedforward_channel=64, num_head=4, decoder_layer_num=2, mask_dim=16,
                           class_num=3)


def _inputs(t=4, q=6):
    g = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, 32, t, q, generator=g)
    return embeds, torch.randn(1, t, 16, 8, 8, generator=g)


def test_tracker_uses_noise_targets_as_indices_in_training():
    trk = _tracker().train()
    embeds, mf = _inputs()
    noiser = attach_noiser(trk, "shuffle", ratio=1.0, generator=_gen(4))
    _, _, indices = trk(embeds, mf)
    # frame 0 is never noised; every later frame is, with the draws the noiser made in order
    g = _gen(4)
    for t in range(1, 4):
        torch.rand(1, generator=g)  # the noiser's per-frame decision
        _, expected = apply_noise(embeds[0, :, t].t(), "shuffle", g)
        assert torch.equal(indices[t], expected)
    assert noiser.num_calls == 3 and noiser.num_noised == 3


def test_tracker_noise_ratio_zero_equals_plain_matching_and_eval_is_never_noised():
    embeds, mf = _inputs()
    plain = _tracker().train()
    _, _, ref_idx = plain(embeds, mf)
    noisy = _tracker().train()
    attach_noiser(noisy, "weighted_average", ratio=0.0, generator=_gen(0))
    out0, _, idx0 = noisy(embeds, mf)
    assert torch.equal(idx0, ref_idx)
    noisy.eval()
    noisy.noiser = QueryNoiser("shuffle", 1.0, _gen(0))
    _, _, idx_eval = noisy(embeds, mf)
    plain.eval()
    _, _, idx_plain_eval = plain(embeds, mf)
    assert torch.equal(idx_eval, idx_plain_eval) and noisy.noiser.num_calls == 0


def test_noised_tracker_input_changes_the_output():
    embeds, mf = _inputs()
    a, b = _tracker().train(), _tracker().train()
    attach_noiser(b, "shuffle", 1.0, _gen(0))
    out_a, _, _ = a(embeds, mf)
    out_b, _, _ = b(embeds, mf)
    assert torch.allclose(out_a["pred_logits"][:, 0], out_b["pred_logits"][:, 0])  # frame 0 untouched
    assert not torch.allclose(out_a["pred_logits"][:, 1:], out_b["pred_logits"][:, 1:])


def test_attach_noiser_none_removes_it():
    trk = _tracker()
    attach_noiser(trk, "rs", 0.5)
    assert isinstance(trk.noiser, QueryNoiser)
    assert attach_noiser(trk, "none", 0.5) is None and trk.noiser is None
    with pytest.raises(TypeError, match="no noiser hook"):
        attach_noiser(torch.nn.Linear(2, 2), "rs", 0.5)
