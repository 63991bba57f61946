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
from torch import Tensor, nn

from ..config import DVISConfig
from ..ops.preprocess import normalize_and_pad
from .backbones import build_backbone
from .decoder import VideoMaskedAttentionDecoder
from .pixel_decoder import MSDeformAttnPixelDecoder
from .refiner import TemporalRefiner
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


class OnlineDVIS(nn.Module):
    """Segmenter + referring tracker (DVIS++ ``DVIS_Plus_online`` or original ``DVIS_online``)."""

    def __init__(self, cfg: DVISConfig):
        super().__init__()
        self.cfg = cfg
        seg = cfg.segmenter
        self.backbone = build_backbone(cfg.backbone)
        shapes = {k: (self.backbone.out_channels[k], self.backbone.out_strides[k]) for k in seg.in_features}
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            input_shape=shapes, conv_dim=seg.convs_dim, mask_dim=seg.mask_dim, norm=seg.norm,
            transformer_nheads=seg.transformer_enc_nheads, transformer_dim_feedforward=seg.transformer_enc_dim_feedforward,
            transformer_enc_layers=seg.transformer_enc_layers, transformer_in_features=seg.deform_in_features,
            common_stride=seg.common_stride)
        self.decoder = VideoMaskedAttentionDecoder(
            in_channels=seg.convs_dim, hidden_dim=seg.hidden_dim, num_queries=seg.num_queries, nheads=seg.nheads,
            dim_feedforward=seg.dim_feedforward, dec_layers=seg.dec_layers, pre_norm=seg.pre_norm, mask_dim=seg.mask_dim,
            enforce_input_project=seg.enforce_input_proj, num_classes=seg.num_classes, variant=cfg.variant,
            num_reid_head_layers=seg.num_reid_head_layers, reid_hidden_dim=seg.reid_hidden_dim)
        tracker_cls = DVISPlusTracker if cfg.variant == "dvis++" else ReferringTracker
        tracker_kwargs = dict(hidden_channel=cfg.tracker_hidden_dim, feedforward_channel=seg.dim_feedforward,
                              num_head=seg.nheads, decoder_layer_num=cfg.tracker.decoder_layers,
                              mask_dim=seg.hidden_dim, class_num=seg.num_classes)
        if cfg.variant == "dvis++":
            tracker_kwargs.update(noise_mode=cfg.tracker.noise_mode, noise_ratio=cfg.tracker.noise_ratio)
        self.tracker = tracker_cls(**tracker_kwargs)
        self.register_buffer("pixel_mean", torch.tensor(cfg.input.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.input.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.cfg.segmenter.num_classes

    # --- stages ---------------------------------------------------------------------------------
    def segment(self, images: Tensor) -> Dict[str, Tensor]:
        """(t, 3, Hp, Wp) normalised padded frames -> decoder outputs for one clip, plus ``mask_features``
        (t, mask_dim, Hp/4, Wp/4). Auxiliary (per-layer) predictions are dropped: inference never uses them."""
        features = self.backbone(images)
        mask_features, _, multi_scale = self.pixel_decoder.forward_features(features)
        out = self.decoder(multi_scale, mask_features)
        out.pop("aux_outputs", None)
        out["mask_features"] = mask_features
        return out

    def track(self, seg: Dict[str, Tensor], state: Optional[TrackerState]) -> Tuple[Dict[str, Tensor], TrackerState, Tensor]:
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

    def preprocess(self, frames: Tensor) -> Tensor:
        """(T, 3, H, W) RGB 0..255 -> normalised, zero-padded to the size divisibility."""
        return normalize_and_pad(frames.to(self.pixel_mean.device), self.cfg.input.pixel_mean,
                                 self.cfg.input.pixel_std, self.cfg.input.size_divisibility)


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
    """Build the model ``cfg`` describes (online or offline), with random weights, in eval mode."""
    if cfg.variant == "daq":  # DVIS-DAQ has its own meta-architecture (models/daq)
        from .daq.model import build_daq_model
        return build_daq_model(cfg)
    model = OfflineDVIS(cfg) if cfg.mode == "offline" else OnlineDVIS(cfg)
    return model.eval()
