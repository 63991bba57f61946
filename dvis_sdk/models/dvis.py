"""The DVIS / DVIS++ meta-architectures, composition only: segmenter + referring tracker (+ temporal refiner).

A model exposes the steps of the data path and no loop: :meth:`OnlineDVIS.segment` (one window of frames ->
decoder outputs), :meth:`OnlineDVIS.track` (one window's outputs + the explicit tracker state -> tracked outputs,
new state) and, offline, :meth:`OfflineDVIS.refine` (tracked windows -> refined outputs). The window loop, the
refinement schedule and out-of-memory back-off live once, in :mod:`dvis_sdk.inference.runner`
(``forward_video`` / ``video_inference`` give the official whole-video outputs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ..config import DVISConfig
from .minvis import MinVIS
from .refiner import TemporalRefiner
from .segmenter import SegmenterModel
from .tracker import DVISPlusTracker, ReferringTracker, TrackerState


@dataclass
class WindowOutput:
    """What one window of frames produced. ``segmenter``: decoder outputs (+ ``mask_features`` (t, C, h, w));
    ``tracker``: tracker outputs; ``indices``: (t, Q) query permutation the tracker applied per frame."""

    start: int
    segmenter: Dict[str, Tensor]
    tracker: Dict[str, Tensor]
    indices: Tensor
    state: TrackerState = field(repr=False)


class OnlineDVIS(SegmenterModel):
    """Segmenter + referring tracker (DVIS++ ``DVIS_Plus_online`` or original ``DVIS_online``)."""

    def __init__(self, cfg: DVISConfig):
        super().__init__(cfg, decoder_variant=cfg.variant)
        seg = cfg.segmenter
        tracker_cls = DVISPlusTracker if cfg.variant == "dvis++" else ReferringTracker
        tracker_kwargs = dict(hidden_channel=cfg.tracker_hidden_dim, feedforward_channel=seg.dim_feedforward,
                              num_head=seg.nheads, decoder_layer_num=cfg.tracker.decoder_layers,
                              mask_dim=seg.hidden_dim, class_num=seg.num_classes)
        if cfg.variant == "dvis++":
            tracker_kwargs.update(noise_mode=cfg.tracker.noise_mode, noise_ratio=cfg.tracker.noise_ratio)
        self.tracker = tracker_cls(**tracker_kwargs)

    # --- stages ---------------------------------------------------------------------------------
    def segment(self, images: Tensor) -> Dict[str, Tensor]:
        """(t, 3, Hp, Wp) normalised padded frames -> decoder outputs for one clip, plus ``mask_features``
        (t, mask_dim, Hp/4, Wp/4). Auxiliary (per-layer) predictions are dropped: inference never uses them."""
        out, mask_features = self.run_segmenter(images)
        out.pop("aux_outputs", None)
        out["mask_features"] = mask_features
        return out

    def track(self, seg: Dict[str, Tensor],
              state: Optional[TrackerState]) -> Tuple[Dict[str, Tensor], TrackerState, Tensor]:
        """Run the tracker on one window's segmenter outputs; ``state=None`` starts a new video."""
        mask_features = seg["mask_features"].unsqueeze(0)
        if self.cfg.variant == "dvis++":
            out, state, indices = self.tracker(seg["pred_embds"], mask_features, state,
                                               frame_embeds_no_norm=seg["pred_embds_without_norm"])
        else:
            out, state, indices = self.tracker(seg["pred_embds"], mask_features, state)
        out.pop("aux_outputs", None)
        return out, state, indices

    def track_clip(self, images: Tensor, state: Optional[TrackerState] = None, start: int = 0) -> WindowOutput:
        """:meth:`segment` then :meth:`track` on ONE window of frames (no loop; ``state=None`` starts a video)."""
        seg = self.segment(images)
        trk, state, indices = self.track(seg, state)
        return WindowOutput(start=start, segmenter=seg, tracker=trk, indices=indices, state=state)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{type(self).__name__} has no whole-video forward: run it with "
                        "dvis_sdk.inference.runner.forward_video(model, images) (raw outputs) or video_inference("
                        "model, frames) / dvis_sdk.VideoSegmenter; training calls segment / track / refine")


class OfflineDVIS(OnlineDVIS):
    """Segmenter + tracker + temporal refiner over the whole clip (``DVIS_Plus_offline`` / ``DVIS_offline``)."""

    def __init__(self, cfg: DVISConfig):
        super().__init__(cfg)
        self.refiner = TemporalRefiner(
            hidden_channel=cfg.tracker_hidden_dim, feedforward_channel=cfg.segmenter.dim_feedforward,
            num_head=cfg.segmenter.nheads, decoder_layer_num=cfg.refiner.decoder_layers,
            mask_dim=cfg.segmenter.hidden_dim, class_num=cfg.segmenter.num_classes, windows=cfg.test.window_size)

    def refiner_inputs(self, windows: List[WindowOutput]) -> Dict[str, Tensor]:
        """What the refiner receives, gathered over all windows (layouts as the official code)."""
        instance = torch.cat([w.tracker["pred_embds"] for w in windows], dim=2)
        mask_features = torch.cat([w.segmenter["mask_features"] for w in windows], dim=0).unsqueeze(0)
        if self.cfg.variant == "dvis++":
            frame = torch.cat([w.segmenter["pred_embds_without_norm"] for w in windows], dim=2)
        else:
            # original DVIS: every tracker layer applied to each frame on its own, in the segmenter's order
            frame = self.tracker.frame_forward(torch.cat([w.segmenter["pred_embds"] for w in windows], dim=2))
        return {"instance_embeds": instance, "frame_embeds": frame, "mask_features": mask_features}

    def refine(self, windows: List[WindowOutput]) -> Dict[str, Tensor]:
        """The refiner over tracked windows (consecutive, of one video): ``pred_logits`` (1, T, Q, C+1),
        ``pred_masks`` (1, Q, T, h, w), ``pred_embds``."""
        return self.refiner(**self.refiner_inputs(windows))


def build_model(cfg: DVISConfig) -> OnlineDVIS:
    """Build the model ``cfg`` describes (online, offline or segmenter-only), with random weights, in eval mode."""
    if cfg.mode == "segmenter":  # the segmenter alone, queries matched frame to frame (models/minvis)
        return MinVIS(cfg).eval()
    if cfg.variant == "daq":  # DVIS-DAQ has its own meta-architecture (models/daq)
        from .daq.model import build_daq_model
        return build_daq_model(cfg)
    model = OfflineDVIS(cfg) if cfg.mode == "offline" else OnlineDVIS(cfg)
    return model.eval()
