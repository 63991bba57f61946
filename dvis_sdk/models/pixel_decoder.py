"""Mask2Former's multi-scale deformable-attention pixel decoder (``MSDeformAttnPixelDecoder``), pure PyTorch.

State-dict keys are those of the official
``mask2former/modeling/pixel_decoder/msdeformattn.py::MSDeformAttnPixelDecoder`` (inside a full
DVIS / DVIS++ checkpoint they carry the prefix ``sem_seg_head.pixel_decoder.``):

* ``input_proj.{i}.0`` (1x1 conv) / ``input_proj.{i}.1`` (GroupNorm(32)), i = 0 is the COARSEST level;
* ``transformer.level_embed`` and ``transformer.encoder.layers.{j}.{self_attn,norm1,linear1,linear2,norm2}``;
* ``mask_features`` (1x1 conv with bias);
* ``adapter_{k}`` / ``layer_{k}``: the extra FPN levels, detectron2 ``Conv2d`` with a ``norm`` child.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers.conv import Conv2d, get_norm
from ..layers.impl import ImplChoices
from ..layers.ms_deform_attn import MSDeformAttn
from ..layers.position_encoding import PositionEmbeddingSine

__all__ = [
    "MSDeformAttnPixelDecoder",
    "MSDeformAttnTransformerEncoderOnly",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnTransformerEncoderLayer",
]


def _c2_xavier_fill(module: nn.Conv2d) -> None:
    """fvcore's ``c2_xavier_fill`` (Caffe2 XavierFill): kaiming-uniform with a=1, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Post-norm deformable self-attention + ReLU FFN (Deformable DETR encoder layer)."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1, n_levels: int = 4,
                 n_heads: int = 8, n_points: int = 4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: Tensor, pos: Optional[Tensor], reference_points: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """src, pos: (N, sum H_l*W_l, C); reference_points (N, sum H_l*W_l, n_levels, 2)."""
        query = src if pos is None else src + pos
        src = self.norm1(src + self.dropout1(
            self.self_attn(query, reference_points, src, spatial_shapes, level_start_index, padding_mask)))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


class MSDeformAttnTransformerEncoder(nn.Module):
    """A stack of ``num_layers`` independent copies of ``encoder_layer`` (keys ``layers.{j}.*``)."""

    def __init__(self, encoder_layer: MSDeformAttnTransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers

    @staticmethod
    def get_reference_points(spatial_shapes: Tensor, valid_ratios: Tensor, device: torch.device) -> Tensor:
        """Pixel centres of every level, normalised to [0, 1]: (N, sum H_l*W_l, n_levels, 2) as (x, y).

        Same arithmetic as the official (divide by valid_ratio*size, then multiply by valid_ratio)
        so that the fp32 values are bit-identical; at inference the ratios are all exactly 1.
        """
        refs = []
        for lvl, (h, w) in enumerate(spatial_shapes.tolist() if isinstance(spatial_shapes, Tensor) else spatial_shapes):
            # arange + 0.5 == linspace(0.5, h - 0.5, h) exactly (step 1.0), and keeps h symbolic under torch.export
            ref_y, ref_x = torch.meshgrid(
                torch.arange(h, dtype=torch.float32, device=device) + 0.5,
                torch.arange(w, dtype=torch.float32, device=device) + 0.5,
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), -1))
        reference_points = torch.cat(refs, 1)
        return reference_points[:, :, None] * valid_ratios[:, None]

    def forward(self, src: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, valid_ratios: Tensor,
                pos: Optional[Tensor] = None, padding_mask: Optional[Tensor] = None) -> Tensor:
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios, src.device).to(src.dtype)
        output = src
        for layer in self.layers:
            output = layer(output, pos, reference_points, spatial_shapes, level_start_index, padding_mask)
        return output


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Deformable-DETR encoder over flattened multi-level maps, with a learnt ``level_embed`` (n_levels, C)."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6, dim_feedforward: int = 1024,
                 dropout: float = 0.1, num_feature_levels: int = 4, enc_n_points: int = 4):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        layer = MSDeformAttnTransformerEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                                    enc_n_points)
        self.encoder = MSDeformAttnTransformerEncoder(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    @staticmethod
    def get_valid_ratio(mask: Tensor) -> Tensor:
        """(N, H, W) padding mask -> (N, 2) fraction of valid columns / rows, as (w, h)."""
        _, h, w = mask.shape
        valid_h = torch.sum(~mask[:, :, 0], 1)
        valid_w = torch.sum(~mask[:, 0, :], 1)
        return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)

    def forward(self, srcs: Sequence[Tensor], pos_embeds: Sequence[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """srcs / pos_embeds: per level (N, C, H_l, W_l), coarsest first.

        Returns (memory (N, sum H_l*W_l, C), spatial_shapes (n_levels, 2) int64, level_start_index (n_levels,)).
        """
        # The official builds all-False padding masks (no padding at this stage): valid ratios are 1
        # and masking the values is a no-op, so the masks only feed get_valid_ratio here.
        masks = [torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool) for x in srcs]
        src_flatten, pos_flatten, shapes = [], [], []
        for lvl, (src, pos) in enumerate(zip(srcs, pos_embeds)):
            shapes.append(src.shape[-2:])
            src_flatten.append(src.flatten(2).transpose(1, 2))
            pos_flatten.append(pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1))
        src_flat = torch.cat(src_flatten, 1)
        pos_flat = torch.cat(pos_flatten, 1)
        # built on the device from Python sizes: a host -> device copy of a list would synchronise the stream
        one = torch.ones((), dtype=torch.long, device=src_flat.device)
        spatial_shapes = torch.stack([torch.stack([one * h, one * w]) for h, w in shapes])
        level_start_index = torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))
        valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1)
        # the encoder gets the sizes as Python numbers: symbolic under torch.export, so ONNX graphs keep dynamic H, W
        memory = self.encoder(src_flat, [tuple(s) for s in shapes], level_start_index, valid_ratios, pos_flat, None)
        return memory, spatial_shapes, level_start_index


