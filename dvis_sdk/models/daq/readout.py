"""From the DAQ track state to what the post-processing / refiner receive (official ``run_window_inference`` /
``common_inference`` of ``DVIS_DAQ_online`` / ``DVIS_DAQ_offline``), as pure functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .state import DAQTrackState, output_rows, sequence_logits, sequence_masks, sequence_padding


@dataclass
class OnlineRows:
    """One row per output sequence (creation order).

    ``logits`` (n, K+1) time-mean of the stored logits; ``masks`` (n, T, h, w) stored mask logits, -1e4 elsewhere
    (None when not asked for); ``padding`` (n, T) True where nothing is stored; ``seq_index`` (n,) creation index.
    """

    logits: Tensor
    masks: Optional[Tensor]
    padding: Tensor
    seq_index: Tensor


def online_rows(state: DAQTrackState, num_frames: int, noise_frame_num: int, num_classes: int,
                mask_size: tuple, with_masks: bool = True, video_start: int = 0) -> OnlineRows:
    """The official online read-out of the sequences of a clip of ``num_frames`` frames."""
    idx = output_rows(state, num_frames, noise_frame_num, video_start)
    seqs = [state.sequences[i] for i in idx]
    if not seqs:
        return OnlineRows(torch.zeros(0, num_classes + 1), torch.zeros((0, num_frames) + tuple(mask_size))
                          if with_masks else None, torch.zeros(0, num_frames, dtype=torch.bool),
                          torch.zeros(0, dtype=torch.long))
    logits = torch.stack([sequence_logits(s, video_start) for s in seqs])
    masks = torch.stack([sequence_masks(s, num_frames, video_start) for s in seqs]) if with_masks else None
    padding = torch.stack([sequence_padding(s, num_frames, video_start) for s in seqs])
    return OnlineRows(logits, masks, padding, torch.tensor(idx, dtype=torch.long))


def minvis_link(pred_logits: Tensor, pred_embds: Tensor) -> Dict[str, Tensor]:
    """Naive MinVIS linking of the segmenter queries (official ``minvis_post_processing``).

    pred_logits (T, Q, K+1), pred_embds (T, Q, C). Each frame's queries are aligned to the previous aligned frame
    by Hungarian matching on ``1 - cos`` (norms WITHOUT the +1e-6 the trackers use). Returns ``logits`` (Q, K+1)
    time mean, ``embeds`` (Q, T, C) and ``indices`` (T, Q) (row t: the frame-t query of each linked row).
    """
    T, Q = pred_logits.shape[:2]
    order = [torch.arange(Q)]
    ref = pred_embds[0]
    for t in range(1, T):
        cur = pred_embds[t]
        a = cur / cur.norm(dim=1)[:, None]
        b = ref / ref.norm(dim=1)[:, None]
        cost = (1 - a @ b.t()).detach().float().cpu().numpy()
        idx = torch.as_tensor(linear_sum_assignment(cost.T)[1].astype(np.int64))
        order.append(idx)
        ref = cur[idx.to(cur.device)]
    indices = torch.stack(order)  # (T, Q)
    dev = pred_logits.device
    logits = sum(pred_logits[t][indices[t].to(dev)] for t in range(T)) / T
    embeds = torch.stack([pred_embds[t][indices[t].to(pred_embds.device)] for t in range(T)], dim=1)
    return {"logits": logits, "embeds": embeds, "indices": indices}


def _score(logits: Tensor) -> Tensor:
    return F.softmax(logits, dim=-1)[:, :-1].max(-1)[0]


def offline_selection(state: DAQTrackState, rows: OnlineRows, num_frames: int, topk: int, num_rows: int,
                      seg_logits: Tensor, seg_embds: Tensor, video_start: int = 0) -> Dict[str, Tensor]:
    """Rows the DAQ refiner receives (official ``common_inference``).

    The sequences' rows, cut to the ``topk`` best by score (``topk(sorted=False)``) when there are more; then,
    while fewer than ``num_rows`` (``NUM_NEW_INS``), the best rows of the naive MinVIS linking of the segmenter
    (seg_logits (T, Q, K+1), seg_embds (T, Q, C)). Per row the refiner input (T, C) is the stored track embeddings
    on the stored frames and the sequence's fused position embedding elsewhere; naive rows: the linked segmenter
    embeddings. Returns ``instance_embeds`` (1, C, T, n), ``online_logits`` (1, n, K+1), ``padding_masks``
    (1, n, T) and ``seq_index`` (n,) (>= 0: sequence creation index; -j: the j-th naive row).
    """
    logits, seq_index, padding = rows.logits, rows.seq_index, rows.padding
    if topk < logits.shape[0]:
        sel = _score(logits).topk(topk, sorted=False)[1]
        logits, seq_index, padding = logits[sel], seq_index[sel.cpu()], padding[sel.cpu()]
    embeds = []
    for i in seq_index.tolist():
        s = state.sequences[i]
        front = max(0, s.start - video_start)
        stored = torch.stack(s.embeds[max(0, video_start - s.start):], 0)[: num_frames - front]
        tail = num_frames - front - stored.shape[0]
        embeds.append(torch.cat([s.guided_pos[None].expand(front, -1), stored,
                                 s.guided_pos[None].expand(tail, -1)], 0))
    C = seg_embds.shape[-1]
    embeds_t = torch.stack(embeds) if embeds else seg_embds.new_zeros((0, num_frames, C))
    left = num_rows - logits.shape[0]
    if left > 0:
        naive = minvis_link(seg_logits, seg_embds)
        pick = _score(naive["logits"]).topk(left, sorted=False)[1]
        logits = torch.cat([logits.to(naive["logits"]), naive["logits"][pick]], 0)
        embeds_t = torch.cat([embeds_t.to(naive["embeds"]), naive["embeds"][pick]], 0)
        padding = torch.cat([padding, torch.zeros(left, num_frames, dtype=torch.bool)], 0)
        seq_index = torch.cat([seq_index, -torch.arange(1, left + 1)])
    return {"instance_embeds": embeds_t.permute(2, 1, 0).unsqueeze(0), "online_logits": logits.unsqueeze(0),
            "padding_masks": padding.unsqueeze(0), "seq_index": seq_index}
