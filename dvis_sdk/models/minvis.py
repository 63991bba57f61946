"""Segmenter-only video models: the official stage-1 meta-architectures ``MinVIS`` and ``CTMinVIS``.

The per-frame segmenter (:class:`~dvis_sdk.models.segmenter.SegmenterModel`) run alone; its queries are linked
into tracks frame to frame by Hungarian matching on the cosine similarity of their embeddings, with no learned
tracker (``MinVIS.post_processing`` / ``CTMinVIS.post_processing`` in the official ``dvis_Plus/meta_architecture.py``,
``dvis_Plus/ctvis.py`` and the original DVIS ``dvis/meta_architecture.py``, which holds the same MinVIS):

* every frame is matched to the PREVIOUS frame's re-ordered embeddings (no memory bank, no window effect: the
  official code segments windows of 3 frames, then matches the whole video frame by frame);
* MinVIS matches the decoder's ``pred_embds`` (original-DVIS decoder: ``decoder_norm(q)``), CTMinVIS the DVIS++
  re-identification embeddings ``pred_reid_embed``; norms without an epsilon; cost ``1 - cos``;
  ``linear_sum_assignment(cost.T)[1]`` re-orders the current frame onto the previous one;
* the class logits are averaged over all frames (then softmax, no-object dropped) and the official top-k keeps
  10 instances (``TestConfig.max_num``); masks as the VIS post-processing (bilinear, crop, > 0).

The model implements the runner's step protocol (``segment`` / ``track``, state :class:`MatchState`), so
``VideoSegmenter.predict`` / ``stream`` / batch run it like an online DVIS model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..config import DVISConfig, segmenter_only_config
from .segmenter import SegmenterModel

__all__ = ["MinVIS", "MatchState", "match_embeddings", "segmenter_only", "SEGMENTER_PREFIXES"]

#: state-dict prefixes of the segmenter (what a segmenter-only model holds)
SEGMENTER_PREFIXES = ("backbone.", "pixel_decoder.", "decoder.")


@dataclass(frozen=True)
class MatchState:
    """What links the next window to the last one: the last frame's matching embeddings (Q, C), in track order,
    and the frames seen so far."""

    last_embeds: Tensor
    num_frames: int


def match_embeddings(ref: Tensor, cur: Tensor) -> Tensor:
    """The official MinVIS matching: (Q, C) embeddings of the previous frame (track order) and of the current frame
    -> (Q,) int64 permutation ``p`` such that ``cur[p]`` is in track order.

    cost[i, j] = 1 - cos(ref_i, cur_j) computed in float32 on the CPU as the official code (norms without an
    epsilon); a NaN cost (an all-zero embedding, where the official code stops with an error) counts as 1."""
    ref = ref.detach().float().cpu()
    cur = cur.detach().float().cpu()
    cur = cur / cur.norm(dim=1)[:, None]
    ref = ref / ref.norm(dim=1)[:, None]
    cost = (1 - torch.mm(cur, ref.transpose(0, 1))).transpose(0, 1)  # rows: previous frame, columns: current
    cost = torch.nan_to_num(cost, nan=1.0).numpy()
    return torch.from_numpy(np.asarray(linear_sum_assignment(cost)[1], dtype=np.int64))


class MinVIS(SegmenterModel):
    """The segmenter alone as a video model (official ``MinVIS`` / ``CTMinVIS``; ``cfg.mode == "segmenter"``).

    ``cfg.variant`` picks the decoder ("dvis": the MinVIS decoder, "dvis++": with the re-identification head) and
    ``cfg.match_embedding`` what frames are matched by ("embeds" for MinVIS, "reid" for CTMinVIS). State-dict keys
    are the segmenter's (``backbone.``, ``pixel_decoder.``, ``decoder.``), exactly those of a DVIS model."""

    def __init__(self, cfg: DVISConfig):
        if cfg.mode != "segmenter":
            raise ValueError(f"MinVIS needs a segmenter-only config (mode='segmenter'), got mode={cfg.mode!r}: "
                             "convert it with dvis_sdk.config.segmenter_only_config(cfg)")
        super().__init__(cfg, decoder_variant=cfg.variant)
        self._embed_key = "pred_reid_embed" if cfg.match_embedding == "reid" else "pred_embds"

    def segment(self, images: Tensor) -> Dict[str, Tensor]:
        """(t, 3, Hp, Wp) normalised padded frames -> ``pred_logits`` (1, t, Q, C+1), ``pred_masks``
        (1, Q, t, h, w) and ``match_embeds`` (1, E, t, Q), the embeddings frames are matched by."""
        out, _ = self.run_segmenter(images)
        return {"pred_logits": out["pred_logits"], "pred_masks": out["pred_masks"],
                "match_embeds": out[self._embed_key]}

    def track(self, seg: Dict[str, Tensor], state: Optional[MatchState]
              ) -> Tuple[Dict[str, Tensor], MatchState, Tensor]:
        """Match every frame of one window to the previous frame (``state=None``: the first frame of a video is
        its own reference) and re-order its logits, masks and embeddings into track order.

        Returns (``pred_logits`` (1, t, Q, C+1), ``pred_masks`` (1, Q, t, h, w), ``pred_embds`` (1, E, t, Q)),
        the new state and the (t, Q) permutations applied."""
        return associate(seg, state)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("MinVIS has no whole-video forward: run it with dvis_sdk.VideoSegmenter or "
                        "dvis_sdk.inference.runner.video_inference(model, frames)")