def _shape_spec(spec: Any) -> Tuple[int, int]:
    """(channels, stride) from a tuple, a mapping with those keys, or a detectron2-like ShapeSpec object."""
    if isinstance(spec, Mapping):
        return int(spec["channels"]), int(spec["stride"])
    if hasattr(spec, "channels") and hasattr(spec, "stride"):
        return int(spec.channels), int(spec.stride)
    channels, stride = spec
    return int(channels), int(stride)


class MSDeformAttnPixelDecoder(ImplChoices, nn.Module):
    """Mask2Former pixel decoder: deformable encoder on ``transformer_in_features`` + FPN up to ``common_stride``.

    Args:
        input_shape: feature name -> (channels, stride), e.g. ``{"res2": (256, 4), ..., "res5": (2048, 32)}``.
        conv_dim: channels of the encoder and of every output map (cfg SEM_SEG_HEAD.CONVS_DIM).
        mask_dim: channels of ``mask_features`` (cfg SEM_SEG_HEAD.MASK_DIM).
        norm: norm of the FPN convs ("GN" -> GroupNorm(32, conv_dim), "" -> none, then the convs have a bias).
        transformer_nheads: encoder heads (official: cfg MASK_FORMER.NHEADS, not the DEFORMABLE_* keys).
        transformer_dim_feedforward: encoder FFN width (official: hard-coded 1024 in ``from_config``).
        transformer_in_features: features fed to the encoder; n_points: deformable points (official: 4).
        pixel_decoder_fp32: run with autocast disabled, in fp32, as the official code (see
            :mod:`dvis_sdk.layers.impl`; ``False`` lets autocast reach the convolutions and linear layers).
    """

    impl_choices = ("pixel_decoder_fp32",)

    def __init__(
        self,
        input_shape: Dict[str, Tuple[int, int]],
        conv_dim: int,
        mask_dim: int,
        norm: str = "GN",
        transformer_dropout: float = 0.0,
        transformer_nheads: int = 8,
        transformer_dim_feedforward: int = 1024,
        transformer_enc_layers: int = 6,
        transformer_in_features: Sequence[str] = ("res3", "res4", "res5"),
        common_stride: int = 4,
        n_points: int = 4,
        pixel_decoder_fp32: bool = True,
    ):
        super().__init__()
        self.pixel_decoder_fp32 = pixel_decoder_fp32
        shapes = sorted(((k, _shape_spec(v)) for k, v in input_shape.items()), key=lambda kv: kv[1][1])
        self.in_features: List[str] = [k for k, _ in shapes]  # fine -> coarse ("res2" ... "res5")
        self.feature_strides: List[int] = [s for _, (_, s) in shapes]
        self.feature_channels: List[int] = [c for _, (c, _) in shapes]

        tr_shapes = [(k, cs) for k, cs in shapes if k in transformer_in_features]
        if not tr_shapes:
            raise ValueError(f"none of transformer_in_features {list(transformer_in_features)} is in input_shape")
        self.transformer_in_features: List[str] = [k for k, _ in tr_shapes]  # fine -> coarse
        tr_channels = [c for _, (c, _) in tr_shapes]
        self.transformer_feature_strides: List[int] = [s for _, (_, s) in tr_shapes]
        self.transformer_num_feature_levels = len(self.transformer_in_features)

        # Official quirk: the projections are listed coarse -> fine (input_proj.0 acts on res5). With
        # a single level the official projects the last (coarsest) one, which is the same thing.
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for c in tr_channels[::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            nhead=transformer_nheads,
            num_encoder_layers=transformer_enc_layers,
            dim_feedforward=transformer_dim_feedforward,
            dropout=transformer_dropout,
            num_feature_levels=self.transformer_num_feature_levels,
            enc_n_points=n_points,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1, stride=1, padding=0)
        _c2_xavier_fill(self.mask_features)

        self.maskformer_num_feature_levels = 3  # the official always hands 3 scales to the decoder
        self.common_stride = common_stride
        stride = min(self.transformer_feature_strides)
        self.num_fpn_levels = int(math.log2(stride) - math.log2(common_stride))

        use_bias = norm == ""
        lateral_convs, output_convs = [], []
        for idx, in_channels in enumerate(self.feature_channels[: self.num_fpn_levels]):
            lateral_conv = Conv2d(in_channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim))
            output_conv = Conv2d(conv_dim, conv_dim, kernel_size=3, stride=1, padding=1, bias=use_bias,
                                 norm=get_norm(norm, conv_dim), activation=F.relu)
            _c2_xavier_fill(lateral_conv)
            _c2_xavier_fill(output_conv)
            # Registered under the official names; the lists below are plain (unregistered) views.
            self.add_module(f"adapter_{idx + 1}", lateral_conv)
            self.add_module(f"layer_{idx + 1}", output_conv)
            lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        # top-down order (coarse -> fine)
        self.lateral_convs: List[Conv2d] = lateral_convs[::-1]
        self.output_convs: List[Conv2d] = output_convs[::-1]

    def forward_features(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """features: name -> (B, C, H/s, W/s) (for video, frames are the batch).

        Returns ``(mask_features, transformer_encoder_features, multi_scale_features)``:
        mask_features (B, mask_dim, H/common_stride, W/common_stride); transformer_encoder_features
        (B, conv_dim, H/32, W/32) (the coarsest encoder output, = multi_scale_features[0]);
        multi_scale_features: 3 maps (B, conv_dim, .) coarse -> fine (strides 32, 16, 8 for res3-res5).
        """
        # The official runs this under autocast(enabled=False) and casts the inputs to float32, the
        # dtype of its weights; casting to the parameter dtype is the same in fp32 and lets a module
        # cast to bf16 run in bf16. The choice pixel_decoder_fp32=False (opt-in) leaves autocast on
        # instead (the deformable sampling itself stays fp32 through the fp32_sampling switch).
        dtype = self.mask_features.weight.dtype
        device_type = self.mask_features.weight.device.type
        keep_fp32 = self.pixel_decoder_fp32
        with torch.autocast(device_type=device_type, enabled=False) if keep_fp32 else contextlib.nullcontext():
            srcs, pos = [], []
            for idx, name in enumerate(self.transformer_in_features[::-1]):  # coarse -> fine
                x = features[name].to(dtype)
                srcs.append(self.input_proj[idx](x))
                pos.append(self.pe_layer(x).to(dtype))

            memory, spatial_shapes, level_start_index = self.transformer(srcs, pos)
            bs = memory.shape[0]
            shapes = [tuple(s.shape[-2:]) for s in srcs]  # not spatial_shapes.tolist(): keeps export sizes symbolic
            out: List[Tensor] = []
            for z, (h, w) in zip(memory.split([h * w for h, w in shapes], dim=1), shapes):
                out.append(z.transpose(1, 2).reshape(bs, -1, h, w))

            # extra FPN levels, coarse -> fine
            for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
                cur_fpn = self.lateral_convs[idx](features[name].to(dtype))
                # Official quirk: bilinear here, although its comment says "nearest" (as in FPN).
                y = cur_fpn + F.interpolate(out[-1], size=cur_fpn.shape[-2:], mode="bilinear", align_corners=False)
                out.append(self.output_convs[idx](y))

            multi_scale_features = out[: self.maskformer_num_feature_levels]
            return self.mask_features(out[-1]), out[0], multi_scale_features

    def forward(self, features: Dict[str, Tensor]) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """Alias of :meth:`forward_features` (the official module only defines ``forward_features``)."""
        return self.forward_features(features)
