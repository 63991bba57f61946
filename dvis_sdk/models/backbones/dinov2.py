"""Plain DINOv2 vision transformer as used (frozen) inside DVIS++'s ViT-Adapter.

State-dict keys equal those of the official ``DinoVisionTransformer`` (DVIS++
``mask2former/modeling/backbones_vitAdapter/backbones.py``, itself facebookresearch/dinov2) with
``block_chunks=0`` (flat ``blocks.{i}`` layout, the only layout DVIS++ builds):

``cls_token`` (1, 1, D), ``pos_embed`` (1, 1 + g*g, D), ``mask_token`` (1, D),
``patch_embed.proj.{weight,bias}``, ``blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
mlp.fc1, mlp.fc2, ls2.gamma}.*``, ``norm.{weight,bias}``.

The blocks are written here rather than taken from timm: timm's ``Block`` has the same key names
and the same math, but its constructor arguments (``proj_bias``, MLP bias, ``scale_*_norm``, ...)
and its attention switch (``fused_attn``, env-var controlled) changed between the timm versions
this package allows (>=0.9), and the official DINOv2 also needs ``ffn_bias`` and the DINOv2
``interpolate_pos_encoding`` quirks below, so a 60-line local copy is the stable choice.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers.impl import ImplChoices, check_choice
from ...runtime import fp32_under_autocast

__all__ = ["PatchEmbed", "Attention", "LayerScale", "Mlp", "Block", "DinoVisionTransformer",
           "resize_patch_embed_kernel", "convert_dinov2_state_dict"]


class PatchEmbed(ImplChoices, nn.Module):
    """Non-overlapping conv patchifier: (B, 3, H, W) -> (B, H/p * W/p, D). Key: ``proj``. ``stem_fp32``: run in
    fp32 under autocast (:mod:`dvis_sdk.layers.impl`)."""

    impl_choices = ("stem_fp32",)

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 stem_fp32: bool = True):
        super().__init__()
        self.stem_fp32 = check_choice("stem_fp32", stem_fp32)
        self.img_size = (img_size, img_size)
        self.patch_size = (patch_size, patch_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tuple[Tensor, int, int]:
        """Returns tokens (B, h*w, D) and the token grid (h, w)."""
        return fp32_under_autocast(self._forward, x, self.stem_fp32, self.proj.weight.dtype)

    def _forward(self, x: Tensor) -> Tuple[Tensor, int, int]:
        H, W = x.shape[-2:]
        p = self.patch_size[0]
        if H % p or W % p:
            raise ValueError(f"input size {(H, W)} is not a multiple of the patch size {p}")
        x = self.proj(x)
        h, w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), h, w


class Attention(ImplChoices, nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (DINOv2 ``Attention``)."""

    # The official CPU path is the explicit softmax(q*scale @ k^T) @ v (on GPU it uses xformers'
    # memory-efficient kernel); SDPA is numerically equivalent within fp32 noise and needs no
    # (heads x N x N) buffer at high resolution. Set to False (or this module's ``sdpa`` choice, see
    # dvis_sdk.layers.impl) for the literal explicit path.
    fused_attn: bool = True
    impl_choices = ("sdpa",)

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, proj_bias: bool = True,
                 sdpa: bool = True):
        super().__init__()
        self.sdpa = sdpa
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused_attn and self.sdpa:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    """Per-channel residual scale. Key: ``gamma``."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int, bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_bias: bool = True, ffn_bias: bool = True, init_values: Optional[float] = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), bias=ffn_bias)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT (no registers, ``ffn_layer="mlp"``, ``block_chunks=0``) with official keys.

    Only the token preparation and the blocks are used by the ViT-Adapter; ``norm`` and
    ``mask_token`` exist so that official checkpoints load strictly (they are unused there).
    """

    def __init__(self, img_size: int = 592, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 1024,
                 depth: int = 24, num_heads: int = 16, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 proj_bias: bool = True, ffn_bias: bool = True, init_values: Optional[float] = 1e-5,
                 ffn_layer: str = "mlp", stem_fp32: bool = True):
        super().__init__()
        if ffn_layer != "mlp":
            # DVIS++'s get_models always builds "mlp"; SwiGLU (ViT-g) is not part of DVIS++.
            raise NotImplementedError(f"ffn_layer={ffn_layer!r} (only 'mlp' is used by DVIS++)")
        self.embed_dim = self.num_features = embed_dim
        self.patch_size = patch_size
        self.num_heads = num_heads
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, stem_fp32=stem_fp32)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, proj_bias, ffn_bias, init_values) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def interpolate_pos_encoding(self, num_tokens: int, H: int, W: int) -> Tensor:
        """Positional embedding (1, 1 + h*w, D) for an (H, W) image, exactly as the official code.

        Official quirks reproduced on purpose (they change the numbers):
        * resized with ``scale_factor=((H//p + 0.1)/g, (W//p + 0.1)/g)``, not ``size=``, bicubic,
          align_corners=False, in float32; the official code names the image height ``w`` and the
          width ``h`` (``B, nc, w, h = x.shape``) but passes them in the right order, so the first
          factor does belong to the rows;
        * skipped only when the token count equals the stored grid AND the image is square
          (compared in pixels); any other size is interpolated, even from g x g to g x g.
        """
        n_stored = self.pos_embed.shape[1] - 1
        if num_tokens - 1 == n_stored and H == W:
            return self.pos_embed
        dtype = self.pos_embed.dtype
        pos = self.pos_embed.float()
        g = math.sqrt(n_stored)
        gi = int(g)
        h0 = H // self.patch_size + 0.1
        w0 = W // self.patch_size + 0.1
        patch_pos = F.interpolate(
            pos[:, 1:].reshape(1, gi, gi, -1).permute(0, 3, 1, 2),
            scale_factor=(h0 / g, w0 / g), mode="bicubic")
        if patch_pos.shape[-2:] != (int(h0), int(w0)):
            raise RuntimeError(f"pos-embed interpolation gave {tuple(patch_pos.shape[-2:])}, "
                               f"expected {(int(h0), int(w0))}")
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
        return torch.cat((pos[:, :1], patch_pos), dim=1).to(dtype)

    def prepare_tokens(self, x: Tensor) -> Tuple[Tensor, int, int]:
        """(B, 3, H, W) -> tokens (B, 1 + h*w, D) (cls first, pos-embed added) and the grid (h, w)."""
        H, W = x.shape[-2:]
        tokens, h, w = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        return tokens + self.interpolate_pos_encoding(tokens.shape[1], H, W), h, w

    def forward(self, x: Tensor) -> Tensor:
        """Plain DINOv2 features: normed tokens (B, 1 + h*w, D) after all blocks (not used by the adapter)."""
        x, _, _ = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def resize_patch_embed_kernel(weight: Tensor, size: int = 16) -> Tensor:
    """Resize a DINOv2 patch kernel (D, 3, 14, 14) to (D, 3, size, size) like the official loader.

    The official ``load_pretrained_weights`` uses ``F.interpolate(bilinear, align_corners=True)``
    on the raw kernel (no norm-preserving rescale, unlike timm's ``resample_patch_embed``).
    """
    return F.interpolate(weight, size=(size, size), mode="bilinear", align_corners=True)


def convert_dinov2_state_dict(state_dict: dict, patch_size: int = 16) -> dict:
    """Raw DINOv2 checkpoint (e.g. ``dinov2_vitl14_pretrain.pth``) -> keys/shapes of
    :class:`DinoVisionTransformer` with ``patch_size``: only the patch kernel changes (the 37x37
    pos-embed of the 518px/14 checkpoint is exactly the 592px/16 grid)."""
    out = dict(state_dict)
    w = out["patch_embed.proj.weight"]
    if w.shape[-1] != patch_size:
        out["patch_embed.proj.weight"] = resize_patch_embed_kernel(w.float(), patch_size).to(w.dtype)
    return out
