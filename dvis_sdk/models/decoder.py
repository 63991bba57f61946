"""Segmenter decoder: the per-frame masked-attention transformer decoder of DVIS / DVIS++.

Reimplements ``VideoMultiScaleMaskedTransformerDecoder_dvisPlus`` (DVIS++,
``dvis_Plus/video_mask2former_transformer_decoder.py``) and ``VideoMultiScaleMaskedTransformerDecoder_dvis``
(original DVIS, ``dvis/video_mask2former_transformer_decoder.py``). Both subclass Mask2Former-VIS's
``VideoMultiScaleMaskedTransformerDecoder`` but run it frame by frame: every frame is an independent
batch element with a 2-D sine position embedding, so nothing here mixes information across time. The
time axis only appears when the outputs are re-arranged to the official ``(b, t, ...)`` layouts.

State-dict keys are the official ones (relative to ``sem_seg_head.predictor.``): ``query_feat``,
``query_embed``, ``level_embed``, ``input_proj.i`` (absent when ``in_channels == hidden_dim`` and the
projection is not enforced), ``transformer_{self,cross}_attention_layers.i``, ``transformer_ffn_layers.i``,
``decoder_norm``, ``class_embed``, ``mask_embed.layers.i`` and, DVIS++ only, ``reid_embed.layers.i``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import MLP, CrossAttentionLayer, FFNLayer, PositionEmbeddingSine, SelfAttentionLayer
from ..layers.impl import ImplChoices
from ..runtime import autocast_cast

__all__ = ["VideoMaskedAttentionDecoder"]

_VARIANTS = ("dvis++", "dvis")


def _c2_xavier_fill(module: nn.Module) -> None:
    """detectron2 / fvcore ``c2_xavier_fill`` (what the official code uses for input_proj and reid_embed)."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


