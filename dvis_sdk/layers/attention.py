"""Transformer blocks shared by the decoder, tracker and refiner.

Parameter names follow Mask2Former (``self_attn``, ``multihead_attn``, ``linear1``/``linear2``,
``norm``) so official checkpoints load without renaming. Attention uses ``nn.MultiheadAttention``
because its packed ``in_proj_weight`` layout is what the checkpoints hold.
"""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn


def with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention: norm(x + attn(x + pos, x + pos, x)). Sequences are (L, B, C)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, tgt_mask: Optional[Tensor] = None, tgt_key_padding_mask: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        q = k = with_pos(tgt, query_pos)
        out = self.self_attn(q, k, value=tgt, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask,
                             need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention: norm(tgt + attn(tgt + query_pos, memory + pos, memory))."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, memory_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None, pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        out = self.multihead_attn(query=with_pos(tgt, query_pos), key=with_pos(memory, pos), value=memory,
                                  attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask,
                                  need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class ReferringCrossAttentionLayer(nn.Module):
    """Cross-attention whose residual is a separate ``identity`` tensor (DVIS trackers):
    norm(identity + attn(query + query_pos, key + pos, value))."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, identity: Tensor, query: Tensor, key: Tensor, value: Tensor,
                memory_mask: Optional[Tensor] = None, memory_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None, query_pos: Optional[Tensor] = None) -> Tensor:
        out = self.multihead_attn(query=with_pos(query, query_pos), key=with_pos(key, pos), value=value,
                                  attn_mask=memory_mask, key_padding_mask=memory_key_padding_mask,
                                  need_weights=False)[0]
        return self.norm(identity + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: norm(x + linear2(relu(linear1(x))))."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor) -> Tensor:
        out = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm(tgt + self.dropout(out))


class MLP(nn.Module):
    """Plain MLP with ReLU between layers (Mask2Former's mask_embed); keys ``layers.i``."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x
