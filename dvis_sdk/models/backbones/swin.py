"""Mask2Former's Swin Transformer backbone (``D2SwinTransformer``), pure PyTorch.

State-dict keys are identical to Mask2Former's ``mask2former/modeling/backbone/swin.py``
(``patch_embed.proj``, ``layers.i.blocks.j.attn.relative_position_bias_table``, the int64
``relative_position_index`` buffer, ``layers.i.downsample.reduction``, ``norm0..norm3``, ...).

Written here rather than taken from timm: timm's Swin uses different key names (``layers_0``,
``downsample`` placed before the blocks), a fixed input resolution with precomputed masks, and it
skips shifting when a stage is not larger than one window. Mask2Former instead pads every stage
to a multiple of the window size (even a stage smaller than one window), always shifts by
``window_size // 2`` in odd blocks and masks with -100, which changes the numbers.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint
from timm.layers import DropPath
from torch import Tensor, nn

from ...layers.impl import ImplChoices, check_choice
from ...runtime import fp32_under_autocast

__all__ = ["SwinTransformer", "WindowAttention", "SwinTransformerBlock", "PatchMerging", "PatchEmbed"]

_OUT_NAMES = ("res2", "res3", "res4", "res5")


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (keys ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def window_partition(x: Tensor, ws: int) -> Tensor:
    """(B, H, W, C) with H, W multiples of ws -> (B * nW, ws, ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws, ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, c)


