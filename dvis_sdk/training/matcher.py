"""Hungarian matching of predicted video masks to ground-truth tracks (Mask2Former-VIS / DVIS), with point sampling.

The cost of assigning query q to target m is ``cost_class * (-p_q(label_m)) + cost_mask * BCE + cost_dice * dice``,
the mask terms computed on the same ``num_points`` random points of every frame of the clip (so the matching
is done over whole video masks, not per frame). :class:`ConsistentMatcher` is the DVIS++ tracker matcher:
each target is matched in the first frame where it is visible and keeps that query for the whole clip.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .draws import Draws

__all__ = ["point_sample", "batch_sigmoid_ce_cost", "batch_dice_cost", "HungarianMatcher", "ConsistentMatcher"]

Indices = List[Tuple[Tensor, Tensor]]


def point_sample(inputs: Tensor, coords: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear samples of ``inputs`` (N, C, H, W) at ``coords`` (N, P, 2) in [0, 1] x [0, 1] (x, y) -> (N, C, P)."""
    out = F.grid_sample(inputs, (2.0 * coords - 1.0).unsqueeze(2), mode="bilinear", padding_mode="zeros",
                        align_corners=align_corners)
    return out.squeeze(3)


def batch_sigmoid_ce_cost(inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross-entropy of every prediction (Nq, P) logits against every target (Nt, P) -> (Nq, Nt)."""
    p = inputs.shape[1]
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.t() + neg @ (1 - targets).t()) / max(p, 1)


def batch_dice_cost(inputs: Tensor, targets: Tensor) -> Tensor:
    """Dice loss (``1 - (2|XY| + 1) / (|X| + |Y| + 1)``) of every prediction against every target -> (Nq, Nt)."""
    s = inputs.sigmoid()
    num = 2 * s @ targets.t()
    den = s.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


class HungarianMatcher:
    """Optimal one-to-one assignment of queries to targets, per batch item (official ``VideoHungarianMatcher``).

    ``outputs``: ``pred_logits`` (B, Q, K+1) and ``pred_masks`` (B, Q, T, h, w) mask logits;
    ``targets``: B dicts with ``labels`` (M,) and ``masks`` (M, T, H, W) (any resolution: points are sampled in
    normalised coordinates). Returns B pairs (query indices, target indices), sorted by query.
    Official weights: class 2, mask 5, dice 5, 12544 points. ``draws`` serves the point set of each cost matrix
    (:class:`~dvis_sdk.training.draws.Draws`; default fresh draws from torch's global RNG).
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544, draws: Optional[Draws] = None):
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("all matching costs are 0")
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = int(num_points)
        self.draws = draws if draws is not None else Draws()

    @torch.no_grad()
    def cost_matrix(self, logits: Tensor, masks: Tensor, labels: Tensor, tgt_masks: Tensor) -> Tensor:
        """logits (Q, K+1), masks (Q, T, h, w), labels (M,), tgt_masks (M, T, H, W) -> cost (Q, M), float32 CPU.

        Computed in fp32 with autocast off (as the official matcher): under fp16 autocast the point sums of the
        mask costs overflow to inf (an infeasible assignment), under bf16 they are off by up to 0.075."""
        with torch.autocast(masks.device.type, enabled=False):
            return self._cost_matrix(logits, masks, labels, tgt_masks)

    def _cost_matrix(self, logits: Tensor, masks: Tensor, labels: Tensor, tgt_masks: Tensor) -> Tensor:
        prob = logits.float().softmax(-1)
        cost_class = -prob[:, labels.to(prob.device)]
        coords = self.draws.matcher_points(self.num_points).to(masks.device)
        out = point_sample(masks.float(), coords.expand(masks.shape[0], -1, -1)).flatten(1)
        tgt = tgt_masks.to(device=masks.device, dtype=torch.float32)
        tgt = point_sample(tgt, coords.expand(tgt.shape[0], -1, -1)).flatten(1)
        cost = (self.cost_mask * batch_sigmoid_ce_cost(out, tgt) + self.cost_class * cost_class
                + self.cost_dice * batch_dice_cost(out, tgt))
        return cost.cpu()

    @torch.no_grad()
    def __call__(self, outputs: Mapping[str, Tensor], targets: Sequence[Dict[str, Tensor]]) -> Indices:
        indices = []
        for b, tgt in enumerate(targets):
            if len(tgt["labels"]) == 0:
                indices.append((torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)))
                continue
            cost = self.cost_matrix(outputs["pred_logits"][b], outputs["pred_masks"][b], tgt["labels"], tgt["masks"])
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
                f"cost_dice={self.cost_dice}, num_points={self.num_points})")


class ConsistentMatcher(HungarianMatcher):
    """DVIS++ tracker matcher (official ``VideoHungarianMatcher_Consistent``).

    The batch is ``B * frames`` per-frame items, ``frames`` consecutive items per clip; every target dict also has
    ``present`` (M,) bool (visible in that frame). Each target is matched in the first frame of its clip where
    it is visible, among the queries not yet taken, and the same (query, target) pairs hold for every frame of
    the clip.
    """

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544, frames: int = 5, draws: Optional[Draws] = None):
        super().__init__(cost_class, cost_mask, cost_dice, num_points, draws)
        self.frames = int(frames)

    @torch.no_grad()
    def __call__(self, outputs: Mapping[str, Tensor], targets: Sequence[Dict[str, Tensor]]) -> Indices:
        n = len(targets)
        if n % self.frames:
            raise ValueError(f"{n} per-frame targets is not a multiple of frames={self.frames}")
        indices: Indices = []
        for c in range(n // self.frames):
            items = range(c * self.frames, (c + 1) * self.frames)
            first: Dict[int, int] = {}
            for f, i in enumerate(items):
                for m in torch.nonzero(targets[i]["present"]).flatten().tolist():
                    first.setdefault(m, f)
            rows: List[int] = []
            cols: List[int] = []
            for f in sorted(set(first.values())):
                i = c * self.frames + f
                tg = [m for m, f0 in first.items() if f0 == f]
                tg_t = torch.as_tensor(tg, dtype=torch.int64)
                cost = self.cost_matrix(outputs["pred_logits"][i], outputs["pred_masks"][i],
                                        targets[i]["labels"][tg_t], targets[i]["masks"][tg_t])
                if rows:
                    cost[rows] = 1e6  # queries already matched in an earlier frame
                r, k = linear_sum_assignment(cost.numpy())
                rows += r.tolist()
                cols += np.asarray(tg)[k].tolist()
            pair = (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            indices += [pair] * self.frames
        return indices
