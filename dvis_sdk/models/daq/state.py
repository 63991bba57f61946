"""Explicit memory of the DVIS-DAQ track module: the instance sequences and which of them are tracked.

The official ``VideoInstanceCutter`` keeps this on the module (``video_ins_hub``, ``last_seq_ids``,
``track_queries``, ``track_embeds``) and mutates it frame by frame. Here it is an immutable value that
:meth:`DAQTrackModule.forward` takes and returns, so one module serves any number of videos and a window
loop can carry it from call to call (``state=None`` == the official ``resume=False``).

Sequences are identified by their creation index (the official random ids never reach the output; only
their creation order does).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

#: the official ``VideoInstanceSequence.maximum_chache``: the fused position embedding compares a new one
#: with at most the previous ``POS_CACHE - 1`` stored ones.
POS_CACHE = 10


def _own(x: Tensor) -> Tensor:
    """``x`` in storage of its own. The track module hands over rows of whole-frame tensors (``masks[k]`` of the
    frame's (n, h, w) masks); a stored view would keep the whole frame tensor alive for the rest of the video."""
    return x if x.untyped_storage().nbytes() == x.numel() * x.element_size() else x.clone()


@dataclass(frozen=True)
class DAQSequence:
    """One instance sequence (the official ``VideoInstanceSequence``).

    Attributes:
        start: video frame index of its first stored frame; stored frames are contiguous from there.
        embeds: per stored frame, the last track layer's output (C,), before ``decoder_norm``.
        logits: per stored frame, the class logits (K+1,).
        masks: per stored frame, the mask logits (h, w).
        appearance: per stored frame, True if the query was kept, False if it was dropped but still tracked.
        pos_embeds: the raw position embeddings of the kept frames (only the last ``POS_CACHE`` are kept).
        guided_pos: the similarity-guided (fused) position embedding (C,): the track query's position input.
        misses: frames dropped in a row.
        dead: dropped ``kick_out`` times in a row; no longer tracked.
    """

    start: int
    embeds: Tuple[Tensor, ...] = ()
    logits: Tuple[Tensor, ...] = ()
    masks: Tuple[Tensor, ...] = ()
    appearance: Tuple[bool, ...] = ()
    pos_embeds: Tuple[Tensor, ...] = ()
    guided_pos: Optional[Tensor] = None
    misses: int = 0
    dead: bool = False

    @property
    def num_stored(self) -> int:
        return len(self.logits)

    def store(self, embed: Tensor, logits: Tensor, mask: Tensor, kept: bool) -> "DAQSequence":
        """Append one frame (copies: see :func:`_own`); a kept frame also resets the miss counter."""
        return dataclasses.replace(self, embeds=self.embeds + (_own(embed),), logits=self.logits + (_own(logits),),
                                   masks=self.masks + (_own(mask),), appearance=self.appearance + (kept,),
                                   misses=0 if kept else self.misses)

    def update_pos(self, pos: Tensor) -> "DAQSequence":
        """Similarity-guided fusion (``update_pos``): ``new = (1 - b) * old + b * pos`` with ``b`` the clamped
        mean cosine of ``pos`` with the previous (at most ``POS_CACHE - 1``) raw position embeddings."""
        pos = _own(pos)
        cache = (self.pos_embeds + (pos,))[-POS_CACHE:]
        if self.guided_pos is None:
            return dataclasses.replace(self, pos_embeds=cache, guided_pos=pos)
        prev = torch.stack(cache[:-1], dim=0)
        sim = torch.sum(F.normalize(prev, dim=-1) @ F.normalize(pos, dim=-1)) / prev.shape[0]
        beta = sim.clamp_min(0)  # a 0-d tensor, as the official max(0, similarity)
        return dataclasses.replace(self, pos_embeds=cache, guided_pos=(1 - beta) * self.guided_pos + beta * pos)


@dataclass(frozen=True)
class DAQTrackState:
    """Memory of one video.

    Attributes:
        sequences: every sequence of the video, in creation order (dead ones included: they are output).
        tracked: indices into ``sequences`` of the sequences whose query is tracked, in query order.
        num_frames: frames processed so far (the index of the next frame).
    """

    sequences: Tuple[DAQSequence, ...] = ()
    tracked: Tuple[int, ...] = ()
    num_frames: int = 0

    def track_queries(self, dim: int, like: Tensor) -> Tensor:
        """(n_track, 1, C) last stored embedding of every tracked sequence."""
        if not self.tracked:
            return like.new_zeros((0, 1, dim))
        return torch.stack([self.sequences[i].embeds[-1] for i in self.tracked], 0).unsqueeze(1)

    def track_pos(self, dim: int, like: Tensor) -> Tensor:
        """(n_track, 1, C) fused position embedding of every tracked sequence."""
        if not self.tracked:
            return like.new_zeros((0, 1, dim))
        return torch.stack([self.sequences[i].guided_pos for i in self.tracked], 0).unsqueeze(1)


def output_rows(state: DAQTrackState, num_frames: int, noise_frame_num: int, video_start: int = 0) -> List[int]:
    """Indices of the sequences the official read-out turns into output rows, in creation order.

    A sequence with fewer than ``noise_frame_num`` stored frames is dropped as noise unless it reaches the last
    frame (it may continue in a later clip); ``num_frames`` is the number of frames of this clip.
    """
    rows = []
    for i, seq in enumerate(state.sequences):
        if seq.num_stored < noise_frame_num and seq.start + seq.num_stored < video_start + num_frames:
            continue
        if seq.start + seq.num_stored <= video_start:
            continue  # nothing stored inside this clip
        rows.append(i)
    return rows


def sequence_logits(seq: DAQSequence, video_start: int = 0) -> Tensor:
    """(K+1,) mean of the class logits the sequence stored inside the clip starting at ``video_start``."""
    skip = max(0, video_start - seq.start)
    return torch.stack(seq.logits[skip:], 0).mean(0)


def sequence_masks(seq: DAQSequence, num_frames: int, video_start: int = 0, fill: float = -1e4) -> Tensor:
    """(T, h, w) the stored mask logits on their frames of the clip, ``fill`` elsewhere."""
    h, w = seq.masks[0].shape
    out = seq.masks[0].new_full((num_frames, h, w), fill, dtype=torch.float32)
    for j, m in enumerate(seq.masks):
        t = seq.start + j - video_start
        if 0 <= t < num_frames:
            out[t] = m
    return out


def sequence_padding(seq: DAQSequence, num_frames: int, video_start: int = 0) -> Tensor:
    """(T,) bool: True on the frames of the clip where the sequence stored nothing."""
    pad = torch.ones(num_frames, dtype=torch.bool)
    lo = max(0, seq.start - video_start)
    hi = min(num_frames, seq.start + seq.num_stored - video_start)
    pad[lo:hi] = False
    return pad
