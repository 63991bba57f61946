"""The class memory of the refiner's contrastive loss, the contrastive items, and the training presets."""
from __future__ import annotations

import pytest
import torch

from dvis_sdk.training import PRESETS, TrainConfig, preset
from dvis_sdk.training.draws import ReplayDraws
from dvis_sdk.training.reid import ClassMemory, loss_reid, refiner_items, tracker_items


def test_memory_overflow_is_shuffled_then_cut_to_the_last_rows():
    embeds = torch.arange(3 * 2 * 1, dtype=torch.float32).view(3, 2, 1)  # (T, Q, C): query 0 -> 0, 2, 4
    order = [2, 0, 1, 3, 4]  # what python's random.shuffle would have drawn
    mem = ClassMemory(max_len=4, draws=ReplayDraws({"memory_shuffle": [torch.tensor(order)]}))
    mem.push(embeds[:2], torch.tensor([5]), (torch.tensor([0]), torch.tensor([0])))  # rows 0, 2
    mem.push(embeds, torch.tensor([5]), (torch.tensor([0]), torch.tensor([0])))      # + 0, 2, 4 -> 5 rows > 4
    rows = [0.0, 2.0, 0.0, 2.0, 4.0]
    assert mem.get(5).flatten().tolist() == [rows[k] for k in order][-4:]
    assert mem.get(7) is None
    with pytest.raises(ValueError, match="max_len"):
        ClassMemory(0)


def test_memory_state_round_trip_and_detached_rows():
    x = torch.randn(2, 3, 4, requires_grad=True)
    mem = ClassMemory()
    mem.push(x, torch.tensor([1, 2]), (torch.tensor([2, 0]), torch.tensor([0, 1])))
    assert not mem.get(1).requires_grad and torch.equal(mem.get(1), x[:, 2].detach())
    other = ClassMemory()
    other.load_state_dict(mem.state_dict())
    assert torch.equal(other.get(2), mem.get(2))


def test_items_follow_the_official_layout():
    refs = torch.randn(3, 4, 5)
    pair = (torch.tensor([1, 3]), torch.tensor([0, 1]))
    items = tracker_items(refs, [pair] * 3)
    # frame 1: prev + next per object, frame 2 (last): prev only -> 2 * 2 + 2
    assert len(items) == 6 and all(it.num_pos == 1 and it.candidates.shape == (4, 5) for it in items)
    assert torch.equal(items[0].anchor, refs[1, 1]) and torch.equal(items[0].candidates[0], refs[0, 1])
    assert torch.equal(items[1].candidates[0], refs[2, 1])
    mem = ClassMemory()
    mem.push(torch.randn(2, 4, 5), torch.tensor([7, 8]), (torch.tensor([0]), torch.tensor([0])))
    r_items = refiner_items(refs, pair, torch.tensor([7, 9]), mem)
    # per frame: the in-clip item for both objects + a memory item for the class-7 object only
    assert len(r_items) == 3 * 3 and r_items[0].num_pos == 3
    with pytest.raises(ValueError, match="per-frame matchings"):
        tracker_items(refs, [pair])


def test_identical_positives_and_far_negatives_give_a_small_loss():
    refs = torch.eye(4).repeat(3, 1, 1) * 10
    pair = (torch.arange(4), torch.arange(4))
    assert float(loss_reid(tracker_items(refs, [pair] * 3))["loss_reid"]) < 1e-3


def test_presets():
    assert preset("official").iters == 40000 and preset("tiny", iters=5).iters == 5
    assert preset("small").lr == TrainConfig().lr == 1e-4 and set(PRESETS) == {"official", "small", "tiny"}
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
