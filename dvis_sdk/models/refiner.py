"""Offline temporal refiner of DVIS / DVIS++ (``TemporalRefiner``).

Same computation and state-dict keys as ``dvis_Plus/refiner.py::TemporalRefiner`` (DVIS++) and
``dvis/video_dvis_modules.py::TemporalRefiner`` (original DVIS); the two only differ in that DVIS++
predicts masks/logits for the last layer only at inference, which is what ``forward`` does unless
``return_aux`` is asked for.

Per layer, on instance queries laid out as (b, C, T, Q):
  1. long-range self-attention over time (sequence T, batch b*Q), no positional embedding;
  2. short-range temporal conv: LayerNorm(Conv1d(k5) -> ReLU -> Conv1d(k3) + x), both convs
     'same' length with replicate padding (so any T >= 1 works);
  3. self-attention over objects (sequence Q, batch b*T);
  4. cross-attention, per frame, from the Q instance queries to the Q ``frame_embeds`` of the same
     frame (sequence Q, batch b*T), no positional embedding, no key padding;
  5. FFN.
Heads: ``decoder_norm`` -> ``mask_embed`` (3-layer MLP) dotted with the mask features; one class
score per query from the softmax-over-time (``activation_proj``) weighted mean of the normed queries,
repeated over T.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..layers.attention import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer

IndexLike = Union[Tensor, Sequence[int], slice, None]


class TemporalRefiner(nn.Module):
    """DVIS / DVIS++ temporal refiner.

    Args:
        hidden_channel: query width C.
        feedforward_channel: FFN hidden width.
        num_head: attention heads.
        decoder_layer_num: number of refiner layers.
        mask_dim: channels of the mask features.
        class_num: number of classes (the class head has ``class_num + 1`` outputs).
        windows: frames per chunk when computing masks (bounds memory only; results don't depend on it).
        local_conv: build and run step 2 (the short temporal conv). DVIS-DAQ's refiner has it only with
            ``VIDEO_HEAD.USE_LOCAL_ATTN`` (its checkpoints then lack the conv keys); DVIS / DVIS++ always.
    """

    def __init__(self, hidden_channel: int, feedforward_channel: int, num_head: int, decoder_layer_num: int,
                 mask_dim: int, class_num: int, windows: int = 5, local_conv: bool = True):
        super().__init__()
        self.windows = int(windows)
        self.num_heads = num_head
        self.num_layers = decoder_layer_num
        C = hidden_channel
        self.transformer_obj_self_attention_layers = nn.ModuleList()
        self.transformer_time_self_attention_layers = nn.ModuleList()
        self.transformer_cross_attention_layers = nn.ModuleList()
        self.transformer_ffn_layers = nn.ModuleList()
        self.conv_short_aggregate_layers = nn.ModuleList()
        self.conv_norms = nn.ModuleList()
        for _ in range(decoder_layer_num):
            self.transformer_time_self_attention_layers.append(SelfAttentionLayer(C, num_head))
            if local_conv:
                # Sequential indices 0 / 2 are the checkpoint's key names (index 1 is the ReLU).
                self.conv_short_aggregate_layers.append(nn.Sequential(
                    nn.Conv1d(C, C, kernel_size=5, stride=1, padding="same", padding_mode="replicate"),
                    nn.ReLU(),
                    nn.Conv1d(C, C, kernel_size=3, stride=1, padding="same", padding_mode="replicate"),
                ))
                self.conv_norms.append(nn.LayerNorm(C))
            self.transformer_obj_self_attention_layers.append(SelfAttentionLayer(C, num_head))
            self.transformer_cross_attention_layers.append(CrossAttentionLayer(C, num_head))
            self.transformer_ffn_layers.append(FFNLayer(C, feedforward_channel))
        self.decoder_norm = nn.LayerNorm(C)
        self.class_embed = nn.Linear(C, class_num + 1)
        self.mask_embed = MLP(C, C, mask_dim, 3)
        self.activation_proj = nn.Linear(C, 1)

    # ------------------------------------------------------------------ trunk
    def _run_layers(self, instance_embeds: Tensor, frame_embeds: Tensor, all_layers: bool) -> List[Tensor]:
        """Refiner layers. Returns the raw (pre ``decoder_norm``) outputs, each (b, T, Q, C); only the last
        one unless ``all_layers``."""
        b, C, T, Q = instance_embeds.shape
        # frame queries as memory: (Qf, b*T, C), batch index = b-major then t (matches the official flatten)
        memory = frame_embeds.permute(3, 0, 2, 1).flatten(1, 2)
        x = instance_embeds.permute(3, 0, 2, 1)  # (Q, b, T, C)
        outs: List[Tensor] = []
        for i in range(self.num_layers):
            # long temporal attention: sequence T, batch (b, Q)
            x = x.permute(2, 1, 0, 3).reshape(T, b * Q, C)
            x = self.transformer_time_self_attention_layers[i](x)
            # short temporal conv over T with the residual inside the LayerNorm
            y = x.permute(1, 2, 0)  # (bQ, C, T)
            if len(self.conv_short_aggregate_layers):
                y = self.conv_norms[i]((self.conv_short_aggregate_layers[i](y) + y).transpose(1, 2))  # (bQ, T, C)
            else:
                y = y.transpose(1, 2)
            x = y.reshape(b, Q, T, C).transpose(0, 1).reshape(Q, b * T, C)
            # objects self-attention and per-frame cross-attention: sequence Q, batch (b, T)
            x = self.transformer_obj_self_attention_layers[i](x)
            x = self.transformer_cross_attention_layers[i](x, memory)
            x = self.transformer_ffn_layers[i](x)
            x = x.reshape(Q, b, T, C)
            if all_layers or i == self.num_layers - 1:
                outs.append(x.permute(1, 2, 0, 3))  # (b, T, Q, C)
        return outs

    def _pred_class(self, normed: Tensor) -> Tensor:
        """(b, T, Q, C) normed queries -> (b, T, Q, c+1): one fused score per query, repeated over T."""
        T = normed.shape[1]
        # softmax over TIME of a scalar activation per (frame, query)
        act = self.activation_proj(normed).softmax(dim=1)
        fused = (normed * act).sum(dim=1, keepdim=True)  # (b, 1, Q, C)
        return self.class_embed(fused).repeat(1, T, 1, 1)

    # ------------------------------------------------------------------ public API
    def refine(self, instance_embeds: Tensor, frame_embeds: Tensor) -> Dict[str, Tensor]:
        """Class logits and refined embeddings only (no masks).

        Args:
            instance_embeds: (b, C, T, Q) tracker ``pred_embds``.
            frame_embeds: (b, C, T, Q) per-frame queries (DVIS++: segmenter ``pred_embds_without_norm``;
                DVIS: ``tracker.frame_forward`` output).
        Returns:
            ``pred_logits`` (b, T, Q, c+1) and ``pred_embds`` (b, C, T, Q) = decoder_norm(last layer).
            Masks for any subset of queries/frames follow from :meth:`predict_masks`.
        """
        normed = self.decoder_norm(self._run_layers(instance_embeds, frame_embeds, all_layers=False)[-1])
        return {"pred_logits": self._pred_class(normed), "pred_embds": normed.permute(0, 3, 1, 2)}

    def predict_masks(self, pred_embds: Tensor, mask_features: Tensor, query_indices: IndexLike = None,
                      frame_indices: IndexLike = None, windows: Optional[int] = None,
                      output_device: Optional[Union[str, torch.device]] = None) -> Tensor:
        """Mask logits from refined (already ``decoder_norm``-ed) embeddings, in temporal chunks.

        Args:
            pred_embds: (b, C, T, Q) as returned by :meth:`refine` / :meth:`forward`.
            mask_features: (b, T, mask_dim, h, w), frames aligned with ``pred_embds``. May live on another
                device (e.g. CPU for long videos): each chunk is moved to ``pred_embds``' device.
            query_indices: queries to keep: 1-D (Q',) shared by the batch, 2-D (b, Q') per batch element,
                a list or a slice; None = all.
            frame_indices: frames to keep (1-D indices, list or slice) applied to both inputs; None = all.
            windows: frames per chunk (default ``self.windows``).
            output_device: where each chunk's masks are put (e.g. "cpu" to bound accelerator memory);
                default: ``pred_embds``' device.
        Returns:
            (b, Q', T', h, w) mask logits in the compute dtype.
        """
        emb = pred_embds.permute(0, 2, 3, 1)  # (b, T, Q, C)
        if frame_indices is not None:
            if not isinstance(frame_indices, slice):
                frame_indices = torch.as_tensor(frame_indices, dtype=torch.long)
                emb = emb[:, frame_indices.to(emb.device)]
                mask_features = mask_features[:, frame_indices.to(mask_features.device)]
            else:
                emb = emb[:, frame_indices]
                mask_features = mask_features[:, frame_indices]
        if query_indices is not None:
            if isinstance(query_indices, slice):
                emb = emb[:, :, query_indices]
            else:
                qi = torch.as_tensor(query_indices, dtype=torch.long, device=emb.device)
                if qi.dim() == 1:
                    emb = emb[:, :, qi]
                else:  # per batch element
                    idx = qi[:, None, :, None].expand(-1, emb.shape[1], -1, emb.shape[3])
                    emb = torch.gather(emb, 2, idx)
        if emb.shape[1] != mask_features.shape[1]:
            raise ValueError(f"pred_embds has {emb.shape[1]} frames but mask_features {mask_features.shape[1]}")
        w = int(windows or self.windows)
        chunks = []
        for s in range(0, emb.shape[1], w):
            m_emb = self.mask_embed(emb[:, s:s + w])  # (b, t, Q', mask_dim)
            feats = mask_features[:, s:s + w].to(device=m_emb.device, dtype=m_emb.dtype)
            m = torch.einsum("btqc,btchw->bqthw", m_emb, feats)
            chunks.append(m if output_device is None else m.to(output_device))
        return torch.cat(chunks, dim=2)

    def forward(self, instance_embeds: Tensor, frame_embeds: Tensor, mask_features: Tensor,
                return_aux: bool = False) -> Dict[str, object]:
        """Full refiner.

        Args:
            instance_embeds: (b, C, T, Q) tracker ``pred_embds`` (last layer, before its decoder_norm).
            frame_embeds: (b, C, T, Q) per-frame queries.
            mask_features: (b, T, mask_dim, h, w).
            return_aux: also return the intermediate layers' predictions (training losses).
        Returns:
            dict with ``pred_logits`` (b, T, Q, c+1) (identical for every t), ``pred_masks`` (b, Q, T, h, w),
            ``pred_embds`` (b, C, T, Q) = decoder_norm(last layer output), and with ``return_aux``
            ``aux_outputs``: list over layers 0..L-2 of {``pred_logits``, ``pred_masks``}.
        """
        raw = self._run_layers(instance_embeds, frame_embeds, all_layers=return_aux)
        preds = []
        for r in raw:
            normed = self.decoder_norm(r)
            emb = normed.permute(0, 3, 1, 2)  # (b, C, T, Q)
            preds.append((self._pred_class(normed), self.predict_masks(emb, mask_features), emb))
        logits, masks, embds = preds[-1]
        out: Dict[str, object] = {"pred_logits": logits, "pred_masks": masks, "pred_embds": embds}
        if return_aux:
            out["aux_outputs"] = [{"pred_logits": lg, "pred_masks": mk} for lg, mk, _ in preds[:-1]]
        return out
