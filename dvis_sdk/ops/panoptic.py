"""The official video panoptic (``inference_video_vps``) and video semantic (``inference_video_vss``)
post-processing of DVIS / DVIS++ / DVIS-DAQ, as pure functions that also run frame by frame.

The official code up-samples every mask of the whole video at once and decides on the whole (T, H, W) volume;
here the same decisions are split so that a long video never needs that volume in memory:

* VPS pass 1 (:func:`vps_frame_counts`, per stretch of frames, summed): per kept query the pixels where it wins
  the score-weighted argmax, where its mask is >= 0.5, and where both hold;
* :func:`vps_segments` decides on the sums, exactly as the official loop (query order, overlap ratio, stuff
  merging, ids 1, 2, ...), and returns a lookup table query -> segment id;
* VPS pass 2 (:func:`vps_frame_ids`): the id map of any stretch of frames from the same argmax and the table.

Every per-pixel quantity depends only on its own frame (the up-sampling is per frame), so the stretches give the
official result bit for bit. :func:`postprocess_vps` / :func:`postprocess_vss` are the whole-video versions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Workspace", "VPSQueries", "vps_queries", "vss_class_probs", "mask_probs", "vps_frame_counts",
           "vps_segments", "vps_frame_ids", "vss_frame_classes", "postprocess_vps", "postprocess_vss"]


@dataclass
class VPSQueries:
    """The queries the VPS post-processing keeps: (K,) ``index`` into the Q queries, ``score``, ``label``."""

    index: Tensor
    score: Tensor
    label: Tensor

    def __len__(self) -> int:
        return int(self.index.numel())


def vps_queries(pred_cls: Tensor, object_mask_threshold: float, aux_pred_cls: Optional[Tensor] = None) -> VPSQueries:
    """Official query selection: softmax over all C+1 columns of the time-averaged logits (offline: the C class
    columns replaced by their max with the tracker's softmax), best column INCLUDING no-object; kept when that is a
    class and its probability is strictly above ``object_mask_threshold``."""
    probs = F.softmax(pred_cls.float(), dim=-1)
    if aux_pred_cls is not None:
        aux = F.softmax(aux_pred_cls.float(), dim=-1)[:, :-1]
        probs = torch.cat([torch.maximum(probs[:, :-1], aux), probs[:, -1:]], dim=1)
    scores, labels = probs.max(-1)
    keep = labels.ne(probs.shape[1] - 1) & (scores > object_mask_threshold)
    index = torch.nonzero(keep).flatten()
    return VPSQueries(index=index, score=scores[index], label=labels[index])


def vss_class_probs(pred_cls: Tensor, aux_pred_cls: Optional[Tensor] = None) -> Tensor:
    """(Q, C) class probabilities of the official VSS: softmax without no-object (offline: max with the
    tracker's)."""
    cls = F.softmax(pred_cls.float(), dim=-1)[:, :-1]
    if aux_pred_cls is not None:
        cls = torch.maximum(cls, F.softmax(aux_pred_cls.float(), dim=-1)[:, :-1])
    return cls


class Workspace:
    """Scratch buffers that :func:`mask_probs` writes into and reuses from one call to the next.

    A fresh full-size tensor per step costs as much as the resize itself (the pages are mapped and zeroed
    anew each time); with a workspace the memory is reused. What a call returned is overwritten by the next
    call with the same workspace. One per loop, never shared between threads."""

    def __init__(self) -> None:
        self._buffers: Dict[str, Tensor] = {}

    def get(self, name: str, shape: Tuple[int, ...], like: Tensor) -> Tensor:
        """A (shape) tensor of ``like``'s dtype / device, in the buffer ``name`` (grown when too small)."""
        n = 1
        for d in shape:
            n *= int(d)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(n, dtype=like.dtype, device=like.device)
            self._buffers[name] = buf
        return buf[:n].view(shape)


def _bilinear(m: Tensor, size: Tuple[int, int], out: Optional[Tensor] = None) -> Tensor:
    """Bilinear resize (align_corners=False) of (K, t, h, w) maps, one map per channel, into ``out`` if given.

    PyTorch picks its CPU kernel by the channel count: ``t == 3`` frames on one thread (a window of 3) takes the
    channels-last kernel, whose float rounding differs from the per-pixel kernel the official whole-video call
    (``t`` = the video length) takes, and is ~3x slower. As (K*t, 1, h, w) every chunk of frames takes the
    per-pixel kernel and gives the official values bit for bit, whatever the chunking and thread count."""
    k, t = m.shape[:2]
    src = m.reshape((k * t, 1) + tuple(m.shape[2:]))
    if out is None:
        res = F.interpolate(src, size=tuple(size), mode="bilinear", align_corners=False)
    else:  # the kernel F.interpolate calls (no scale factors: computed from the sizes), writing into out
        res = torch.ops.aten.upsample_bilinear2d.out(src, [int(x) for x in size], False, None, None,
                                                    out=out.view((k * t, 1) + tuple(size)))
    return res.view((k, t) + tuple(size))


def mask_probs(mask_logits: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
               output_size: Tuple[int, int], workspace: Optional[Workspace] = None) -> Tensor:
    """(K, t, h, w) mask logits at stride 4 -> (K, t, H_out, W_out) probabilities, in the official order of VPS /
    VSS: bilinear to the padded size, crop the padding, SIGMOID, bilinear to the output size (VIS thresholds
    the logits instead). With a ``workspace`` the result lives in its buffers (valid until the next call)."""
    m = mask_logits.float()
    k, t = m.shape[:2]
    ws = workspace.get if workspace is not None else (lambda name, shape, like: None)
    m = _bilinear(m, padded_size, ws("padded", (k, t) + tuple(padded_size), m))
    m = m[:, :, : image_size[0], : image_size[1]]
    # in place when nothing is cropped; else into a contiguous tensor, as sigmoid() allocates it: the same
    # elements go through the same vectorised / scalar sigmoid code either way, so the values do not change
    if m.is_contiguous():
        m = m.sigmoid_()
    else:
        dst = ws("cropped", tuple(m.shape), m)
        m = m.sigmoid() if dst is None else torch.sigmoid(m, out=dst)
    if tuple(image_size) != tuple(output_size):
        m = _bilinear(m, output_size, ws("output", (k, t) + tuple(output_size), m))
    return m


def _argmax(probs: Tensor, scores: Tensor) -> Tensor:
    """Per pixel the kept query with the highest score * mask probability (first index on ties), i.e.
    ``(scores[:, None, None, None] * probs).argmax(0)`` of the official code: the same float32 products, compared
    one query at a time (an argmax over the outer dimension is slow on CPU; strict ``>`` keeps the first index)."""
    scores = scores.to(probs)
    best = scores[0] * probs[0]
    win = torch.zeros(best.shape, dtype=torch.long, device=probs.device)
    for k in range(1, probs.shape[0]):
        cand = scores[k] * probs[k]
        better = cand > best
        best = torch.where(better, cand, best)
        win.masked_fill_(better, k)
    return win


def vps_frame_counts(probs: Tensor, scores: Tensor) -> Tensor:
    """(3, K) int64 pixel counts over these frames, per kept query: argmax wins, mask >= 0.5, both."""
    k = probs.shape[0]
    win = _argmax(probs, scores)
    solid_at_win = torch.gather(probs, 0, win.unsqueeze(0))[0] >= 0.5
    won = torch.bincount(win.flatten(), minlength=k)
    both = torch.bincount(win[solid_at_win], minlength=k)
    solid = torch.count_nonzero((probs >= 0.5).flatten(1), dim=1)
    return torch.stack([won, solid, both]).cpu()


@dataclass
class VPSSegments:
    """The segments of a video: ``lut`` (K+1,) int32 maps a kept query's position + 1 to its segment id (0 =
    dropped; position 0 is void), ``segments`` the official ``segments_infos`` plus the query index
    (``track_id``), in order of creation."""

    lut: Tensor
    segments: List[Dict[str, object]] = field(default_factory=list)


def vps_segments(queries: VPSQueries, counts: Tensor, num_thing_classes: int, overlap_threshold: float,
                 query_ids: Optional[Tensor] = None) -> VPSSegments:
    """The official segment loop on the whole-video counts of :func:`vps_frame_counts`: kept queries in QUERY
    order; a query survives when all three counts are > 0 and argmax pixels / mask pixels >= the overlap
    threshold; ``isthing = label < num_thing_classes``; a stuff class that already has a segment lends its id (no
    new segment); otherwise the next id (1, 2, ...). ``query_ids`` (Q,): what to report as ``track_id``."""
    lut = torch.zeros(len(queries) + 1, dtype=torch.int32)
    segments: List[Dict[str, object]] = []
    stuff: Dict[int, int] = {}
    for k in range(len(queries)):
        won, solid, both = (int(x) for x in counts[:, k])
        if not (won > 0 and solid > 0 and both > 0):
            continue
        if won / solid < overlap_threshold:
            continue
        label = int(queries.label[k])
        isthing = label < num_thing_classes
        if not isthing and label in stuff:
            lut[k + 1] = stuff[label]  # stuff of one class: one segment, the first query's id
            continue
        sid = len(segments) + 1
        if not isthing:
            stuff[label] = sid
        lut[k + 1] = sid
        q = int(queries.index[k])
        segments.append({"id": sid, "category_id": label, "isthing": bool(isthing),
                         "track_id": int(query_ids[q]) if query_ids is not None else q,
                         "score": float(queries.score[k])})
    return VPSSegments(lut=lut, segments=segments)


def vps_frame_ids(probs: Tensor, scores: Tensor, lut: Tensor) -> Tensor:
    """(t, H, W) int32 segment ids of these frames: the segment of the argmax query where its mask is >= 0.5,
    else 0 (void)."""
    if probs.shape[0] == 0:
        return torch.zeros(probs.shape[1:], dtype=torch.int32)
    win = _argmax(probs, scores)
    solid = torch.gather(probs, 0, win.unsqueeze(0))[0] >= 0.5
    ids = lut.to(win.device)[win + 1]
    return torch.where(solid, ids, torch.zeros_like(ids)).cpu()


#: pixels per step of the CPU class argmax: the (C, tile) class scores stay in the L2 cache
VSS_TILE = 512
#: narrower products take another BLAS code path whose rounding differs (measured: up to 11 columns, MKL)
VSS_MIN_TILE = 64


def _tiles(n: int, tile: int) -> List[Tuple[int, int]]:
    """[start, end) column blocks of ``tile`` pixels; a short remainder joins the block before it, so no block
    is narrower than ``tile`` unless the whole is."""
    starts = list(range(0, n, tile))
    if len(starts) > 1 and n - starts[-1] < tile:
        starts.pop()
    return [(s, e) for s, e in zip(starts, starts[1:] + [n])]


def vss_frame_classes(probs: Tensor, class_probs: Tensor, tile: int = VSS_TILE) -> Tensor:
    """(t, H, W) int64 class map: argmax over classes of sum_q class_probs[q, c] * probs[q] (first on ties).

    The official ``einsum('qc,qthw->cthw')`` is one (C, Q) @ (Q, t*H*W) product; each score is its own dot
    product over the queries, so a block of pixel columns gets the same floats as the whole (tested, for blocks
    of at least ``VSS_MIN_TILE`` columns). On the CPU the product and the argmax run ``tile`` pixels at a time:
    the (C, t, H, W) class maps never exist (~2x faster; those of one 720p frame with 124 classes are 457 MB).
    Elsewhere (GPU) the whole product at once."""
    if tile < VSS_MIN_TILE:
        raise ValueError(f"tile={tile}: use at least {VSS_MIN_TILE} pixels (narrower products round differently)")
    q = probs.shape[0]
    flat = probs.reshape(q, -1)
    weights = class_probs.to(probs).t()
    if probs.device.type != "cpu":
        return torch.mm(weights, flat).max(0)[1].view(probs.shape[1:]).cpu()
    blocks = _tiles(flat.shape[1], tile)
    width = max((e - s for s, e in blocks), default=0)
    out = torch.empty(flat.shape[1], dtype=torch.long)
    scores = torch.empty((weights.shape[0], width), dtype=probs.dtype)
    best = torch.empty(width, dtype=probs.dtype)
    for s, e in blocks:
        block = scores[:, : e - s]
        torch.mm(weights, flat[:, s:e], out=block)
        torch.max(block, 0, out=(best[: e - s], out[s:e]))
    return out.view(probs.shape[1:])


def postprocess_vps(pred_cls: Tensor, pred_masks: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int], object_mask_threshold: float, overlap_threshold: float,
                    num_thing_classes: int, aux_pred_cls: Optional[Tensor] = None) -> Tuple[Tensor, List[dict]]:
    """Official ``inference_video_vps`` on the whole video: pred_cls (Q, C+1), pred_masks (Q, T, h, w) logits ->
    ((T, H, W) int32 segment ids, segments)."""
    queries = vps_queries(pred_cls, object_mask_threshold, aux_pred_cls)
    t = pred_masks.shape[1]
    if len(queries) == 0:
        return torch.zeros((t,) + tuple(output_size), dtype=torch.int32), []
    probs = mask_probs(pred_masks[queries.index.to(pred_masks.device)], padded_size, image_size, output_size)
    seg = vps_segments(queries, vps_frame_counts(probs, queries.score), num_thing_classes, overlap_threshold)
    return vps_frame_ids(probs, queries.score, seg.lut), seg.segments


def postprocess_vss(pred_cls: Tensor, pred_masks: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                    output_size: Tuple[int, int], aux_pred_cls: Optional[Tensor] = None) -> Tensor:
    """Official ``inference_video_vss`` on the whole video -> (T, H, W) int64 class indices."""
    probs = mask_probs(pred_masks, padded_size, image_size, output_size)
    return vss_frame_classes(probs, vss_class_probs(pred_cls, aux_pred_cls))
