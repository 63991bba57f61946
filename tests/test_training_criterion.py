"""Matching and losses: Hungarian matching over video masks, the DVIS++ consistent matcher, set criterion, re-id
loss."""
from __future__ import annotations

import pytest
import torch

from dvis_sdk.training.criterion import (
    SetCriterion,
    frames_as_images,
    uncertain_point_coords,
)
from dvis_sdk.training.matcher import ConsistentMatcher, HungarianMatcher, batch_dice_cost, point_sample


def _targets(m=3, t=2, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(m, t, h, w)
    for i in range(m):
        for f in range(t):
            y, x = torch.randint(0, h - 6, (2,), generator=g).tolist()
            masks[i, f, y:y + 6, x:x + 6] = 1
    labels = torch.arange(m) % 2
    return labels, masks


def _perfect_outputs(labels, masks, q, perm, k=2):
    """Predictions where query perm[i] predicts target i exactly (others: no object, empty)."""
    logits = torch.full((q, k + 1), -10.0)
    logits[:, k] = 10.0
    pm = torch.full((q,) + tuple(masks.shape[1:]), -20.0)
    for i, qi in enumerate(perm):
        logits[qi] = -10.0
        logits[qi, labels[i]] = 10.0
        pm[qi] = masks[i] * 40 - 20
    return logits, pm


def test_point_sample_matches_grid_positions():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # pixel centres in normalised coords are (j + 0.5) / 4
    coords = torch.tensor([[[0.125, 0.125], [0.875, 0.125], [0.375, 0.625]]])
    assert point_sample(x, coords).flatten().tolist() == [0.0, 3.0, 9.0]


def test_dice_cost_values():
    inp = torch.tensor([[20.0, 20.0, -20.0, -20.0]])
    tgt = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    cost = batch_dice_cost(inp, tgt)
    assert cost[0, 0] < 1e-6 and cost[0, 1] > 0.7


def test_hungarian_matcher_recovers_the_assignment_over_video_masks():
    torch.manual_seed(0)
    labels, masks = _targets(m=3, t=3)
    perm = [4, 0, 2]
    logits, pm = _perfect_outputs(labels, masks, q=6, perm=perm)
    matcher = HungarianMatcher(num_points=256)
    (rows, cols), = matcher({"pred_logits": logits[None], "pred_masks": pm[None]}, [{"labels": labels,
                                                                                      "masks": masks}])
    assert {int(r): int(c) for r, c in zip(rows, cols)} == {4: 0, 0: 1, 2: 2}
    empty = matcher({"pred_logits": logits[None], "pred_masks": pm[None]},
                    [{"labels": labels[:0], "masks": masks[:0]}])
    assert len(empty[0][0]) == 0


def test_matching_uses_all_frames_of_the_clip():
    # two targets identical in frame 0, different in frame 1: only the second frame can tell them apart
    masks = torch.zeros(2, 2, 8, 8)
    masks[:, 0, :4] = 1
    masks[0, 1, :, :4] = 1
    masks[1, 1, :, 4:] = 1
    labels = torch.tensor([0, 0])
    logits, pm = _perfect_outputs(labels, masks, q=2, perm=[1, 0])
    torch.manual_seed(1)
    (rows, cols), = HungarianMatcher(num_points=512)({"pred_logits": logits[None], "pred_masks": pm[None]},
                                                     [{"labels": labels, "masks": masks}])
    assert dict(zip(rows.tolist(), cols.tolist())) == {1: 0, 0: 1}


def test_consistent_matcher_matches_at_first_appearance_for_the_whole_clip():
    torch.manual_seed(0)
    t, q = 3, 5
    labels, masks = _targets(m=2, t=t, seed=3)
    masks[1, 0] = 0  # target 1 appears in frame 1
    present = masks.flatten(2).any(-1)
    # frame f's predictions: target 0 at query 3 in frame 0; target 1 at query 1 in frame 1; in other frames the
    # queries are shuffled, which must not change the clip's assignment
    outs_l, outs_m = [], []
    for f, perm in enumerate([[3, 0], [2, 1], [4, 0]]):
        lg, pm = _perfect_outputs(labels, masks[:, f:f + 1], q, perm)
        outs_l.append(lg)
        outs_m.append(pm)
    targets = [{"labels": labels, "masks": masks[:, f:f + 1], "present": present[:, f]} for f in range(t)]
    idx = ConsistentMatcher(num_points=256, frames=t)({"pred_logits": torch.stack(outs_l),
                                                       "pred_masks": torch.stack(outs_m)}, targets)
    assert len(idx) == t and all(torch.equal(idx[0][0], i[0]) and torch.equal(idx[0][1], i[1]) for i in idx)
    assert dict(zip(idx[0][1].tolist(), idx[0][0].tolist())) == {0: 3, 1: 1}
    with pytest.raises(ValueError, match="multiple of frames"):
        ConsistentMatcher(frames=2)({"pred_logits": torch.stack(outs_l), "pred_masks": torch.stack(outs_m)}, targets)


def test_consistent_matcher_never_reuses_a_query():
    torch.manual_seed(0)
    labels, masks = _targets(m=2, t=2, seed=5)
    masks[1, 0] = 0
    present = masks.flatten(2).any(-1)
    # the same query is the best for target 0 in frame 0 and target 1 in frame 1
    l0, m0 = _perfect_outputs(labels, masks[:, :1], 3, [2, 0])
    l1, m1 = _perfect_outputs(labels, masks[:, 1:], 3, [0, 2])
    targets = [{"labels": labels, "masks": masks[:, f:f + 1], "present": present[:, f]} for f in range(2)]
    idx = ConsistentMatcher(num_points=256, frames=2)({"pred_logits": torch.stack([l0, l1]),
                                                       "pred_masks": torch.stack([m0, m1])}, targets)
    assert len(set(idx[0][0].tolist())) == 2 and dict(zip(idx[0][1].tolist(), idx[0][0].tolist()))[0] == 2


def test_criterion_prefers_the_right_predictions_and_weights_no_object():
    torch.manual_seed(0)
    labels, masks = _targets(m=2, t=2)
    good_l, good_m = _perfect_outputs(labels, masks, 4, [1, 3])
    bad_l, bad_m = _perfect_outputs(labels.flip(0), masks.flip(0), 4, [1, 3])
    bad_m = bad_m.roll(5, dims=-1)
    crit = SetCriterion(2, HungarianMatcher(num_points=256), num_points=256, deep_supervision=False)
    tgt = [{"labels": labels, "masks": masks}]
    good, _ = crit({"pred_logits": good_l[None], "pred_masks": good_m[None]}, tgt)
    bad, _ = crit({"pred_logits": torch.zeros_like(bad_l)[None], "pred_masks": bad_m[None]}, tgt)
    assert set(good) == {"loss_ce", "loss_mask", "loss_dice"}
    assert all(good[k] < bad[k] for k in good)
    # no-object weight: with only no-object targets the CE is the plain mean CE, whatever the weight
    logits = torch.randn(1, 4, 3)
    ce_a = SetCriterion(2, no_object_weight=0.1, num_points=16)(
        {"pred_logits": logits, "pred_masks": torch.zeros(1, 4, 1, 4, 4)}, [{"labels": labels[:0],
                                                                              "masks": masks[:0, :1, :4, :4]}])[0]
    expected = torch.nn.functional.cross_entropy(logits[0], torch.full((4,), 2))
    assert torch.allclose(ce_a["loss_ce"], 2.0 * expected)
    # ... and the matched class counts 1 / 0.1 times more than a no-object query
    crit_w = SetCriterion(2, HungarianMatcher(num_points=64), num_points=64, deep_supervision=False)
    out = {"pred_logits": torch.zeros(1, 4, 3), "pred_masks": good_m[None]}
    loss, idx = crit_w(out, tgt)
    # uniform logits: every CE term is log(3); the weighted mean is still log(3)
    assert torch.allclose(loss["loss_ce"], 2.0 * torch.log(torch.tensor(3.0)))


def test_deep_supervision_and_matcher_outputs():
    torch.manual_seed(0)
    labels, masks = _targets(m=2, t=1)
    logits, m = _perfect_outputs(labels, masks, 4, [0, 1])
    out = {"pred_logits": logits[None], "pred_masks": m[None],
           "aux_outputs": [{"pred_logits": logits[None], "pred_masks": m[None]} for _ in range(3)]}
    crit = SetCriterion(2, HungarianMatcher(num_points=64), num_points=64)
    losses, idx = crit(out, [{"labels": labels, "masks": masks}])
    assert len(losses) == 12 and "loss_dice_2" in losses
    # matching on other outputs (where the queries are swapped) decides which query gets which target
    l2, m2 = _perfect_outputs(labels, masks, 4, [1, 0])
    losses2, idx2 = crit(out, [{"labels": labels, "masks": masks}],
                         matcher_outputs={"pred_logits": l2[None], "pred_masks": m2[None]})
    assert dict(zip(idx2[0][0].tolist(), idx2[0][1].tolist())) == {1: 0, 0: 1}
    assert losses2["loss_ce"] > losses["loss_ce"] and losses2["loss_ce_1"] > losses["loss_ce_1"]


def test_uncertain_points_prefer_the_boundary():
    torch.manual_seed(0)
    logits = torch.full((2, 1, 32, 32), -10.0)
    logits[:, :, :, 16:] = 10.0
    logits[:, :, :, 15:17] = 0.0  # uncertain column band
    pts = uncertain_point_coords(logits, 20, 16.0, 0.75)  # 320 candidates, ~30 in the band, keep the 15 best
    assert pts.shape == (2, 20, 2) and pts.min() >= 0 and pts.max() <= 1
    near = ((pts[:, :15, 0] * 32 - 16).abs() <= 1.5).float().mean()
    rand = ((pts[:, 15:, 0] * 32 - 16).abs() <= 1.5).float().mean()
    assert near > 0.9 and rand < 0.9


def test_frames_as_images_layout():
    lg = torch.randn(2, 3, 4, 5)  # (B, T, Q, K+1)
    mk = torch.randn(2, 4, 3, 6, 7)  # (B, Q, T, h, w)
    out = frames_as_images({"pred_logits": lg, "pred_masks": mk, "aux_outputs": [{"pred_logits": lg,
                                                                                  "pred_masks": mk}]})
    assert out["pred_logits"].shape == (6, 4, 5) and out["pred_masks"].shape == (6, 4, 1, 6, 7)
    assert torch.equal(out["pred_logits"][4], lg[1, 1]) and torch.equal(out["pred_masks"][4, :, 0], mk[1, :, 1])
    assert len(out["aux_outputs"]) == 1


def test_segmenter_reid_loss_is_low_for_consistent_embeddings():
    from dvis_sdk.training.reid import loss_reid
    from dvis_sdk.training.stages.segmenter import segmenter_items

    q, c = 4, 8
    base = torch.eye(q, c) * 5
    embeds = torch.stack([base, base])  # the same embedding per object in both frames
    idx = [(torch.tensor([0, 2]), torch.tensor([0, 1]))] * 2
    ids = [torch.tensor([10, 11])] * 2
    good = loss_reid(segmenter_items(embeds, idx, ids))["loss_reid"]
    swapped = torch.stack([base, base[[2, 1, 0, 3]]])
    bad = loss_reid(segmenter_items(swapped, idx, ids))["loss_reid"]
    assert good < 0.1 < bad
    # objects never matched in two frames give no item
    assert segmenter_items(embeds, idx, [torch.tensor([10, 11]), torch.tensor([12, 13])]) == []