def _relative_position_index(ws: int) -> Tensor:
    """(ws*ws, ws*ws) int64 index into the (2ws-1)^2 bias table, row-major (dy, dx) as in Swin."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def shifted_window_mask(hp: int, wp: int, ws: int, shift: int, device: torch.device) -> Tensor:
    """(nW, ws*ws, ws*ws) additive mask (0 / -100) for the cyclically shifted padded map (hp, wp).

    Reproduces the official region labelling exactly, including when the padded map is a single
    window (the slice ``0:-ws`` is then empty and only the two shifted bands get labels).
    """
    img_mask = torch.zeros((1, hp, wp, 1), device=device)
    slices = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    cnt = 0
    for hs in slices:
        for wsl in slices:
            img_mask[:, hs, wsl, :] = cnt
            cnt += 1
    mask_windows = window_partition(img_mask, ws).view(-1, ws * ws)
    diff = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias.

    Keys: ``relative_position_bias_table`` ((2ws-1)^2, heads), ``relative_position_index``
    (int64 buffer, persistent: official checkpoints contain it), ``qkv``, ``proj``.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.dim = dim
        self.window_size = (window_size, window_size)
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", _relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """x: (B*nW, N, C); mask: (nW, N, N) additive or None -> (B*nW, N, C)."""
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.to(attn.dtype)[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))


class SwinTransformerBlock(nn.Module):
    """Pre-norm (shifted-)window attention + MLP block; pads the map to multiples of the window."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError("shift_size must be in [0, window_size)")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: Tensor, h: int, w: int, attn_mask: Optional[Tensor]) -> Tensor:
        """x: (B, H*W, C) -> (B, H*W, C); attn_mask is used only when this block shifts."""
        b, _, c = x.shape
        ws = self.window_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        pad_r = (ws - w % ws) % ws
        pad_b = (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = x.shape[1], x.shape[2]
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
            mask = attn_mask
        else:
            mask = None
        windows = window_partition(x, ws).view(-1, ws * ws, c)
        windows = self.attn(windows, mask=mask)
        x = window_reverse(windows.view(-1, ws, ws, c), ws, hp, wp)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :h, :w, :].reshape(b, h * w, c)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (x00, x10, x01, x11) -> LayerNorm(4C) -> Linear(4C, 2C, no bias)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        """x: (B, H*W, C) -> (B, ceil(H/2)*ceil(W/2), 2C); odd sizes are zero-padded."""
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 == 1 or w % 2 == 1:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    """One Swin stage: ``blocks`` (even: regular windows, odd: shifted) and optional ``downsample``."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: Sequence[float] = (), downsample: bool = False,
                 use_checkpoint: bool = False):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        dp = list(drop_path) if len(drop_path) else [0.0] * depth
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio, qkv_bias, qk_scale, drop, attn_drop, dp[i])
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, h: int, w: int) -> Tuple[Tensor, Tensor, int, int]:
        """x: (B, H*W, C) -> (stage output (B, H*W, C), next-stage input, next H, next W)."""
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        attn_mask = None
        if any(blk.shift_size > 0 for blk in self.blocks):
            attn_mask = shifted_window_mask(hp, wp, ws, self.shift_size, x.device)
        for blk in self.blocks:
            if self.use_checkpoint and x.requires_grad:
                x = checkpoint.checkpoint(blk, x, h, w, attn_mask, use_reentrant=False)
            else:
                x = blk(x, h, w, attn_mask)
        if self.downsample is None:
            return x, x, h, w
        return x, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(ImplChoices, nn.Module):
    """Non-overlapping patch conv (``proj``) + optional LayerNorm (``norm``); pads to the patch size.
    ``stem_fp32``: run in fp32 under autocast (:mod:`dvis_sdk.layers.impl`)."""

    impl_choices = ("stem_fp32",)

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96, patch_norm: bool = True,
                 stem_fp32: bool = True):
        super().__init__()
        self.stem_fp32 = check_choice("stem_fp32", stem_fp32)
        self.patch_size = (patch_size, patch_size)
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, embed_dim, ceil(H/p), ceil(W/p))."""
        return fp32_under_autocast(self._forward, x, self.stem_fp32, self.proj.weight.dtype)

    def _forward(self, x: Tensor) -> Tensor:
        _, _, h, w = x.shape
        ph, pw = self.patch_size
        if w % pw != 0:
            x = F.pad(x, (0, pw - w % pw))
        if h % ph != 0:
            x = F.pad(x, (0, 0, 0, ph - h % ph))
        x = self.proj(x)
        if self.norm is not None:
            hh, ww = x.shape[2], x.shape[3]
            x = self.norm(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(-1, self.embed_dim, hh, ww)
        return x


class SwinTransformer(nn.Module):
    """Mask2Former ``D2SwinTransformer`` (Swin-T/S/B/L) returning multi-scale features.

    forward(x: (N, in_chans, H, W)) -> {name: (N, out_channels[name], H/s, W/s)} for each name in
    ``out_features`` (res2..res5, strides 4, 8, 16, 32; sizes rounded up when H, W are not multiples
    of 32). The per-stage output norms ``norm0..norm3`` always exist (as in the official module,
    whose checkpoint holds all four), whatever ``out_features`` is.
    """

    def __init__(self, pretrain_img_size: int = 224, patch_size: int = 4, in_chans: int = 3,
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (3, 6, 12, 24), window_size: int = 7, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: Optional[float] = None, ape: bool = False,
                 patch_norm: bool = True, out_features: Sequence[str] = _OUT_NAMES,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 use_checkpoint: bool = False, stem_fp32: bool = True):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError("depths and num_heads must have the same length")
        self.num_layers = len(depths)
        names = _OUT_NAMES[: self.num_layers]
        unknown = [f for f in out_features if f not in names]
        if unknown:
            raise ValueError(f"unknown out_features {unknown}; available {names}")
        self.out_features = tuple(out_features)
        self.embed_dim = embed_dim
        self.ape = ape
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm, stem_fp32=stem_fp32)
        if ape:
            res = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, res, res))
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            self.layers.append(BasicLayer(
                dim=embed_dim * 2 ** i, depth=depths[i], num_heads=num_heads[i], window_size=window_size,
                mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                downsample=i < self.num_layers - 1, use_checkpoint=use_checkpoint))
        self.num_features: List[int] = [embed_dim * 2 ** i for i in range(self.num_layers)]
        for i in range(self.num_layers):
            self.add_module(f"norm{i}", nn.LayerNorm(self.num_features[i]))

        self.out_channels: Dict[str, int] = {n: self.num_features[names.index(n)] for n in self.out_features}
        self.out_strides: Dict[str, int] = {n: patch_size * 2 ** names.index(n) for n in self.out_features}

    @property
    def size_divisibility(self) -> int:
        return 32

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x: (N, C, H, W) normalised image batch -> dict of (N, C_l, H_l, W_l) features."""
        if x.dim() != 4:
            raise ValueError(f"SwinTransformer takes an input of shape (N, C, H, W); got {tuple(x.shape)}")
        x = self.patch_embed(x)
        h, w = x.shape[2], x.shape[3]
        if self.ape:
            pos = F.interpolate(self.absolute_pos_embed, size=(h, w), mode="bicubic")
            x = x + pos
        x = self.pos_drop(x.flatten(2).transpose(1, 2))
        last = max((_OUT_NAMES.index(n) for n in self.out_features), default=-1)
        outs: Dict[str, Tensor] = {}
        for i in range(last + 1):
            x_out, x, nh, nw = self.layers[i](x, h, w)
            name = _OUT_NAMES[i]
            if name in self.out_features:
                y = getattr(self, f"norm{i}")(x_out)
                outs[name] = y.view(-1, h, w, self.num_features[i]).permute(0, 3, 1, 2).contiguous()
            h, w = nh, nw
        return outs
