"""The exportable pieces of a DVIS model: small ``nn.Module`` wrappers with plain tensor inputs and outputs.

The runtime loop of a DVIS model alternates graph work with Hungarian matching (scipy), so the model is cut
into graphs around the matching:

* ``segmenter``: backbone + pixel decoder + decoder on a window of normalised, padded frames;
* ``tracker_start`` / ``tracker_step``: every tracker layer on ONE frame's queries, already re-ordered by the
  matching (``identity``), for the first frame of a video and for later frames (whose query comes from the
  previous frame's output: the tracker state, an explicit input and output);
* ``tracker_heads``: class / mask heads of the tracker over a window of tracked frames;
* ``refiner`` (offline): the temporal refiner over a clip, with its mask head;
* ``frame_forward`` (offline, original DVIS only): the refiner's per-frame embeddings.

A segmenter-only model (``mode="segmenter"``, MinVIS / CTMinVIS) is the ``segmenter`` graph alone (outputs
:data:`MINVIS_OUTPUTS`); its frame-to-frame matching runs in Python (:func:`dvis_sdk.models.minvis.associate`).

Every wrapper computes exactly what the corresponding PyTorch code path computes (the parity tests check it).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from ..models.dvis import OfflineDVIS, OnlineDVIS
from ..models.minvis import MinVIS

SEGMENTER_OUTPUTS = ("pred_logits", "pred_masks", "pred_embds", "pred_embds_without_norm", "mask_features")
MINVIS_OUTPUTS = ("pred_logits", "pred_masks", "match_embeds")


class SegmenterGraph(nn.Module):
    """images (t, 3, H, W) normalised and padded -> the five :data:`SEGMENTER_OUTPUTS`."""

    def __init__(self, model: OnlineDVIS):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        out = self.model.segment(images)
        if "pred_embds_without_norm" not in out:  # original DVIS: its tracker reads pred_embds only
            out["pred_embds_without_norm"] = out["pred_embds"]
        return tuple(out[k] for k in SEGMENTER_OUTPUTS)


class MinVISSegmenterGraph(nn.Module):
    """Segmenter-only models: images (t, 3, H, W) normalised and padded -> the three :data:`MINVIS_OUTPUTS`."""

    def __init__(self, model: MinVIS):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        out = self.model.segment(images)
        return tuple(out[k] for k in MINVIS_OUTPUTS)


class TrackerStartGraph(nn.Module):
    """First frame of a DVIS++ video: (key (Q, B, C) = the frame's un-normalised embeds in segmenter order,
    identity (Q, B, C) = the same re-ordered by the matching) -> (output, reference)."""

    def __init__(self, model: OnlineDVIS):
        super().__init__()
        self.tracker = model.tracker

    def forward(self, key: Tensor, identity: Tensor) -> Tuple[Tensor, Tensor]:
        outs, reference = self.tracker._run_frame(key, key, identity, None)
        return outs[-1], reference


class TrackerStartDVISGraph(TrackerStartGraph):
    """First frame of an original-DVIS video: (embeds (Q, B, C), segmenter order) -> (output,)."""

    def forward(self, embeds: Tensor) -> Tuple[Tensor]:  # type: ignore[override]
        outs, _ = self.tracker._run_frame(embeds, embeds, embeds, None)
        return (outs[-1],)


class TrackerStepGraph(nn.Module):
    """A later frame: (key (Q, B, C), identity (Q, B, C), prev_output (Q, B, C) = the state) -> (output,
    reference) for DVIS++, (output,) for the original DVIS (``key`` = the frame's normalised embeds)."""

    def __init__(self, model: OnlineDVIS):
        super().__init__()
        self.tracker = model.tracker
        self.plus = model.cfg.variant == "dvis++"

    def forward(self, key: Tensor, identity: Tensor, prev_output: Tensor) -> Tuple[Tensor, ...]:
        outs, reference = self.tracker._run_frame(key, key, identity, prev_output)
        return (outs[-1], reference) if self.plus else (outs[-1],)


class TrackerHeadsGraph(nn.Module):
    """DVIS++: outputs (T, Q, 1, C) last tracker layer per frame, references (T, Q, 1, C), mask_features
    (T, mask_dim, h, w) -> pred_logits (1, T, Q, K+1), pred_masks (1, Q, T, h, w), pred_embds (1, C, T, Q)."""

    def __init__(self, model: OnlineDVIS):
        super().__init__()
        self.tracker = model.tracker

    def forward(self, outputs: Tensor, references: Tensor, mask_features: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        mask_features = self.tracker.mask_feature_proj(mask_features)
        logits, masks, embeds = self.tracker._predict(outputs.unsqueeze(1), mask_features.unsqueeze(0), references)
        return logits[-1], masks[-1], embeds


class TrackerHeadsDVISGraph(TrackerHeadsGraph):
    """Original DVIS: (outputs (T, Q, 1, C), mask_features (T, mask_dim, h, w)) -> as :class:`TrackerHeadsGraph`."""

    def forward(self, outputs: Tensor, mask_features: Tensor) -> Tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        logits, masks, embeds = self.tracker._predict(outputs.unsqueeze(1), mask_features.unsqueeze(0), None)
        return logits[-1], masks[-1], embeds


class FrameForwardGraph(nn.Module):
    """Original DVIS offline: segmenter pred_embds (1, C, T, Q) -> the refiner's frame_embeds (1, C, T, Q)."""

    def __init__(self, model: OfflineDVIS):
        super().__init__()
        self.tracker = model.tracker

    def forward(self, frame_embeds: Tensor) -> Tensor:
        return self.tracker.frame_forward(frame_embeds)


class RefinerGraph(nn.Module):
    """instance_embeds (1, C, T, Q), frame_embeds (1, C, T, Q), mask_features (T, mask_dim, h, w) ->
    pred_logits (1, T, Q, K+1), pred_masks (1, Q, T, h, w), pred_embds (1, C, T, Q).

    The masks are one einsum over the whole clip (the PyTorch refiner chunks it by frames only to bound memory;
    each frame's masks are the same numbers)."""

    def __init__(self, model: OfflineDVIS):
        super().__init__()
        self.refiner = model.refiner

    def forward(self, instance_embeds: Tensor, frame_embeds: Tensor, mask_features: Tensor
                ) -> Tuple[Tensor, Tensor, Tensor]:
        out = self.refiner.refine(instance_embeds, frame_embeds)
        emb = out["pred_embds"].permute(0, 2, 3, 1)  # (1, T, Q, C)
        masks = torch.einsum("btqc,btchw->bqthw", self.refiner.mask_embed(emb), mask_features.unsqueeze(0))
        return out["pred_logits"], masks, out["pred_embds"]


def graph_specs(model: OnlineDVIS) -> Dict[str, dict]:
    """What to export for ``model``: name -> {module, inputs (name -> shape with symbolic names), outputs}."""
    if isinstance(model, MinVIS):
        return {"segmenter": dict(module=MinVISSegmenterGraph(model), inputs={"images": ["T", 3, "H", "W"]},
                                  outputs=list(MINVIS_OUTPUTS))}
    cfg = model.cfg
    seg = cfg.segmenter
    plus = cfg.variant == "dvis++"
    c_trk = cfg.tracker_hidden_dim
    q = seg.num_queries
    qbc = ["Q", 1, "C"]
    specs: Dict[str, dict] = {
        "segmenter": dict(module=SegmenterGraph(model), inputs={"images": ["T", 3, "H", "W"]},
                          outputs=list(SEGMENTER_OUTPUTS)),
        "tracker_start": dict(module=TrackerStartGraph(model) if plus else TrackerStartDVISGraph(model),
                              inputs={"key": qbc, "identity": qbc} if plus else {"embeds": qbc},
                              outputs=["output", "reference"] if plus else ["output"]),
        "tracker_step": dict(module=TrackerStepGraph(model),
                             inputs={"key": qbc, "identity": qbc, "prev_output": qbc},
                             outputs=["output", "reference"] if plus else ["output"]),
        "tracker_heads": dict(module=TrackerHeadsGraph(model) if plus else TrackerHeadsDVISGraph(model),
                              inputs=({"outputs": ["T", "Q", 1, "C"], "references": ["T", "Q", 1, "C"]} if plus
                                      else {"outputs": ["T", "Q", 1, "C"]}) | {"mask_features": ["T", "M", "h", "w"]},
                              outputs=["pred_logits", "pred_masks", "pred_embds"]),
    }
    if isinstance(model, OfflineDVIS):
        specs["refiner"] = dict(module=RefinerGraph(model),
                                inputs={"instance_embeds": [1, "C", "T", "Q"], "frame_embeds": [1, "C", "T", "Q"],
                                        "mask_features": ["T", "M", "h", "w"]},
                                outputs=["pred_logits", "pred_masks", "pred_embds"])
        if not plus:
            specs["frame_forward"] = dict(module=FrameForwardGraph(model),
                                          inputs={"frame_embeds": [1, "C", "T", "Q"]}, outputs=["frame_embeds_out"])
    fixed = {"Q": q, "C": c_trk, "M": seg.mask_dim}
    for spec in specs.values():
        spec["inputs"] = {k: [fixed.get(d, d) for d in shape] for k, shape in spec["inputs"].items()}
    return specs


def example_inputs(spec: dict, sizes: Dict[str, int]) -> List[Tensor]:
    """Random example inputs for a spec, symbolic sizes taken from ``sizes`` (T, H, W, h, w)."""
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(*[sizes[d] if isinstance(d, str) else d for d in shape], generator=gen)
            for shape in spec["inputs"].values()]