class VideoMaskedAttentionDecoder(ImplChoices, nn.Module):
    """Mask2Former masked-attention decoder applied per frame, with the DVIS / DVIS++ output heads.

    Args:
        in_channels: channels of the multi-scale pixel-decoder features (cfg ``SEM_SEG_HEAD.CONVS_DIM``).
        hidden_dim: query width (cfg ``MASK_FORMER.HIDDEN_DIM``).
        num_queries: number of object queries.
        nheads: attention heads.
        dim_feedforward: FFN width.
        dec_layers: number of decoder layers actually BUILT. The official ``from_config`` passes
            ``cfg.MODEL.MASK_FORMER.DEC_LAYERS - 1`` (the learnable initial queries count as one
            prediction stage), so a checkpoint trained with ``DEC_LAYERS: 10`` needs ``dec_layers=9``.
        pre_norm: must be False (every official DVIS / DVIS++ config; the shared layers are post-norm).
        mask_dim: channels of the mask features (cfg ``SEM_SEG_HEAD.MASK_DIM``).
        enforce_input_project: build 1x1 input projections even when ``in_channels == hidden_dim``.
        num_classes: number of classes (the class head has ``num_classes + 1`` outputs, last = no object).
        variant: ``"dvis++"`` (adds the re-id head and ``pred_embds_without_norm``) or ``"dvis"``.
        num_reid_head_layers: layers of the DVIS++ re-id MLP (0: identity, no keys). Ignored for ``"dvis"``.
        reid_hidden_dim: hidden width of the re-id MLP. Ignored for ``"dvis"``.
        num_feature_levels: number of multi-scale inputs (always 3 in the official code).
        sdpa: the ``sdpa`` fast path (:mod:`dvis_sdk.layers.impl`) for the decoder and its attention layers.
    """

    impl_choices = ("sdpa",)

    def __init__(
        self,
        in_channels: int,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dim_feedforward: int,
        dec_layers: int,
        pre_norm: bool = False,
        *,
        mask_dim: int,
        enforce_input_project: bool = False,
        num_classes: int,
        variant: str = "dvis++",
        num_reid_head_layers: int = 3,
        reid_hidden_dim: int = 256,
        num_feature_levels: int = 3,
        sdpa: bool = True,
    ):
        super().__init__()
        self.sdpa = sdpa
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        if pre_norm:
            # No official DVIS / DVIS++ config uses PRE_NORM; the shared attention layers are post-norm only.
            raise NotImplementedError("pre_norm=True is not supported (no official DVIS/DVIS++ config uses it)")
        self.variant = variant
        self.hidden_dim = hidden_dim
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.num_queries = num_queries
        self.num_classes = num_classes
        self.mask_dim = mask_dim
        self.num_feature_levels = num_feature_levels

        # 2-D embedding per frame (the DVIS subclasses replace Mask2Former-VIS's 3-D one); no parameters.
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)

        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, sdpa=sdpa) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, sdpa=sdpa) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(num_feature_levels, hidden_dim)

        # An empty nn.Sequential is an identity with no state-dict keys, which is what official checkpoints
        # with CONVS_DIM == HIDDEN_DIM hold; detectron2's Conv2d without norm/activation is a plain Conv2d.
        self.input_proj = nn.ModuleList()
        for _ in range(num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                conv = nn.Conv2d(in_channels, hidden_dim, kernel_size=1)
                _c2_xavier_fill(conv)
                self.input_proj.append(conv)
            else:
                self.input_proj.append(nn.Sequential())

        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

        if variant == "dvis++":
            if num_reid_head_layers > 0:
                self.reid_embed = MLP(hidden_dim, reid_hidden_dim, hidden_dim, num_reid_head_layers)
                for layer in self.reid_embed.layers:
                    _c2_xavier_fill(layer)
            else:
                self.reid_embed = nn.Identity()

    def forward_prediction_heads(self, output: Tensor, mask_features: Tensor, attn_mask_target_size: Tuple[int, int],
                                 per_head: bool = True) -> Tuple[Tensor, Tensor, Tensor]:
        """Class logits (N, Q, C+1), mask logits (N, Q, H, W) and the boolean attention mask
        (N*nheads, Q, h*w) for the next cross-attention (True = may NOT attend), N = B*T frames.
        ``per_head=False`` returns the mask as (N, 1, Q, h*w) instead (no per-head copy; the SDPA path)."""
        decoder_output = self.decoder_norm(output).transpose(0, 1)  # (N, Q, C)
        outputs_class = self.class_embed(decoder_output)
        mask_embed = self.mask_embed(decoder_output)
        outputs_mask = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)

        # Masked attention: the mask predicted at stride 4 is resized to the next level's size; the official
        # code thresholds sigmoid(.) < 0.5 (kept literally rather than "< 0" so ties behave the same) and
        # repeats it per head in MultiheadAttention's (batch*heads) order.
        attn_mask = F.interpolate(outputs_mask, size=attn_mask_target_size, mode="bilinear", align_corners=False)
        attn_mask = attn_mask.sigmoid().flatten(2) < 0.5  # (N, Q, hw)
        attn_mask = attn_mask.unsqueeze(1)
        if per_head:
            attn_mask = attn_mask.expand(-1, self.num_heads, -1, -1).flatten(0, 1)
        return outputs_class, outputs_mask, attn_mask.detach()

    def forward(self, x: List[Tensor], mask_features: Tensor, num_frames: Optional[int] = None) -> Dict[str, object]:
        """Run the decoder on B*T frames.

        Args:
            x: ``num_feature_levels`` tensors (B*T, in_channels, h_i, w_i), coarsest first (stride 32, 16, 8).
            mask_features: (B*T, mask_dim, H, W) per-pixel embeddings (stride 4).
            num_frames: frames per video T; None (the official eval behaviour) = all frames are one video, B=1.

        Returns:
            dict with
              ``pred_logits`` (B, T, Q, num_classes+1), ``pred_masks`` (B, Q, T, H, W) of the last layer;
              ``aux_outputs``: list of ``dec_layers`` dicts {``pred_logits``, ``pred_masks``} (same layouts) for
              the initial queries and after layers 1..dec_layers-1;
              ``pred_embds`` (B, E, T, Q): ``dvis``: decoder_norm(q), E = hidden;
              ``dvis++``: cat(decoder_norm(q), reid_embed(decoder_norm(q))), E = 2*hidden;
              ``pred_embds_without_norm`` (dvis++ only) (B, 2*hidden, T, Q): cat(q, reid_embed(decoder_norm(q)));
              ``pred_reid_embed`` (dvis++ only) (B, hidden, T, Q);
              ``mask_features``: the input mask features, returned unchanged (B*T, mask_dim, H, W) as the
              official code does.
        """
        if len(x) != self.num_feature_levels:
            raise ValueError(f"expected {self.num_feature_levels} feature levels, got {len(x)}")
        bt = mask_features.shape[0]
        t = bt if num_frames is None else num_frames
        if bt % t != 0:
            raise ValueError(f"batch of {bt} frames is not a multiple of num_frames={t}")
        b = bt // t

        src: List[Tensor] = []
        pos: List[Tensor] = []
        size_list: List[Tuple[int, int]] = []
        for i in range(self.num_feature_levels):
            size_list.append(tuple(x[i].shape[-2:]))  # no int(): sizes stay symbolic under torch.export (ONNX)
            feat = self.input_proj[i](x[i])
            # The sine embedding is computed in fp32; follow the features' dtype (bf16 inference).
            pos.append(self.pe_layer(x[i]).to(feat.dtype).flatten(2).permute(2, 0, 1))  # (hw, N, C)
            src.append((feat.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1))

        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, bt, 1)  # (Q, N, C)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, bt, 1)

        predictions_class: List[Tensor] = []
        predictions_mask: List[Tensor] = []
        per_head = not self.sdpa
        # Under autocast the (fp32) mask features would be cast for each of the num_layers + 1 mask einsums;
        # casting once gives the same numbers.
        head_features = autocast_cast(mask_features)
        outputs_class, outputs_mask, attn_mask = self.forward_prediction_heads(output, head_features, size_list[0],
                                                                               per_head)
        predictions_class.append(outputs_class)
        predictions_mask.append(outputs_mask)

        for i in range(self.num_layers):
            level_index = i % self.num_feature_levels
            # A query whose predicted mask is empty at this level would attend to nothing (NaN): the official
            # code lets such rows attend everywhere.
            attn_mask = attn_mask & ~attn_mask.all(dim=-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](
                output, src[level_index], memory_mask=attn_mask, memory_key_padding_mask=None,
                pos=pos[level_index], query_pos=query_embed)
            output = self.transformer_self_attention_layers[i](
                output, tgt_mask=None, tgt_key_padding_mask=None, query_pos=query_embed)
            output = self.transformer_ffn_layers[i](output)

            outputs_class, outputs_mask, attn_mask = self.forward_prediction_heads(
                output, head_features, size_list[(i + 1) % self.num_feature_levels], per_head)
            predictions_class.append(outputs_class)
            predictions_mask.append(outputs_mask)

        # (b t) q h w -> b q t h w ; (b t) q c -> b t q c
        predictions_mask = [m.reshape(b, t, *m.shape[1:]).transpose(1, 2) for m in predictions_mask]
        predictions_class = [c.reshape(b, t, *c.shape[1:]) for c in predictions_class]

        def to_bctq(e: Tensor) -> Tensor:  # q (b t) c -> b c t q
            q, _, c = e.shape
            return e.reshape(q, b, t, c).permute(1, 3, 2, 0)

        normed = self.decoder_norm(output)
        out: Dict[str, object] = {
            "pred_logits": predictions_class[-1],
            "pred_masks": predictions_mask[-1],
            "aux_outputs": [{"pred_logits": c, "pred_masks": m}
                            for c, m in zip(predictions_class[:-1], predictions_mask[:-1])],
        }
        if self.variant == "dvis++":
            reid = to_bctq(self.reid_embed(normed))
            out["pred_embds"] = torch.cat([to_bctq(normed), reid], dim=1)
            out["pred_embds_without_norm"] = torch.cat([to_bctq(output), reid], dim=1)
            out["pred_reid_embed"] = reid
        else:
            out["pred_embds"] = to_bctq(normed)
        out["mask_features"] = mask_features
        return out
