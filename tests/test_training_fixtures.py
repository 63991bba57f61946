"""The tracker and refiner training losses against fixtures produced by the OFFICIAL DVIS++ code.

``tests/fixtures/training`` (see its README) stores the official losses of tiny models together with every random
draw the official loss code made (matcher point sets, importance-sampler candidates and random points, the ``wa``
noise draws). The SDK's stage loss functions are run on the stored model outputs with those draws served back by
a :class:`ReplayDraws`; the loss math is the code training uses. Tolerance: rtol 1e-5, atol 1e-6 (the fixtures'
README: >= 5x the official fp32-vs-fp64 noise); matchings and their order exact.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from dvis_sdk.models.tracker import cosine_cost, hungarian_match_costs
from dvis_sdk.training.criterion import SetCriterion, uncertain_point_coords
from dvis_sdk.training.draws import Draws, ReplayDraws
from dvis_sdk.training.matcher import ConsistentMatcher, HungarianMatcher
from dvis_sdk.training.noise import QueryNoiser
from dvis_sdk.training.reid import ClassMemory, ReidItem, loss_reid
from dvis_sdk.training.stages.refiner import refiner_clip_losses
from dvis_sdk.training.stages.tracker import frame_targets, tracker_clip_losses

ROOT = Path(__file__).parent / "fixtures" / "training"
RTOL, ATOL = 1e-5, 1e-6
WEIGHTS = {"loss_ce": 2.0, "loss_mask": 5.0, "loss_dice": 5.0, "loss_reid": 2.0}
NUM_CLASSES = 5


def _load(name: str):
    return load_file(str(ROOT / name / "tensors.safetensors")), json.loads((ROOT / name / "meta.json").read_text())


TRACKER, TRACKER_META = _load("tracker_losses")
REFINER, REFINER_META = _load("refiner_losses")
REID, REID_META = _load("reid_loss")


def _seq(t: Dict[str, torch.Tensor], prefix: str, suffix: str = "") -> List[torch.Tensor]:
    out, k = [], 0
    while f"{prefix}.{k}{suffix}" in t:
        out.append(t[f"{prefix}.{k}{suffix}"])
        k += 1
    return out


def _draws(t: Dict[str, torch.Tensor], case: str) -> ReplayDraws:
    return ReplayDraws({"matcher_points": _seq(t, f"{case}.matcher_points"),
                        "point_candidates": _seq(t, f"{case}.points", ".candidates"),
                        "point_random": _seq(t, f"{case}.points", ".random")})


def _clip(t: Dict[str, torch.Tensor], video: str):
    """Official ``prepare_targets`` inputs -> labels (S,), masks (S, T, 64, 64) padded float, present (S, T)."""
    classes, ids, masks = t[f"video{video}.gt.classes"], t[f"video{video}.gt.ids"], t[f"video{video}.gt.masks"]
    padded = F.pad(masks.float(), (0, 64 - masks.shape[-1], 0, 64 - masks.shape[-2]))  # (T, S, 64, 64)
    return classes.max(0).values, padded.transpose(0, 1), (ids != -1).t()


def _outputs(t: Dict[str, torch.Tensor], prefix: str, extra: str) -> Dict[str, object]:
    out: Dict[str, object] = {"pred_logits": t[f"{prefix}.pred_logits"], "pred_masks": t[f"{prefix}.pred_masks"],
                              extra: t[f"{prefix}.{extra}"]}
    out["aux_outputs"] = [{"pred_logits": t[f"{prefix}.aux.{i}.pred_logits"],
                           "pred_masks": t[f"{prefix}.aux.{i}.pred_masks"]} for i in range(2)]
    return out


def _check_losses(losses: Dict[str, torch.Tensor], meta_case: dict, expected: Dict[str, float]) -> float:
    assert set(losses) == set(expected), (sorted(losses), sorted(expected))
    worst = 0.0
    for name, ref in expected.items():
        got = float(losses[name])
        assert got == pytest.approx(ref, rel=RTOL, abs=ATOL), (name, got, ref)
        worst = max(worst, abs(got - ref) / max(abs(ref), 1e-12))
        unweighted = meta_case["losses_unweighted"][name]
        assert got / WEIGHTS[name.rsplit("_", 1)[0] if name[-1].isdigit() else name] == \
            pytest.approx(unweighted, rel=RTOL, abs=ATOL)
    return worst


def _check_matcher_calls(draws: ReplayDraws, meta_case: dict, t: Dict[str, torch.Tensor], case: str) -> None:
    # every recorded draw consumed = the same number and order of matcher and sampler calls as the official
    assert draws.remaining() == {}
    for k, call in enumerate(meta_case["matcher_calls"]):
        assert t[f"{case}.matching.{k}.pred"].tolist() == call["pred"]
        assert t[f"{case}.matching.{k}.gt"].tolist() == call["gt"]


class _RecordingMatcher:
    """Wraps a matcher and keeps every matching it returns (to compare with the official matcher calls)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, outputs, targets):
        out = self.inner(outputs, targets)
        self.calls.append(out)
        return out


