"""DVIS++'s compact ViT-Adapter around a frozen DINOv2 ViT (official ``D2VitAdapterDinoV2``).

Reimplements ``mask2former/modeling/backbones_vitAdapter/adapter.py::DinoV2ViTAdapter`` with
``InteractionBlockWithCls_Efficient`` blocks. State-dict keys are identical to the official
backbone's (inside a full DVIS++ checkpoint they carry the ``backbone.`` prefix):

``level_embed`` (3, D); ``spm.{stem.{0,1,3,4,6,7}, conv2.{0,1}, conv3.{0,1}, conv4.{0,1}, fc1..fc4}.*``;
``interactions.{i}.extractor.{query_norm, feat_norm, attn.*, ffn.{fc1, dwconv.dwconv, fc2}, ffn_norm}.*``
(+ ``interactions.{last}.extra_extractors.{0,1}.*``); ``up.*``; ``norm1..norm4.*`` (BatchNorm, incl.
``num_batches_tracked``); ``vit_module.*`` (see :mod:`dvis_sdk.models.backbones.dinov2`).

Differences from the upstream ViT-Adapter that the official DVIS++ code has (and this module keeps):
* no injectors: the frozen ViT blocks run untouched, only extractors update the adapter tokens;
* the last interaction has 2 extra extractors;
* MSDeformAttn ignores ``deform_ratio`` (value_proj stays D x D);
* SpatialPriorModule / norm1..4 are ``nn.SyncBatchNorm`` officially; here ``nn.BatchNorm2d`` (same
  keys, same eval math; use ``nn.SyncBatchNorm.convert_sync_batchnorm`` for multi-GPU training).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from ...layers.impl import ImplChoices, check_choice
from ...layers.ms_deform_attn import MSDeformAttn
from ...runtime import fp32_under_autocast
from .dinov2 import DinoVisionTransformer, convert_dinov2_state_dict, resize_patch_embed_kernel

# (H, W) of each level: Python ints (no host read per call) or, for callers that have one, an (L, 2) tensor
SpatialShapes = Union[Tensor, Sequence[Tuple[int, int]]]

__all__ = ["ViTAdapter", "SpatialPriorModule", "Extractor", "ConvFFN", "DWConv", "InteractionBlock",
           "VITL_ADAPTER_KWARGS", "VITB_ADAPTER_KWARGS", "vitl_adapter_kwargs", "vitb_adapter_kwargs",
           "resize_patch_embed_kernel", "convert_dinov2_state_dict"]

# Official ``get_models`` (DINOv2 kwargs) + ``get_adapter_args('vitl')`` of DVIS++.
VITL_ADAPTER_KWARGS: Dict[str, object] = dict(
    img_size=592, patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0,
    layer_scale_init_values=1e-5, qkv_bias=True, proj_bias=True, ffn_bias=True, ffn_layer="mlp",
    conv_inplane=64, n_points=4, deform_num_heads=16, init_values=1e-6, with_cffn=True,
    cffn_ratio=0.25, deform_ratio=0.5, add_vit_feature=True, use_extra_extractor=True,
    interaction_indexes=((0, 5), (6, 11), (12, 17), (18, 23)),
)
# Official ``get_adapter_args('vitb')`` (ViT-B: 768 / 12 / 12).
VITB_ADAPTER_KWARGS: Dict[str, object] = dict(
    VITL_ADAPTER_KWARGS, embed_dim=768, depth=12, num_heads=12, deform_num_heads=12,
    interaction_indexes=((0, 2), (3, 5), (6, 8), (9, 11)),
)


def vitl_adapter_kwargs(**overrides) -> Dict[str, object]:
    """Constructor kwargs of the official DVIS++ "vitl" ViT-Adapter (DINOv2 ViT-L/16 @ 592)."""
    return {**VITL_ADAPTER_KWARGS, **overrides}


def vitb_adapter_kwargs(**overrides) -> Dict[str, object]:
    """Constructor kwargs of the official DVIS++ "vitb" ViT-Adapter (DINOv2 ViT-B/16 @ 592)."""
    return {**VITB_ADAPTER_KWARGS, **overrides}


def _reference_points(shapes: Sequence[Tuple[int, int]], device, dtype) -> Tensor:
    """Pixel-centre reference points (1, sum h*w, 1, 2), (x, y) normalised to [0, 1], row-major."""
    refs = []
    for h, w in shapes:
        # arange + 0.5 == linspace(0.5, h - 0.5, h) exactly, and keeps h symbolic under torch.export (ONNX)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device) + 0.5,
                                torch.arange(w, dtype=torch.float32, device=device) + 0.5, indexing="ij")
        refs.append(torch.stack((xs.reshape(-1) / w, ys.reshape(-1) / h), -1))
    return torch.cat(refs, 0)[None, :, None].to(dtype)


class DWConv(nn.Module):
    """Depth-wise 3x3 conv applied separately to the stride-8/16/32 parts of the adapter tokens.

    The official code splits the N tokens as 16n | 4n | n with n = N // 21, which for H, W
    multiples of 32 is exactly (2h*2w) | (h*w) | (h/2*w/2) for the stride-16 grid (h, w).
    Key: ``dwconv``.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        B, N, C = x.shape
        n = N // 21
        parts = ((x[:, :16 * n], 2 * h, 2 * w), (x[:, 16 * n:20 * n], h, w), (x[:, 20 * n:], h // 2, w // 2))
        return torch.cat([self.dwconv(p.transpose(1, 2).reshape(B, C, ph, pw)).flatten(2).transpose(1, 2)
                          for p, ph, pw in parts], dim=1)


class ConvFFN(nn.Module):
    """fc1 -> DWConv -> GELU -> fc2 on the adapter tokens."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Extractor(nn.Module):
    """Adapter tokens attend (1-level deformable attention) to the ViT tokens, then a ConvFFN.

    c = c + attn(query_norm(c), feat_norm(x)); c = c + ffn(ffn_norm(c)). Drop-path is 0 in DVIS++
    (the ViT's drop_path_rate), so it is omitted.
    """

    def __init__(self, dim: int, num_heads: int = 6, n_points: int = 4, deform_ratio: float = 1.0,
                 with_cffn: bool = True, cffn_ratio: float = 0.25, with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        # deform_ratio is passed but ignored by the official MSDeformAttn (value_proj is dim x dim).
        self.attn = MSDeformAttn(d_model=dim, n_levels=1, n_heads=num_heads, n_points=n_points, ratio=deform_ratio)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
            self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)

    def _inner(self, query: Tensor, feat: Tensor, reference_points: Tensor, spatial_shapes: SpatialShapes,
               level_start_index: Tensor, h: int, w: int) -> Tensor:
        query = query + self.attn(self.query_norm(query), reference_points, self.feat_norm(feat),
                                  spatial_shapes, level_start_index, None)
        if self.with_cffn:
            query = query + self.ffn(self.ffn_norm(query), h, w)
        return query

    def forward(self, query: Tensor, reference_points: Tensor, feat: Tensor, spatial_shapes: SpatialShapes,
                level_start_index: Tensor, h: int, w: int) -> Tensor:
        """query (B, 21n, D) adapter tokens; feat (B, h*w, D) ViT patch tokens; returns updated query."""
        args = (reference_points, spatial_shapes, level_start_index, h, w)
        if self.with_cp and query.requires_grad:
            return cp.checkpoint(self._inner, query, feat, *args, use_reentrant=False)
        return self._inner(query, feat, *args)


class InteractionBlock(nn.Module):
    """Official ``InteractionBlockWithCls_Efficient``: ViT blocks, then extractor(s); no injector."""

    def __init__(self, dim: int, num_heads: int = 6, n_points: int = 4, with_cffn: bool = True,
                 cffn_ratio: float = 0.25, deform_ratio: float = 1.0, extra_extractor: bool = False,
                 with_cp: bool = False):
        super().__init__()
        kw = dict(num_heads=num_heads, n_points=n_points, deform_ratio=deform_ratio, with_cffn=with_cffn,
                  cffn_ratio=cffn_ratio, with_cp=with_cp)
        self.extractor = Extractor(dim, **kw)
        self.extra_extractors = nn.Sequential(*[Extractor(dim, **kw) for _ in range(2)]) if extra_extractor else None

    def forward(self, x: Tensor, c: Tensor, cls: Tensor, blocks: Sequence[nn.Module], deform_inputs: list,
                h: int, w: int, run_blocks_grad: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
        """x (B, h*w, D) patch tokens, c (B, 21n, D) adapter tokens, cls (B, 1, D) -> updated (x, c, cls)."""
        with torch.set_grad_enabled(run_blocks_grad and torch.is_grad_enabled()):
            t = torch.cat((cls, x), dim=1)
            for blk in blocks:
                t = blk(t)
            cls, x = t[:, :1], t[:, 1:]
        c = self.extractor(c, deform_inputs[0], x, deform_inputs[1], deform_inputs[2], h, w)
        if self.extra_extractors is not None:
            for ex in self.extra_extractors:
                c = ex(c, deform_inputs[0], x, deform_inputs[1], deform_inputs[2], h, w)
        return x, c, cls


def _conv_bn_relu(cin: int, cout: int, stride: int) -> List[nn.Module]:
    # Officially nn.SyncBatchNorm: identical keys/eval math as BatchNorm2d, which also runs on CPU.
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SpatialPriorModule(ImplChoices, nn.Module):
    """Conv stem giving c1 (stride 4, map) and c2/c3/c4 (strides 8/16/32, as token sequences). ``stem_fp32``: its
    first conv + norm + ReLU (the one that reads the image) run in fp32 under autocast (:mod:`dvis_sdk.layers.impl`)."""

    impl_choices = ("stem_fp32",)

    def __init__(self, inplanes: int = 64, embed_dim: int = 384, stem_fp32: bool = True):
        super().__init__()
        self.stem_fp32 = check_choice("stem_fp32", stem_fp32)
        self.stem = nn.Sequential(*_conv_bn_relu(3, inplanes, 2), *_conv_bn_relu(inplanes, inplanes, 1),
                                  *_conv_bn_relu(inplanes, inplanes, 1), nn.MaxPool2d(3, 2, 1))
        self.conv2 = nn.Sequential(*_conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def _first_layer(self, x: Tensor) -> Tensor:
        return self.stem[2](self.stem[1](self.stem[0](x)))

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (B, 3, H, W) -> c1 (B, D, H/4, W/4), c2/c3/c4 (B, L_s, D) for s = 8, 16, 32."""
        c1 = fp32_under_autocast(self._first_layer, x, self.stem_fp32, self.stem[0].weight.dtype)
        for layer in self.stem[3:]:
            c1 = layer(c1)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return (self.fc1(c1), self.fc2(c2).flatten(2).transpose(1, 2), self.fc3(c3).flatten(2).transpose(1, 2),
                self.fc4(c4).flatten(2).transpose(1, 2))


class ViTAdapter(nn.Module):
    """DVIS++ ViT-Adapter backbone over a (frozen) DINOv2 ViT; official ``D2VitAdapterDinoV2``.

    forward(x: (N, 3, H, W), H and W multiples of 32) -> ``{"res2", "res3", "res4", "res5"}``, each
    (N, embed_dim, H/s, W/s) for s = 4, 8, 16, 32:
    res2 = norm1(up(c2) + c1 + 4x-bilinear(vit out 1)), res3 = norm2(c2 + 2x(vit out 2)),
    res4 = norm3(c3 + vit out 3), res5 = norm4(c4 + 0.5x(vit out 4)).

    ``init_values`` is the (unused, injector-only) adapter init value of the official signature;
    ``layer_scale_init_values`` is the DINOv2 layer-scale init. ``freeze_vit`` (official FREEZE_VIT)
    freezes the ViT and runs it without autograd, except the blocks of the interactions listed in
    ``finetune_indexes`` when ``finetune`` (official FINETUNE / FINETUNE_INDEXES).
    """

    out_features = ("res2", "res3", "res4", "res5")
    size_divisibility = 32

    def __init__(
        self,
        img_size: int = 592,
        patch_size: int = 16,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        layer_scale_init_values: Optional[float] = 1e-5,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        ffn_layer: str = "mlp",
        conv_inplane: int = 64,
        n_points: int = 4,
        deform_num_heads: int = 16,
        init_values: float = 1e-6,
        with_cffn: bool = True,
        cffn_ratio: float = 0.25,
        deform_ratio: float = 0.5,
        add_vit_feature: bool = True,
        use_extra_extractor: bool = True,
        interaction_indexes: Sequence[Sequence[int]] = ((0, 5), (6, 11), (12, 17), (18, 23)),
        freeze_vit: bool = True,
        finetune: bool = False,
        finetune_indexes: Sequence[int] = (0,),
        with_cp: bool = False,
        stem_fp32: bool = True,
    ):
        super().__init__()
        if any(i[0] < 0 or i[-1] >= depth or i[0] > i[-1] for i in interaction_indexes):
            raise ValueError(f"interaction_indexes {interaction_indexes} do not fit depth {depth}")
        self.interaction_indexes = [tuple(int(v) for v in i) for i in interaction_indexes]
        self.add_vit_feature = add_vit_feature
        self.init_values = init_values  # kept for signature parity: it only initialised the removed injectors
        self.embed_dim = embed_dim

        # Registration order follows the official module (vit_module last).
        self.level_embed = nn.Parameter(torch.zeros(3, embed_dim))
        self.spm = SpatialPriorModule(conv_inplane, embed_dim, stem_fp32=stem_fp32)
        n = len(self.interaction_indexes)
        self.interactions = nn.Sequential(*[
            InteractionBlock(embed_dim, deform_num_heads, n_points, with_cffn, cffn_ratio, deform_ratio,
                             extra_extractor=use_extra_extractor and i == n - 1, with_cp=with_cp)
            for i in range(n)])
        self.up = nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2)
        self.norm1 = nn.BatchNorm2d(embed_dim)
        self.norm2 = nn.BatchNorm2d(embed_dim)
        self.norm3 = nn.BatchNorm2d(embed_dim)
        self.norm4 = nn.BatchNorm2d(embed_dim)
        self._init_adapter_weights()

        self.vit_module = DinoVisionTransformer(img_size, patch_size, 3, embed_dim, depth, num_heads, mlp_ratio,
                                                qkv_bias, proj_bias, ffn_bias, layer_scale_init_values, ffn_layer,
                                                stem_fp32=stem_fp32)
        self.freeze_vit = freeze_vit
        self.finetune = finetune
        self.finetune_indexes = tuple(finetune_indexes)
        if freeze_vit:
            self.vit_module.requires_grad_(False)
            if finetune:
                for idx in self.finetune_indexes:
                    a, b = self.interaction_indexes[idx][0], self.interaction_indexes[idx][-1]
                    self.vit_module.blocks[a:b + 1].requires_grad_(True)

        self.out_channels = {k: embed_dim for k in self.out_features}
        self.out_strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}

    def _init_adapter_weights(self) -> None:
        # Official init (only matters for training from scratch; checkpoints overwrite it).
        for m in [*self.spm.modules(), *self.interactions.modules(), self.up]:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    def train(self, mode: bool = True) -> "ViTAdapter":
        super().train(mode)
        if self.freeze_vit:
            # Official forward calls vit_module.eval() (then re-enables the fine-tuned blocks).
            self.vit_module.eval()
            if self.finetune and mode:
                for idx in self.finetune_indexes:
                    a, b = self.interaction_indexes[idx][0], self.interaction_indexes[idx][-1]
                    self.vit_module.blocks[a:b + 1].train()
        return self

    def load_dinov2_weights(self, state_dict: Dict[str, Tensor]) -> None:
        """Load a raw DINOv2 checkpoint (patch 14) into ``vit_module`` the way the official loader does
        (patch kernel resized to ``patch_size`` with bilinear, align_corners=True; strict)."""
        self.vit_module.load_state_dict(convert_dinov2_state_dict(state_dict, self.vit_module.patch_size))

    def _vit_grad(self, i: int) -> bool:
        return not self.freeze_vit or (self.finetune and i in self.finetune_indexes)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x (N, 3, H, W) normalised RGB, H, W multiples of 32 -> dict res2..res5 (N, D, H/s, W/s)."""
        if x.dim() != 4:
            raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
        B, _, H, W = x.shape
        if H % 32 or W % 32:
            raise ValueError(f"input size {(H, W)} must be a multiple of 32")
        h, w = H // 16, W // 16

        # Extractor inputs: adapter tokens (strides 8/16/32) query the single stride-16 ViT level.
        # the level sizes as Python ints (as the pixel decoder passes them): a device tensor would be read back
        # to the host by every deformable-attention call (6 syncs per window, each a torch.compile graph break)
        spatial_shapes = ((h, w),)
        level_start_index = torch.zeros((1,), dtype=torch.long, device=x.device)
        ref = _reference_points([(H // 8, W // 8), (h, w), (H // 32, W // 32)], x.device, x.dtype)
        deform_inputs = [ref, spatial_shapes, level_start_index]

        c1, c2, c3, c4 = self.spm(x)
        c2, c3, c4 = c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]
        n2, n3 = c2.shape[1], c3.shape[1]
        c = torch.cat([c2, c3, c4], dim=1)

        with torch.set_grad_enabled(self._vit_grad(-1) and torch.is_grad_enabled()):
            tokens, gh, gw = self.vit_module.prepare_tokens(x)
        cls, t = tokens[:, :1], tokens[:, 1:]
        dim = t.shape[-1]

        outs = []
        blocks = self.vit_module.blocks
        for i, layer in enumerate(self.interactions):
            a, b = self.interaction_indexes[i][0], self.interaction_indexes[i][-1]
            t, c, cls = layer(t, c, cls, blocks[a:b + 1], deform_inputs, gh, gw, run_blocks_grad=self._vit_grad(i))
            outs.append(t.transpose(1, 2).reshape(B, dim, gh, gw))

        c2 = c[:, :n2].transpose(1, 2).reshape(B, dim, 2 * gh, 2 * gw)
        c3 = c[:, n2:n2 + n3].transpose(1, 2).reshape(B, dim, gh, gw)
        c4 = c[:, n2 + n3:].transpose(1, 2).reshape(B, dim, gh // 2, gw // 2)
        c1 = self.up(c2) + c1

        if self.add_vit_feature:
            x1, x2, x3, x4 = outs
            # scale_factor (not size=) as in the official code
            c1 = c1 + F.interpolate(x1, scale_factor=4, mode="bilinear", align_corners=False)
            c2 = c2 + F.interpolate(x2, scale_factor=2, mode="bilinear", align_corners=False)
            c3 = c3 + x3
            c4 = c4 + F.interpolate(x4, scale_factor=0.5, mode="bilinear", align_corners=False)

        return {"res2": self.norm1(c1), "res3": self.norm2(c2), "res4": self.norm3(c3), "res5": self.norm4(c4)}
