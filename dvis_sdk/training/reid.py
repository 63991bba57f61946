"""The DVIS++ contrastive (re-identification) losses: the official ``loss_reid`` and the items it is computed on.

An item is one anchor embedding and L candidates, the first ``num_pos`` positives, the rest negatives. Its
contrastive term is ``log(1 + sum_{p, n} exp(d_n - d_p))`` on the dot products ``d`` with the anchor; ``loss_reid``
is the mean over items. The official code also computes ``loss_aux_reid`` (mean squared error between the cosine
similarities and the 0/1 labels) and then drops it (it is not in ``weight_dict``); :func:`loss_reid` returns it for
inspection and the stages do not add it.

Item builders (official ``dvis_Plus/meta_architecture.py``):

* :func:`tracker_items` (``get_cl_loss_ref``): on the tracker's per-frame references, for every frame i >= 1 and every
  matched (query r, target g), anchor = frame i's r, positive = frame i-1's r, negatives = frame i-1's other
  queries; and unless i is the last frame a second item with frame i+1.
* :func:`refiner_items` (``get_cl_loss_with_memory``): on the refiner's embeddings, for every frame i and matched
  (r, g), anchor = frame i's r, positives = r in all frames (frame i included), negatives = frame i's other
  queries; plus, when the :class:`ClassMemory` holds rows of g's class, an item with those rows as negatives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .draws import Draws

__all__ = ["ReidItem", "loss_reid", "tracker_items", "refiner_items", "ClassMemory"]


@dataclass
class ReidItem:
    """One contrastive item: ``anchor`` (C,), ``candidates`` (L, C) with the ``num_pos`` positives first."""

    anchor: Tensor
    candidates: Tensor
    num_pos: int


def _item_terms(item: ReidItem) -> Tuple[Tensor, Tensor]:
    dots = item.candidates @ item.anchor  # (L,)
    pos, neg = dots[:item.num_pos], dots[item.num_pos:]
    diffs = (neg[None, :] - pos[:, None]).flatten()  # p-major, as the official repeat_interleave / repeat
    contrastive = torch.logsumexp(F.pad(diffs, (0, 1)), 0)
    cos = F.normalize(item.candidates, dim=1) @ F.normalize(item.anchor, dim=0)
    label = torch.zeros_like(cos)
    label[:item.num_pos] = 1.0
    return contrastive, ((cos - label) ** 2).mean()


def loss_reid(items: Sequence[ReidItem], empty_like: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """``{"loss_reid", "loss_aux_reid"}`` averaged over ``items`` (official ``utils.loss_reid``). With no items both
    are ``empty_like.sum() * 0`` (keeps the graph connected), or plain zeros without ``empty_like``."""
    if not items:
        zero = empty_like.sum() * 0.0 if empty_like is not None else torch.zeros(())
        return {"loss_reid": zero, "loss_aux_reid": zero}
    terms = [_item_terms(it) for it in items]
    n = len(items)
    return {"loss_reid": torch.stack([c for c, _ in terms]).sum() / n,
            "loss_aux_reid": torch.stack([a for _, a in terms]).sum() / n}


def _matched(pair: Tuple[Tensor, Tensor]) -> Dict[int, int]:
    # target -> query, in the matcher's pair order (a later pair for the same target wins, as official)
    return {int(g): int(r) for r, g in zip(pair[0].tolist(), pair[1].tolist())}


def _others(x: Tensor, r: int) -> Tensor:
    return torch.cat([x[:r], x[r + 1:]], 0)


def tracker_items(references: Tensor, matching: Sequence[Tuple[Tensor, Tensor]]) -> List[ReidItem]:
    """Items of the tracker's contrastive loss for one clip: ``references`` (T, Q, C), ``matching[t]`` the
    (queries, targets) pairs of frame t."""
    t_len = references.shape[0]
    if len(matching) != t_len:
        raise ValueError(f"{len(matching)} per-frame matchings for {t_len} frames")
    items: List[ReidItem] = []
    for i in range(1, t_len):
        for _, r in _matched(matching[i]).items():
            anchor = references[i, r]
            for j in ((i - 1, i + 1) if i != t_len - 1 else (i - 1,)):
                cand = torch.cat([references[j, r:r + 1], _others(references[j], r)], 0)
                items.append(ReidItem(anchor, cand, 1))
    return items


class ClassMemory:
    """The refiner's per-class memory of embeddings (official ``Outputs_Memory_PerClasses``, ``max_len`` 20).

    :meth:`push` appends, per matched target, its query's embedding in every frame to its class; a class holding
    more than ``max_len`` rows is shuffled (``draws.memory_shuffle``) and cut to its last ``max_len``. Rows are
    stored detached. ``state_dict`` / ``load_state_dict`` round-trip it for checkpoints.
    """

    def __init__(self, max_len: int = 20, draws: Optional[Draws] = None):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self.max_len = int(max_len)
        self.draws = draws if draws is not None else Draws()
        self.rows: Dict[int, List[Tensor]] = {}

    def get(self, cls: int) -> Optional[Tensor]:
        """(n, C) rows of class ``cls``, or None."""
        rows = self.rows.get(int(cls))
        return torch.stack(rows, 0) if rows else None

    def push(self, embeds: Tensor, labels: Tensor, pair: Tuple[Tensor, Tensor]) -> None:
        """``embeds`` (T, Q, C), ``labels`` (N,) target classes, ``pair`` the clip's (queries, targets) matching."""
        embeds = embeds.detach().clone()
        for r, g in zip(pair[0].tolist(), pair[1].tolist()):
            self.rows.setdefault(int(labels[g]), []).extend(torch.unbind(embeds[:, r], 0))
        for cls, rows in self.rows.items():
            if len(rows) > self.max_len:
                order = self.draws.memory_shuffle(len(rows))
                self.rows[cls] = [rows[k] for k in order][-self.max_len:]

    def state_dict(self) -> Dict[str, Tensor]:
        return {str(c): torch.stack(r, 0) for c, r in self.rows.items() if r}

    def load_state_dict(self, state: Dict[str, Tensor]) -> None:
        self.rows = {int(c): list(torch.unbind(t, 0)) for c, t in state.items()}


def refiner_items(embeds: Tensor, pair: Tuple[Tensor, Tensor], labels: Tensor,
                  memory: Optional[ClassMemory]) -> List[ReidItem]:
    """Items of the refiner's contrastive loss for one clip: ``embeds`` (T, Q, C), ``pair`` the clip's matching,
    ``labels`` (N,) target classes, ``memory`` the class memory BEFORE this clip is pushed."""
    items: List[ReidItem] = []
    matched = _matched(pair)
    for i in range(embeds.shape[0]):
        for g, r in matched.items():
            anchor, pos = embeds[i, r], embeds[:, r]
            items.append(ReidItem(anchor, torch.cat([pos, _others(embeds[i], r)], 0), pos.shape[0]))
            neg = memory.get(int(labels[g])) if memory is not None else None
            if neg is not None:
                items.append(ReidItem(anchor, torch.cat([pos, neg.to(pos)], 0), pos.shape[0]))
    return items