TRACKER_CASES = sorted(TRACKER_META["cases"])


@pytest.mark.parametrize("case", TRACKER_CASES)
@pytest.mark.parametrize("ddp", [False, True])
def test_tracker_losses_match_official(case, ddp):
    meta = TRACKER_META["cases"][case]
    if ddp and not meta.get("ddp2_losses"):
        pytest.skip("no 2-process variant recorded for this case")
    run = meta["run"]
    video = "A" if run in ("A", "An") else "B"
    labels, masks, present = _clip(TRACKER, video)
    draws = _draws(TRACKER, case)
    matcher = _RecordingMatcher(ConsistentMatcher(2.0, 5.0, 5.0, num_points=32, frames=5, draws=draws))
    crit = SetCriterion(NUM_CLASSES, matcher, num_points=32, draws=draws)  # type: ignore[arg-type]
    out = _outputs(TRACKER, f"run{run}.tracker", "pred_references")
    num_masks = None
    if ddp:  # a 2-process job on clips A and B: every process divides by the mean mask count
        num_masks = sum(len(frame_targets(*_clip(TRACKER, v))[0]["labels"]) * 5 for v in "AB") / 2
    losses, matching = tracker_clip_losses(
        out, TRACKER[f"video{video}.segmenter.pred_logits"], TRACKER[f"video{video}.segmenter.pred_masks"],
        TRACKER[f"run{run}.tracker.indices"], frame_targets(labels, masks, present), crit,
        early=meta["phase"] == "early", reid_weight=2.0, num_masks=num_masks)
    if ddp:  # loss_ce and loss_reid are per-process means and do not change; mask / dice scale
        assert set(losses) == set(meta["ddp2_losses"])
        for name, ref in meta["ddp2_losses"].items():
            assert float(losses[name]) == pytest.approx(ref, rel=RTOL, abs=ATOL), name
        return
    _check_losses(losses, meta, meta["losses"])
    _check_matcher_calls(draws, meta, TRACKER, case)
    # one matcher call per clip here; its pairs are the same for every frame
    got = [(c[0][0].tolist(), c[0][1].tolist()) for c in matcher.calls]
    assert got == [(c["pred"], c["gt"]) for c in meta["matcher_calls"]]
    used = meta.get("cl_uses_matcher_call", 0)
    assert [p.tolist() for p in matching[0]] == [meta["matcher_calls"][used]["pred"], meta["matcher_calls"][used]["gt"]]


def test_sampler_returns_the_official_points():
    """The importance sampler, fed the official candidates and random rest, returns the official coordinates
    (selection order included) on the official per-row mask logits of the last tracker layer of A_early."""
    case = "A_early"
    labels, masks, present = _clip(TRACKER, "A")
    pairs = TRACKER_META["cases"][case]["matcher_calls"][0]
    logits = TRACKER["runA.tracker.pred_masks"][0]  # (Q, T, h, w)
    rows = torch.cat([logits[pairs["pred"], f] for f in range(5)])[:, None]  # frame-major, then pair order
    draws = ReplayDraws({"point_candidates": [TRACKER[f"{case}.points.0.candidates"]],
                         "point_random": [TRACKER[f"{case}.points.0.random"]]})
    coords = uncertain_point_coords(rows, 32, 3.0, 0.75, draws=draws)
    assert torch.equal(coords, TRACKER[f"{case}.points.0.coords"])


def test_wa_noise_replays_the_official_draws():
    """``QueryNoiser`` (mode wa, ratio 0.5) on the recorded noiser inputs and draws returns the official indices and
    layer-0 queries, frame by frame (frame 0 is never noised: the tracker does not call the noiser there)."""
    frames = TRACKER_META["noiser_frames_runAn"]
    rec: Dict[str, list] = {"noise_decision": [], "noise_permutation": [], "noise_weights": []}
    for fr in frames[1:]:
        rec["noise_decision"].append(fr["random_random"])
        if fr["noised"]:
            rec["noise_permutation"].append(torch.tensor(fr["np_shuffle_result"]))
            rec["noise_weights"].append(TRACKER[f"runAn.noiser.frame{fr['frame']}.weight_ratio"])
    noiser = QueryNoiser("wa", 0.5, draws=ReplayDraws(rec))
    for fr in frames[1:]:
        t = fr["frame"]
        no_norm = TRACKER[f"runAn.noiser.frame{t}.cur_embeds_no_norm"]
        # the tracker's cosine Hungarian matching of this frame to the previous one (official ``match_embds``);
        # a frame that is not noised passes it through
        ref, cur = TRACKER[f"runAn.noiser.frame{t}.ref_embeds"], TRACKER[f"runAn.noiser.frame{t}.cur_embeds"]
        matched = torch.from_numpy(hungarian_match_costs(
            cosine_cost(ref.permute(1, 0, 2), cur.permute(1, 0, 2)).double().numpy(), inverse=False))
        idx, init = noiser(matched, no_norm)
        assert idx[0].tolist() == fr["returned_indices"] == TRACKER[f"runAn.noiser.frame{t}.indices"].tolist()
        torch.testing.assert_close(init, TRACKER[f"runAn.noiser.frame{t}.noise_init"], rtol=RTOL, atol=ATOL)
    assert noiser.num_noised == 1 and noiser.draws.remaining() == {}  # type: ignore[attr-defined]
    # the noised frame's indices are what the tracker applied (and the early matching re-orders by)
    assert TRACKER["runAn.tracker.indices"][3].tolist() == frames[3]["returned_indices"]


