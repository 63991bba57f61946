"""The DVIS / DVIS++ meta-architectures: segmenter + referring tracker (+ temporal refiner), window loop.

``OnlineDVIS`` runs backbone, pixel decoder and decoder on a window of frames at a time and hands each
window to the tracker, whose state is carried explicitly from window to window. ``OfflineDVIS`` also
collects what the refiner needs from every window and refines the whole clip at the end.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..config import DVISConfig
from ..inference.postprocess import VISOutput, postprocess_vis
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

    def iter_windows(self, images: Tensor, window_size: Optional[int] = None,
                     state: Optional[TrackerState] = None) -> Iterator[WindowOutput]:
        """Yield one :class:`WindowOutput` per window of ``window_size`` frames (official window inference).
        Pass the last window's ``state`` to continue a video across calls."""
        window_size = window_size or self.cfg.test.window_size
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        for start in range(0, images.shape[0], window_size):
            seg = self.segment(images[start:start + window_size])
            trk, state, indices = self.track(seg, state)
            yield WindowOutput(start=start, segmenter=seg, tracker=trk, indices=indices, state=state)

    # --- whole video ----------------------------------------------------------------------------
    def forward(self, images: Tensor, window_size: Optional[int] = None) -> Dict[str, Tensor]:
        """Raw video outputs: ``pred_logits`` (1, T, Q, C+1) and ``pred_masks`` (1, Q, T, h, w) of the tracker,
        and ``pred_cls`` (Q, C+1), the time-averaged logits the post-processing ranks by."""
        logits, masks = [], []
        for w in self.iter_windows(images, window_size):
            logits.append(w.tracker["pred_logits"])
            masks.append(w.tracker["pred_masks"])
        pred_logits = torch.cat(logits, dim=1)
        return {"pred_logits": pred_logits, "pred_masks": torch.cat(masks, dim=2),
                "pred_cls": pred_logits[0].float().mean(0)}

    def preprocess(self, frames: Tensor) -> Tensor:
        """(T, 3, H, W) RGB 0..255 -> normalised, zero-padded to the size divisibility."""
        from ..inference.preprocess import normalize_and_pad
        return normalize_and_pad(frames.to(self.pixel_mean.device), self.cfg.input.pixel_mean,
                                 self.cfg.input.pixel_std, self.cfg.input.size_divisibility)

    @torch.no_grad()
    def inference(self, frames: Tensor, output_size: Optional[Tuple[int, int]] = None,
                  window_size: Optional[int] = None, max_num: Optional[int] = None) -> VISOutput:
        """Official VIS inference on (T, 3, H, W) RGB 0..255 frames already at model size."""
        image_size = tuple(frames.shape[-2:])
        images = self.preprocess(frames)
        out = self(images, window_size)
        return postprocess_vis(out["pred_cls"], out["pred_masks"][0], tuple(images.shape[-2:]), image_size,
                               output_size or image_size, max_num or self.cfg.test.max_num,
                               aux_pred_cls=out.get("aux_pred_cls"))


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

    def forward(self, images: Tensor, window_size: Optional[int] = None) -> Dict[str, Tensor]:
        """Raw outputs: the refiner's ``pred_logits`` (1, T, Q, C+1) / ``pred_masks`` (1, Q, T, h, w), the tracker's
        ``online_pred_logits`` (1, T, Q, C+1), and the time-averaged ``pred_cls`` / ``aux_pred_cls`` (Q, C+1)."""
        windows = []
        for w in self.iter_windows(images, window_size):
            w.tracker.pop("pred_masks", None)  # the refiner predicts its own masks
            windows.append(w)
        online_logits = torch.cat([w.tracker["pred_logits"] for w in windows], dim=1)
        refined = self.refiner(**self.refiner_inputs(windows))
        return {"pred_logits": refined["pred_logits"], "pred_masks": refined["pred_masks"],
                "pred_embds": refined["pred_embds"], "online_pred_logits": online_logits,
                "pred_cls": refined["pred_logits"][0].float().mean(0),
                "aux_pred_cls": online_logits[0].float().mean(0)}


def build_model(cfg: DVISConfig) -> OnlineDVIS:
    """Build the model ``cfg`` describes (online or offline), with random weights, in eval mode."""
    if cfg.variant == "daq":  # DVIS-DAQ has its own meta-architecture (models/daq)
        from .daq.model import build_daq_model
        return build_daq_model(cfg)
    model = OfflineDVIS(cfg) if cfg.mode == "offline" else OnlineDVIS(cfg)
    return model.eval()
