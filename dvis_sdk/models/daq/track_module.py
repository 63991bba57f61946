"""The DVIS-DAQ track module (``dvis_daq/track_module.py::VideoInstanceCutter``), inference only.

Same state-dict keys as the official module (``tracker.*`` in a full checkpoint). Per frame:

* first frame of a video (no state): the Q segmenter queries go through the layers (cross-attention to
  themselves, self-attention, FFN; no positions); a query starts a sequence iff the SEGMENTER scored it above
  the AUX threshold (``valid``);
* later frames: queries = cat(track queries, ``num_new_ins`` copies of ``new_ins_embeds``), positions =
  cat(the sequences' fused position embeddings, the segmenter queries' mask-pooled position embeddings);
  keys = the segmenter queries with the same position embeddings. A slot branch, initialised from the
  segmenter's ``query_feat`` rows matched to cat(track queries, ``bg_slots``), scores whether each track query
  is still foreground. A track query is kept iff its score > ``inference_select_threshold`` and (``ovis_infer``)
  its slot score > ``dis_fg_threshold``; a new-instance query starts a sequence iff its score > the threshold.
  A dropped track query keeps being tracked (and stores its frame) until it was dropped ``kick_out`` times in
  a row; then its sequence is dead.

Position embedding of a mask: ``pos_embed`` MLP of the mean of the UN-projected mask features under
``sigmoid(mask) > 0.5``; predictions use the projected (``mask_feature_proj``) features.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ...layers.attention import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from .slot_attention import SlotCrossAttentionLayer
from .state import DAQSequence, DAQTrackState

__all__ = ["DAQTrackModule", "mask_pooled", "match_slots"]


def mask_pooled(masks: Tensor, features: Tensor) -> Tensor:
    """(Q, h, w) mask logits, (C, h, w) features -> (Q, C) mean feature under ``sigmoid(mask) > 0.5``
    (``sum / (area + 1e-8)``: an empty mask gives zeros)."""
    m = (masks.sigmoid() > 0.5).to(features.dtype)
    total = torch.einsum("qhw,chw->qc", m, features)
    return total / (m.flatten(1).sum(-1, keepdim=True) + 1e-8)


def match_slots(rows: Tensor, seg_query_feat: Tensor) -> Tensor:
    """Official ``match_with_embeds``: for each row of (R, C) the index of a segmenter ``query_feat`` row (Q, C).

    Hungarian on ``1 - cos`` (norms + 1e-6); rows the assignment leaves out (R > Q) keep their argmin."""
    a = rows.detach().float()
    b = seg_query_feat.detach().float()
    a = a / (a.norm(dim=1, keepdim=True) + 1e-6)
    b = b / (b.norm(dim=1, keepdim=True) + 1e-6)
    cost = 1 - a @ b.t()
    idx = cost.argmin(dim=1)
    r, c = linear_sum_assignment(cost.cpu().numpy())
    idx[torch.as_tensor(r, dtype=torch.long, device=idx.device)] = torch.as_tensor(
        c.astype(np.int64), device=idx.device)
    return idx


def _score(logits: Tensor) -> Tensor:
    """Best foreground probability per row of (n, K+1) logits."""
    return logits.softmax(-1)[:, :-1].max(-1)[0]


class DAQTrackModule(nn.Module):
    """DVIS-DAQ track module with explicit state (see the module docstring).

    Args:
        hidden_dim: query width C (the official ``MASK_FORMER.HIDDEN_DIM``; also the mask feature width).
        feedforward_dim, num_head, decoder_layer_num: layer sizes (``DIM_FEEDFORWARD``, ``NHEADS``,
            ``TRACKER.DECODER_LAYERS``).
        mask_dim: mask feature channels (must equal ``hidden_dim`` in the official models).
        num_classes: K (the class head has K+1 outputs).
        num_new_ins: new-instance queries per frame (``VIDEO_HEAD.NUM_NEW_INS``; must equal the segmenter's
            number of queries, as each takes the position of one segmenter query).
        num_slots: background slots (``VIDEO_HEAD.NUM_SLOTS``).
        inference_select_threshold, dis_fg_threshold: the keep thresholds.
        ovis_infer: also require the slot score for track queries (``VIDEO_HEAD.OVIS_INFER``).
        kick_out: drops in a row after which a sequence dies (official constructor default 8, no cfg key).
    """

    def __init__(self, hidden_dim: int, feedforward_dim: int, num_head: int, decoder_layer_num: int, mask_dim: int,
                 num_classes: int, num_new_ins: int, num_slots: int = 5, inference_select_threshold: float = 0.1,
                 dis_fg_threshold: float = 0.01, ovis_infer: bool = True, kick_out: int = 8):
        super().__init__()
        C = hidden_dim
        self.hidden_dim = C
        self.num_layers = decoder_layer_num
        self.num_new_ins = num_new_ins
        self.num_slots = num_slots
        self.inference_select_threshold = inference_select_threshold
        self.dis_fg_threshold = dis_fg_threshold
        self.ovis_infer = ovis_infer
        self.kick_out = kick_out
        n = decoder_layer_num
        self.transformer_self_attention_layers = nn.ModuleList(SelfAttentionLayer(C, num_head) for _ in range(n))
        self.transformer_cross_attention_layers = nn.ModuleList(CrossAttentionLayer(C, num_head) for _ in range(n))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(C, feedforward_dim) for _ in range(n))
        self.slot_cross_attention_layers = nn.ModuleList(SlotCrossAttentionLayer(C, num_head) for _ in range(n))
        self.slot_ffn_layers = nn.ModuleList(FFNLayer(C, feedforward_dim) for _ in range(n))
        self.decoder_norm = nn.LayerNorm(C)
        self.class_embed = nn.Linear(C, num_classes + 1)
        self.pos_embed = MLP(mask_dim, C, C, 3)
        self.mask_embed = MLP(C, C, mask_dim, 3)
        self.mask_feature_proj = nn.Conv2d(mask_dim, mask_dim, kernel_size=1)
        self.new_ins_embeds = nn.Embedding(1, C)
        self.bg_slots = nn.Embedding(num_slots, C)

    # ------------------------------------------------------------------ pieces
    def position(self, masks: Tensor, features: Tensor) -> Tensor:
        """(Q, h, w) mask logits, (C, h, w) UN-projected mask features -> (Q, C) position embeddings."""
        return self.pos_embed(mask_pooled(masks, features))

    def _layers(self, queries: Tensor, memory: Tensor, query_pos: Optional[Tensor],
                pos: Optional[Tensor]) -> List[Tensor]:
        outs = [queries]
        x = queries
        for j in range(self.num_layers):
            x = self.transformer_cross_attention_layers[j](x, memory, pos=pos, query_pos=query_pos)
            x = self.transformer_self_attention_layers[j](x)
            x = self.transformer_ffn_layers[j](x)
            outs.append(x)
        return outs

    def _slots(self, track_queries: Tensor, track_pos: Tensor, memory: Tensor,
               seg_query_feat: Tensor) -> Tuple[Tensor, Tensor]:
        """Slot branch: (n_track + S, 1, C) last slot layer output and the matched ``query_feat`` rows."""
        bg = self.bg_slots.weight.unsqueeze(1)
        slot_pos = torch.cat([track_queries, bg], 0)
        match = match_slots(slot_pos[:, 0], seg_query_feat)
        slots = seg_query_feat[match].unsqueeze(1)
        slot_query = torch.cat([track_pos, bg], 0)
        for j in range(self.num_layers):
            slots = self.slot_cross_attention_layers[j](slots, memory, slot_query, query_pos=slot_pos)
            slots = self.slot_ffn_layers[j](slots)
        return slots, match

    # ------------------------------------------------------------------ one frame
    def step(self, frame_embeds: Tensor, features: Tensor, proj_features: Tensor, seg_masks: Tensor,
             valid: Tensor, seg_query_feat: Tensor, state: Optional[DAQTrackState],
             ) -> Tuple[DAQTrackState, Dict[str, Tensor]]:
        """Track one frame.

        Args:
            frame_embeds: (Q, C) segmenter ``pred_embds`` (decoder_norm(q)) of the frame.
            features / proj_features: (C, h, w) mask features as given / through ``mask_feature_proj``.
            seg_masks: (Q, h, w) segmenter mask logits; valid: (Q,) bool segmenter score > AUX threshold.
            seg_query_feat: (Q, C) the segmenter's ``query_feat.weight``.
            state: None on the first frame of a video.
        Returns:
            the new state and the frame's record (tensors as laid out in fixture ``15_track_module_daq``).
        """
        memory = frame_embeds.unsqueeze(1)  # (Q, 1, C)
        rec: Dict[str, Tensor] = {}
        first = state is None
        if first:
            state = DAQTrackState()
            outs = self._layers(memory, memory, None, None)
            n_track = 0
        else:
            frame_pos = self.position(seg_masks, features).unsqueeze(1)
            tq = state.track_queries(self.hidden_dim, memory)
            tp = state.track_pos(self.hidden_dim, memory)
            n_track = tq.shape[0]
            new = self.new_ins_embeds.weight.unsqueeze(1).expand(self.num_new_ins, 1, -1)
            outs = self._layers(torch.cat([tq, new], 0), memory, torch.cat([tp, frame_pos], 0), frame_pos)
            slots, match = self._slots(tq, tp, memory, seg_query_feat)
            slot_logits = self.class_embed(self.decoder_norm(slots[:, 0]))
            rec.update(frame_queries_pos=frame_pos[:, 0], slot_embeds=slots[:, 0], slot_logits=slot_logits,
                       slot_match=match)
        ms = torch.stack(outs, 0)[:, :, 0]  # (L+1, n, C)
        normed = self.decoder_norm(ms)
        logits = self.class_embed(normed)
        masks = torch.einsum("qc,chw->qhw", self.mask_embed(normed[-1]), proj_features)
        track_pos = self.position(masks, features)
        if first:
            keep = valid.to(torch.bool)
        else:
            scores = _score(logits[-1])
            keep = scores > self.inference_select_threshold
            if self.ovis_infer and n_track:
                keep[:n_track] &= _score(slot_logits[:n_track]) > self.dis_fg_threshold
        state, seq, killed = self._bookkeep(state, keep, n_track, ms[-1], logits[-1], masks, track_pos)
        rec.update(ms_embeds=ms, ms_logits=logits, ms_masks=masks, track_pos=track_pos, valid=keep, seq=seq,
                   killed=killed, n_track=torch.tensor([n_track]))
        return state, rec

    def _bookkeep(self, state: DAQTrackState, keep: Tensor, n_track: int, embeds: Tensor, logits: Tensor,
                  masks: Tensor, track_pos: Tensor) -> Tuple[DAQTrackState, Tensor, Tensor]:
        seqs = list(state.sequences)
        frame = state.num_frames
        tracked: List[int] = []
        n = keep.shape[0]
        seq_of = torch.full((n,), -1, dtype=torch.long)
        killed = torch.zeros(n, dtype=torch.bool)
        for k, kept in enumerate(keep.tolist()):
            if k < n_track:
                i = state.tracked[k]
            elif kept:
                i = len(seqs)
                seqs.append(DAQSequence(start=frame))
            else:
                continue  # a dropped new-instance query vanishes
            s = seqs[i]
            if not kept:
                if s.misses + 1 >= self.kick_out:
                    seqs[i] = dataclasses.replace(s, misses=s.misses + 1, dead=True)
                    killed[k] = True
                    seq_of[k] = i
                    continue
                s = s.store(embeds[k], logits[k], masks[k], False)
                s = dataclasses.replace(s, misses=s.misses + 1)
            else:
                s = s.store(embeds[k], logits[k], masks[k], True).update_pos(track_pos[k])
            seqs[i] = s
            seq_of[k] = i
            tracked.append(i)
        return DAQTrackState(tuple(seqs), tuple(tracked), frame + 1), seq_of, killed

    # ------------------------------------------------------------------ a window
    def forward(self, frame_embeds: Tensor, mask_features: Tensor, seg_masks: Tensor, valid: Tensor,
                seg_query_feat: Tensor, state: Optional[DAQTrackState] = None, return_records: bool = False,
                ) -> Tuple[DAQTrackState, List[Dict[str, Tensor]]]:
        """Track a window of frames (the official ``inference``; ``state=None`` == ``resume=False``).

        Args:
            frame_embeds: (1, C, T, Q) segmenter ``pred_embds``.
            mask_features: (1, T, C, h, w) segmenter mask features (not projected).
            seg_masks: (T, Q, h, w) segmenter mask logits.
            valid: (T, Q) bool segmenter score > AUX threshold (read on the first frame of a video only).
            seg_query_feat: (Q, C) the segmenter's ``query_feat.weight``.
            state: the previous window's state, or None to start a video.
            return_records: also return one record per frame (for tests and debugging).
        """
        if frame_embeds.shape[0] != 1 or mask_features.shape[0] != 1:
            raise ValueError("the DAQ track module runs one video at a time (batch size 1), as the official code")
        if frame_embeds.shape[-1] != self.num_new_ins and (state is not None or frame_embeds.shape[2] > 1):
            raise ValueError(f"the segmenter has {frame_embeds.shape[-1]} queries but the track module "
                             f"num_new_ins={self.num_new_ins}; DAQ needs them equal (VIDEO_HEAD.NUM_NEW_INS)")
        feats = mask_features[0]
        proj = self.mask_feature_proj(feats)
        records = []
        for t in range(frame_embeds.shape[2]):
            state, rec = self.step(frame_embeds[0, :, t].t(), feats[t], proj[t], seg_masks[t], valid[t],
                                   seg_query_feat, state)
            if return_records:
                records.append(rec)
        return state, records
