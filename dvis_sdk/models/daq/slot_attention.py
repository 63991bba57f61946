"""Slot cross-attention of the DVIS-DAQ track module (``dvis_daq/slot_attention.py``).

Same computation and state-dict keys as the official ``SlotCrossAttentionLayer`` (post-norm, the only
form DAQ builds): a multi-head cross-attention from the slots to the frame queries, then one slot-attention
step whose queries are the slot *queries* (the tracked sequences' position embeddings and the learned
background slots) and whose inputs are the attention outputs; the update is added to the slots and
layer-normed. In DAQ only the class logits of the slot branch are used at inference (the "is this track
query still foreground" test).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers.attention import with_pos


class SlotAttention(nn.Module):
    """One slot-attention step (keys ``norm_inputs``, ``project_q.0`` (LayerNorm), ``project_q.1``, ``project_k``)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.attn_scale = dim ** -0.5
        self.norm_inputs = nn.LayerNorm(dim)
        self.project_q = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim, bias=False))
        self.project_k = nn.Linear(dim, dim, bias=False)

    def forward(self, inputs: Tensor, inputs_k: Tensor, slots: Tensor) -> Tensor:
        """inputs / inputs_k (B, N, C), slots (B, M, C) -> updates (M, B, C).

        The softmax runs over the M slots, then each slot's weights are renormalised over the N inputs (after
        ``+ eps``, so a slot nobody attends to averages all inputs) -- the official order of operations.
        """
        k = self.project_k(self.norm_inputs(inputs_k))
        q = self.project_q(slots)
        attn = F.softmax(self.attn_scale * torch.einsum("bnc,bmc->bnm", k, q), dim=-1) + self.eps
        attn = attn / attn.sum(dim=1, keepdim=True)
        return torch.einsum("bnm,bnc->bmc", attn, inputs).transpose(0, 1)


class SlotCrossAttentionLayer(nn.Module):
    """Post-norm slot cross-attention: ``norm(tgt + slot_attn(a, tgt + a, slot_query))`` with
    ``a = MHA(tgt + query_pos, memory + pos, memory)``. Sequences are (L, B, C)."""

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)
        self.slot_attn = SlotAttention(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, slot_query: Tensor, pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        # the plain module call: this branch is small and runs once per frame
        a = self.multihead_attn(with_pos(tgt, query_pos), with_pos(memory, pos), memory, need_weights=False)[0]
        update = self.slot_attn(a.transpose(0, 1), (tgt + a).transpose(0, 1), slot_query.transpose(0, 1))
        return self.norm(tgt + update)
