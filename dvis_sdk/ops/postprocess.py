"""The official VIS post-processing (``inference_video_vis``), as a pure function."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VISOutput", "class_scores", "select_topk", "upsample_logits", "upsample_masks", "postprocess_vis"]


@dataclass
class VISOutput:
    """Top-k instances of one video. ``masks`` (K, T, H, W) bool at the output size; ``ids`` query indices."""

    scores: Tensor
    labels: Tensor
    ids: Tensor
    masks: Tensor


def class_scores(pred_cls: Tensor, aux_pred_cls: Optional[Tensor] = None) -> Tensor:
    """(Q, C) class scores of (Q, C+1) time-averaged logits: the softmax without the no-object class; with the
    offline tracker's ``aux_pred_cls``, the larger of both softmaxes. What ``predict`` ranks and ``stream`` reports."""
    scores = F.softmax(pred_cls.float(), dim=-1)[:, :-1]
    if aux_pred_cls is not None:
        scores = torch.maximum(scores, F.softmax(aux_pred_cls.float(), dim=-1)[:, :-1])
    # non-finite logits (a half-precision overflow) give NaN probabilities: such a query scores 0 (ranked last)
    # instead of writing NaN into results; finite logits are unchanged
    return torch.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)


def select_topk(pred_cls: Tensor, max_num: int, aux_pred_cls: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
    """Scores over queries x classes (:func:`class_scores`) and the official top-k.

    pred_cls: (Q, C+1) time-averaged logits; aux_pred_cls (offline): the tracker's, scores = max of both softmaxes.
    Returns (scores (K,), labels (K,), query indices (K,)), in ``topk(sorted=False)`` order.
    """
    scores = class_scores(pred_cls, aux_pred_cls)
    num_classes = scores.shape[1]
    k = min(max_num, scores.numel())
    top_scores, top_idx = scores.flatten().topk(k, sorted=False)
    return top_scores, top_idx % num_classes, torch.div(top_idx, num_classes, rounding_mode="floor")


# PyTorch's CPU bilinear resize (align_corners=False, no antialias) takes its per-pixel kernel for a 1-channel
# input whenever the output height + width is at least this; below it, every channel count takes the
# channels-last kernel, whose rounding depends on a channel's position in the vector lanes (aten
# UpSampleKernel.cpp, ``_use_vectorized_kernel_cond_2d``)
_PER_PIXEL_MIN_HW = 129


def _bilinear(m: Tensor, size: Tuple[int, int]) -> Tensor:
    """Bilinear resize (align_corners=False) of (K, t, h, w) maps. On a CPU above the small-size threshold, one map
    per channel: the per-pixel kernel, which the official whole-video call (t = the video length) takes too, except
    on one thread with exactly 3 channels, where a window or chunk of 3 frames got the 2-2.5x slower channels-last
    kernel, rounding differently. Below the threshold the official values depend on a frame's position in the
    video; the caller's (K, 16-frame chunk) layout reproduces them (16 is a multiple of the vector width): kept.
    GPU kernels compute each pixel alike for any channel count: left as they are."""
    if m.device.type != "cpu" or size[0] + size[1] < _PER_PIXEL_MIN_HW:
        return F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    k, t = m.shape[:2]
    flat = m.reshape((k * t, 1) + tuple(m.shape[2:]))
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).view((k, t) + tuple(size))


def upsample_logits(mask_logits: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int]) -> Tensor:
    """(K, t, h, w) mask logits at stride 4 -> (K, t, H_out, W_out) float32 logits, as the official code: bilinear to
    the padded input size, crop the padding, bilinear to the output size; the official whole-video call's values
    whatever the chunking, window size and thread count (see :func:`_bilinear`)."""
    m = _bilinear(mask_logits.float(), tuple(padded_size))
    m = m[:, :, : image_size[0], : image_size[1]]
    if tuple(image_size) != tuple(output_size):
        m = _bilinear(m, tuple(output_size))
    return m


def upsample_masks(mask_logits: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                   output_size: Tuple[int, int], frame_chunk: int = 16) -> Tensor:
    """(K, T, h, w) mask logits at stride 4 -> (K, T, H_out, W_out) bool: :func:`upsample_logits` > 0, as the
    official code. Done in chunks of frames so the float intermediates stay small on long videos (the result does
    not depend on the chunk size, except below the small-size threshold of :func:`_bilinear`, where chunks of a
    multiple of 8 frames keep it)."""
    k, t = mask_logits.shape[:2]
    out = torch.empty((k, t) + tuple(output_size), dtype=torch.bool, device=mask_logits.device)
    for s in range(0, t, frame_chunk):
        out[:, s:s + frame_chunk] = upsample_logits(mask_logits[:, s:s + frame_chunk], padded_size, image_size,
                                                    output_size) > 0
    return out


def postprocess_vis(pred_cls: Tensor, pred_masks: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int], max_num: int, aux_pred_cls: Optional[Tensor] = None,
                    pred_ids: Optional[Tensor] = None) -> VISOutput:
    """Official ``inference_video_vis``: pred_cls (Q, C+1), pred_masks (Q, T, h, w) logits."""
    scores, labels, query = select_topk(pred_cls, max_num, aux_pred_cls)
    ids = query if pred_ids is None else pred_ids[query]
    masks = upsample_masks(pred_masks[query.to(pred_masks.device)], padded_size, image_size, output_size)
    return VISOutput(scores=scores, labels=labels, ids=ids, masks=masks)
