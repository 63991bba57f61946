"""Transformer blocks shared by the decoder, tracker and refiner.

Parameter names follow Mask2Former (``self_attn``, ``multihead_attn``, ``linear1``/``linear2``,
``norm``) so official checkpoints load without renaming. Attention holds an ``nn.MultiheadAttention``
because its packed ``in_proj_weight`` layout is what the checkpoints hold; with the ``sdpa`` fast path
(:mod:`dvis_sdk.layers.impl`, on by default, per layer) :func:`multi_head_attention` runs it directly on
``F.scaled_dot_product_attention``, otherwise the module itself is called (reference path).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .impl import ImplChoices


def xavier_matrices(module: nn.Module) -> None:
    """Xavier-uniform on every matrix (dim > 1) of ``module``, in parameter order: the ``_reset_parameters``
    of the official Mask2Former / DVIS attention and FFN layers, run at the end of their constructors (so the
    RNG is drawn in the official order). Biases and norms keep PyTorch's defaults."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)


def c2_xavier_fill(layer: nn.Module) -> None:
    """detectron2's ``c2_xavier_fill``: kaiming-uniform (a=1) weight, zero bias (official DVIS++ ``ref_proj``)."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=1)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def with_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


def multi_head_attention(mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
                         attn_mask: Optional[Tensor] = None, key_padding_mask: Optional[Tensor] = None) -> Tensor:
    """``mha(query, key, value, need_weights=False)[0]`` computed straight on SDPA (same projections, same kernel).

    Sequences are (L, B, E) (``batch_first=False``). ``attn_mask``: boolean (True = may NOT attend) or additive
    float, either in ``nn.MultiheadAttention``'s (B*heads, L, S) / (L, S) layout or already (B, 1 or heads, L, S),
    which lets the caller skip materialising a per-head copy. ``key_padding_mask``: (B, S) bool, True = ignore.
    """
    if mha.batch_first or not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
        return mha(query, key, value, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False)[0]
    tgt_len, bsz, embed = query.shape
    src_len = key.shape[0]
    heads = mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    bq, bk, bv = (None, None, None) if b is None else b.chunk(3)
    wq, wk, wv = w.chunk(3)
    # 2-D projections: the (L, B, E) inputs are often permuted views, and for those aten::matmul can take a
    # batched path that expands the weight L times (measured: 4x slower decoder under CPU bf16 autocast).
    q = F.linear(query.reshape(tgt_len * bsz, embed), wq, bq)
    k = F.linear(key.reshape(src_len * bsz, key.shape[-1]), wk, bk)
    v = F.linear(value.reshape(src_len * bsz, value.shape[-1]), wv, bv)
    # (L, B, E) -> (B, heads, L, head_dim)
    q = q.view(tgt_len, bsz, heads, -1).permute(1, 2, 0, 3)
    k = k.view(src_len, bsz, heads, -1).permute(1, 2, 0, 3)
    v = v.view(src_len, bsz, heads, -1).permute(1, 2, 0, 3)

    mask = None
    if attn_mask is not None:
        if attn_mask.dim() == 2:
            mask = attn_mask.view(1, 1, tgt_len, src_len)
        elif attn_mask.dim() == 3:
            mask = attn_mask.view(bsz, heads, tgt_len, src_len)
        else:
            mask = attn_mask
        # SDPA's boolean convention is the opposite: True = take part in attention
        mask = ~mask if mask.dtype == torch.bool else mask.to(q.dtype)
    if key_padding_mask is not None:
        keep = ~key_padding_mask.view(bsz, 1, 1, src_len)
        if mask is None:
            mask = keep
        elif mask.dtype == torch.bool:
            mask = mask & keep
        else:
            mask = mask.masked_fill(~keep, float("-inf"))
    dropout_p = mha.dropout if mha.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    out = out.permute(2, 0, 1, 3).reshape(tgt_len * bsz, embed)
    return F.linear(out, mha.out_proj.weight, mha.out_proj.bias).view(tgt_len, bsz, embed)


def _attend(layer: "ImplChoices", mha: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor,
            attn_mask: Optional[Tensor], key_padding_mask: Optional[Tensor]) -> Tensor:
    if layer.sdpa:
        return multi_head_attention(mha, query, key, value, attn_mask, key_padding_mask)
    if attn_mask is not None and attn_mask.dim() == 4:
        # (B, 1|heads, L, S) -> nn.MultiheadAttention's (B*heads, L, S)
        attn_mask = attn_mask.expand(-1, mha.num_heads, -1, -1).flatten(0, 1)
    return mha(query, key, value=value, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
               need_weights=False)[0]


class SelfAttentionLayer(ImplChoices, nn.Module):
    """Post-norm self-attention: norm(x + attn(x + pos, x + pos, x)). Sequences are (L, B, C)."""

    impl_choices = ("sdpa",)

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, sdpa: bool = True):
        super().__init__()
        self.sdpa = sdpa
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Official initialisation: xavier-uniform on the attention / linear matrices."""
        xavier_matrices(self)

    def forward(self, tgt: Tensor, tgt_mask: Optional[Tensor] = None, tgt_key_padding_mask: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        q = k = with_pos(tgt, query_pos)
        out = _attend(self, self.self_attn, q, k, tgt, tgt_mask, tgt_key_padding_mask)
        return self.norm(tgt + self.dropout(out))


class CrossAttentionLayer(ImplChoices, nn.Module):
    """Post-norm cross-attention: norm(tgt + attn(tgt + query_pos, memory + pos, memory))."""

    impl_choices = ("sdpa",)

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, sdpa: bool = True):
        super().__init__()
        self.sdpa = sdpa
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Official initialisation: xavier-uniform on the attention / linear matrices."""
        xavier_matrices(self)

    def forward(self, tgt: Tensor, memory: Tensor, memory_mask: Optional[Tensor] = None,
                memory_key_padding_mask: Optional[Tensor] = None, pos: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None) -> Tensor:
        out = _attend(self, self.multihead_attn, with_pos(tgt, query_pos), with_pos(memory, pos), memory,
                      memory_mask, memory_key_padding_mask)
        return self.norm(tgt + self.dropout(out))


class ReferringCrossAttentionLayer(ImplChoices, nn.Module):
    """Cross-attention whose residual is a separate ``identity`` tensor (DVIS trackers):
    norm(identity + attn(query + query_pos, key + pos, value))."""

    impl_choices = ("sdpa",)

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, sdpa: bool = True):
        super().__init__()
        self.sdpa = sdpa
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Official initialisation: xavier-uniform on the attention / linear matrices."""
        xavier_matrices(self)

    def forward(self, identity: Tensor, query: Tensor, key: Tensor, value: Tensor,
                memory_mask: Optional[Tensor] = None, memory_key_padding_mask: Optional[Tensor] = None,
                pos: Optional[Tensor] = None, query_pos: Optional[Tensor] = None) -> Tensor:
        out = _attend(self, self.multihead_attn, with_pos(query, query_pos), with_pos(key, pos), value,
                      memory_mask, memory_key_padding_mask)
        return self.norm(identity + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm feed-forward block: norm(x + linear2(relu(linear1(x))))."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Official initialisation: xavier-uniform on the attention / linear matrices."""
        xavier_matrices(self)

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