def associate(seg: Dict[str, Any], state: Optional[MatchState]) -> Tuple[Dict[str, Tensor], MatchState, Tensor]:
    """:meth:`MinVIS.track` as a function of plain tensors (shared by the PyTorch model and the ONNX backend):
    ``seg`` holds ``pred_logits`` (1, t, Q, C+1), ``pred_masks`` (1, Q, t, h, w), ``match_embeds`` (1, E, t, Q)."""
    logits, masks, embeds = seg["pred_logits"], seg["pred_masks"], seg["match_embeds"]
    n_frames, n_q = int(logits.shape[1]), int(logits.shape[2])
    if state is not None and state.last_embeds.shape[0] != n_q:
        raise ValueError(f"state was built for Q={state.last_embeds.shape[0]} queries, got Q={n_q}")
    frame_embeds = embeds[0].permute(1, 2, 0)  # (t, Q, E)
    prev = None if state is None else state.last_embeds
    perms = []
    for i in range(n_frames):
        # the first frame of a video keeps the segmenter's order (the official code matches from frame 1 on)
        perm = torch.arange(n_q) if prev is None else match_embeddings(prev, frame_embeds[i])
        perms.append(perm)
        prev = frame_embeds[i][perm.to(frame_embeds.device)]
    index = torch.stack(perms).to(logits.device)  # (t, Q)
    out_logits = torch.gather(logits, 2, index[None, :, :, None].expand_as(logits))
    mask_index = index.t()[None, :, :, None, None].to(masks.device).expand_as(masks)
    out_masks = torch.gather(masks, 1, mask_index)
    emb_index = index[None, None].to(embeds.device).expand_as(embeds)
    out_embeds = torch.gather(embeds, 3, emb_index)
    new_state = MatchState(last_embeds=prev.detach(), num_frames=n_frames + (0 if state is None else state.num_frames))
    return {"pred_logits": out_logits, "pred_masks": out_masks, "pred_embds": out_embeds}, new_state, index


def segmenter_only(model: Any, class_names: Optional[Sequence[str]] = None, max_num: Optional[int] = 10,
                   match_embedding: Optional[str] = None) -> MinVIS:
    """A segmenter-only video model (:class:`MinVIS`) holding a COPY of ``model``'s segmenter weights.

    Args:
        model: a DVIS / DVIS++ / DVIS-DAQ model (online or offline), a :class:`MinVIS`, or a ``VideoSegmenter``
            around one; it is left unchanged.
        class_names: the class names of the new model (as many as the segmenter's classes); None keeps them.
        max_num: instances kept per video (the official MinVIS keeps 10); None keeps the model's ``test.max_num``.
        match_embedding: "embeds" (MinVIS), "reid" (CTMinVIS; DVIS++ segmenters) or "auto" (reid for DVIS++);
            None keeps the config's (default "auto").

    Returns the new model in eval mode, on ``model``'s device; ``VideoSegmenter(result)`` runs it and
    ``save_pretrained`` writes it (``config.json`` with ``mode: "segmenter"``, segmenter weights only).
    """
    inner = getattr(model, "model", None)  # a VideoSegmenter
    module = inner if isinstance(inner, torch.nn.Module) and not isinstance(model, torch.nn.Module) else model
    cfg = getattr(module, "cfg", None)
    if not isinstance(module, torch.nn.Module) or not isinstance(cfg, DVISConfig):
        raise TypeError(f"segmenter_only needs a DVIS model or a VideoSegmenter around one, got {type(model).__name__}")
    new_cfg = segmenter_only_config(cfg, class_names=list(class_names) if class_names is not None else None,
                                    max_num=max_num, match_embedding=match_embedding)
    out = MinVIS(new_cfg)
    sd = {k: v.detach().clone() for k, v in module.state_dict().items() if k.startswith(SEGMENTER_PREFIXES)}
    out.load_state_dict(sd, strict=True)
    device = next(module.parameters()).device
    return out.to(device).eval()