def _refiner_case(case: str, memory: ClassMemory):
    meta = REFINER_META["cases"][case]
    t_len, run = meta["T"], meta["run"]
    labels, masks, present = _clip(REFINER, run)
    draws = _draws(REFINER, case)
    matcher = _RecordingMatcher(HungarianMatcher(2.0, 5.0, 5.0, num_points=32 * t_len, draws=draws))
    crit = SetCriterion(NUM_CLASSES, matcher, num_points=32 * t_len, draws=draws)  # type: ignore[arg-type]
    out = _outputs(REFINER, f"run{run}.refiner", "pred_embds")
    losses, matching = refiner_clip_losses(
        out, REFINER[f"run{run}.tracker.pred_logits"], REFINER[f"run{run}.tracker.pred_masks"], labels, masks,
        present, crit, memory, early=meta["phase"] == "early", reid_weight=2.0)
    _check_losses(losses, meta, meta["losses"])
    _check_matcher_calls(draws, meta, REFINER, case)
    got = [(c[0][0].tolist(), c[0][1].tolist()) for c in matcher.calls]
    assert got == [(c["pred"], c["gt"]) for c in meta["matcher_calls"]]
    # the contrastive loss uses the matching computed last (late phase: the last auxiliary layer's)
    assert [p.tolist() for p in matching[0]] == [meta["matcher_calls"][-1]["pred"], meta["matcher_calls"][-1]["gt"]]


@pytest.mark.parametrize("t_len", [2, 5])
def test_refiner_losses_match_official_over_two_iterations(t_len):
    memory = ClassMemory(20, Draws())
    _refiner_case(f"T{t_len}_it1_early", memory)
    # the memory iteration 1 left = the official one, rows in order
    expected = {int(k.rsplit("class", 1)[1]): v for k, v in REFINER.items()
                if k.startswith(f"memory.T{t_len}.after_it1.class")}
    assert sorted(memory.rows) == sorted(expected)
    for cls, rows in expected.items():
        torch.testing.assert_close(memory.get(cls), rows, rtol=0, atol=0)
    for phase in ("early", "late"):  # both continue from the memory after iteration 1
        _refiner_case(f"T{t_len}_it2_{phase}", copy.deepcopy(memory))


def test_refiner_mask_losses_do_not_grow_with_clip_length():
    # official / SDK-before-this-change loss_mask at T = 2 and 5 were 3.46 / 6.43 and 3.41 / 15.86
    a = REFINER_META["cases"]["T2_it1_early"]["losses"]["loss_mask"]
    b = REFINER_META["cases"]["T5_it1_early"]["losses"]["loss_mask"]
    assert 0.5 < a / b < 2.0


@pytest.mark.parametrize("case", sorted({k.split(".")[0] for k in REID}))
def test_reid_loss_matches_official(case):
    bank = REID[f"{case}.bank"]
    items = []
    for k in range(len(REID[f"{case}.anchor"])):
        cand = REID[f"{case}.candidates"][k]
        items.append(ReidItem(bank[REID[f"{case}.anchor"][k]], bank[cand[cand >= 0]], int(REID[f"{case}.num_pos"][k])))
    out = loss_reid(items)
    for name in ("loss_reid", "loss_aux_reid"):
        assert float(out[name]) == pytest.approx(float(REID[f"{case}.{name}"]), rel=RTOL, abs=ATOL)
    for k, it in enumerate(items):
        one = loss_reid([it])
        assert float(one["loss_reid"]) == pytest.approx(float(REID[f"{case}.per_item.loss_reid"][k]), rel=RTOL,
                                                        abs=ATOL)


def test_reid_loss_without_items_is_a_connected_zero():
    x = torch.randn(3, 4, requires_grad=True)
    out = loss_reid([], x)
    out["loss_reid"].backward()
    assert float(out["loss_reid"].detach()) == 0.0 and x.grad is not None


def test_replay_draws_refuse_a_different_call_sequence():
    draws = ReplayDraws({"matcher_points": [torch.zeros(1, 8, 2)]})
    with pytest.raises(RuntimeError, match="shape"):
        draws.matcher_points(16)
    with pytest.raises(RuntimeError, match="no recorded 'point_candidates'"):
        draws.point_candidates(2, 3)
    with pytest.raises(ValueError, match="unknown draw kinds"):
        ReplayDraws({"bogus": []})
