"""The official VIS post-processing (``inference_video_vis``), as a pure function."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VISOutput", "class_scores", "select_topk", "upsample_masks", "postprocess_vis"]


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


def upsample_masks(mask_logits: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                   output_size: Tuple[int, int], frame_chunk: int = 16) -> Tensor:
    """(K, T, h, w) mask logits at stride 4 -> (K, T, H_out, W_out) bool, as the official code: bilinear to the
    padded input size, crop the padding, bilinear to the output size, > 0. Done in chunks of frames so the
    float intermediates stay small on long videos (the result is identical)."""
    k, t = mask_logits.shape[:2]
    out = torch.empty((k, t) + tuple(output_size), dtype=torch.bool, device=mask_logits.device)
    for s in range(0, t, frame_chunk):
        m = mask_logits[:, s:s + frame_chunk].float()
        m = F.interpolate(m, size=padded_size, mode="bilinear", align_corners=False)
        m = m[:, :, : image_size[0], : image_size[1]]
        if tuple(image_size) != tuple(output_size):
            m = F.interpolate(m, size=output_size, mode="bilinear", align_corners=False)
        out[:, s:s + frame_chunk] = m > 0
    return out


def postprocess_vis(pred_cls: Tensor, pred_masks: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int], max_num: int, aux_pred_cls: Optional[Tensor] = None,
                    pred_ids: Optional[Tensor] = None) -> VISOutput:
    """Official ``inference_video_vis``: pred_cls (Q, C+1), pred_masks (Q, T, h, w) logits."""
    scores, labels, query = select_topk(pred_cls, max_num, aux_pred_cls)
    ids = query if pred_ids is None else pred_ids[query]
    masks = upsample_masks(pred_masks[query.to(pred_masks.device)], padded_size, image_size, output_size)
    return VISOutput(scores=scores, labels=labels, ids=ids, masks=masks)
