"""DVIS-DAQ meta-architectures (``DVIS_DAQ_online`` / ``DVIS_DAQ_offline`` of ``dvis_daq/meta_architecture.py``).

Segmenter (backbone, pixel decoder, the DVIS++ decoder: DAQ checkpoints hold its ``reid_embed`` keys, but DAQ
uses ``pred_embds = decoder_norm(q)`` only) + the DAQ track module, run on windows of ``WINDOW`` = 5 frames
(hard-coded in the official inference; ``TEST.WINDOW_SIZE`` does not change it) with the track state carried
explicitly from window to window. Offline adds the DAQ refiner over the selected rows of the whole clip.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...config import DVISConfig
from ...ops.preprocess import normalize_and_pad
from ..backbones import build_backbone
from ..decoder import VideoMaskedAttentionDecoder
from ..pixel_decoder import MSDeformAttnPixelDecoder
from ..refiner import TemporalRefiner
from .readout import OnlineRows, offline_selection, online_rows
from .state import DAQTrackState
from .track_module import DAQTrackModule

#: frames per window of the official DAQ inference (``window_size = 5`` in ``run_window_inference``)
WINDOW = 5


@dataclass
class DAQWindow:
    """What one window produced: segmenter outputs (``pred_embds`` (1, C, t, Q), ``pred_logits`` (1, t, Q, K+1),
    ``pred_masks`` (1, Q, t, h, w), ``mask_features`` (t, C, h, w)), the state after it and, if asked, the
    track module's per-frame records."""

    start: int
    segmenter: Dict[str, Tensor]
    state: DAQTrackState = field(repr=False)
    records: List[Dict[str, Tensor]] = field(default_factory=list, repr=False)


class OnlineDAQ(nn.Module):
    """Segmenter + DAQ track module (official ``DVIS_DAQ_online``), run by :class:`dvis_sdk.inference.runner.
    WindowRunner` through the steps ``segment`` / ``track`` / ``finalize``."""

    #: the official DAQ inference runs windows of 5 frames (the result does not depend on it: both the segmenter
    #: and the track module work frame by frame)
    default_window_size = WINDOW
    #: the DAQ refiner sees the whole video once the state is final (OfflineDAQ)
    refines_at_end = False

    def __init__(self, cfg: DVISConfig):
        super().__init__()
        if cfg.variant != "daq" or cfg.daq is None:
            raise ValueError(f"OnlineDAQ needs a DVIS-DAQ config (variant 'daq'), got variant {cfg.variant!r}")
        self.cfg = cfg
        seg, d = cfg.segmenter, cfg.daq
        if d.num_new_ins != seg.num_queries:
            raise ValueError(f"daq.num_new_ins ({d.num_new_ins}) must equal segmenter.num_queries ({seg.num_queries})")
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
            enforce_input_project=seg.enforce_input_proj, num_classes=seg.num_classes, variant="dvis++",
            num_reid_head_layers=seg.num_reid_head_layers, reid_hidden_dim=seg.reid_hidden_dim)
        self.tracker = DAQTrackModule(
            hidden_dim=seg.hidden_dim, feedforward_dim=seg.dim_feedforward, num_head=seg.nheads,
            decoder_layer_num=cfg.tracker.decoder_layers, mask_dim=seg.hidden_dim, num_classes=seg.num_classes,
            num_new_ins=d.num_new_ins, num_slots=d.num_slots, inference_select_threshold=d.inference_select_threshold,
            dis_fg_threshold=d.dis_fg_threshold, ovis_infer=d.ovis_infer, kick_out=d.kick_out)
        self.register_buffer("pixel_mean", torch.tensor(cfg.input.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.input.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.cfg.segmenter.num_classes

    # --- stages ---------------------------------------------------------------------------------
    def segment(self, images: Tensor) -> Dict[str, Tensor]:
        """(t, 3, Hp, Wp) normalised padded frames -> segmenter outputs (layouts in :class:`DAQWindow`)."""
        features = self.backbone(images)
        mask_features, _, multi_scale = self.pixel_decoder.forward_features(features)
        out = self.decoder(multi_scale, mask_features)
        C = self.cfg.segmenter.hidden_dim
        return {"pred_embds": out["pred_embds"][:, :C], "pred_logits": out["pred_logits"],
                "pred_masks": out["pred_masks"], "mask_features": mask_features}

    def track_window(self, seg: Dict[str, Tensor], state: Optional[DAQTrackState],
                     return_records: bool = False) -> Tuple[DAQTrackState, List[Dict[str, Tensor]]]:
        """Run the track module on one window's segmenter outputs; ``state=None`` starts a new video."""
        logits = seg["pred_logits"][0]
        valid = logits.softmax(-1)[..., :-1].max(-1)[0] > self.cfg.daq.aux_inference_select_threshold
        return self.tracker(seg["pred_embds"], seg["mask_features"].unsqueeze(0), seg["pred_masks"][0].transpose(0, 1),
                            valid, self.decoder.query_feat.weight, state, return_records=return_records)

    # --- the runner's step protocol (dvis_sdk.inference.runner) ----------------------------------
    def track(self, seg: Dict[str, Tensor], state: Optional[DAQTrackState]
              ) -> Tuple[Dict[str, Tensor], DAQTrackState, None]:
        """Step ``track``: advance the state over one window. The outputs only carry the window's segmenter
        ``pred_logits`` (frame count); DAQ's output exists at the end of the video (:meth:`finalize`)."""
        state, _ = self.track_window(seg, state)
        return {"pred_logits": seg["pred_logits"]}, state, None

    def finalize(self, state: DAQTrackState, windows: Optional[Sequence[Any]] = None) -> Dict[str, object]:
        """Step ``finalize``: the official online read-out of the video's state. ``pred_cls`` (n, K+1) per output
        sequence (mean of its stored logits), ``pred_masks`` (1, n, T, h, w) (its stored mask logits, -1e4
        elsewhere), ``seq_index`` (n,), ``padding_masks`` (n, T) and the ``state``."""
        T = state.num_frames
        mask_size = tuple(state.sequences[0].masks[0].shape) if state.sequences else (0, 0)
        rows = self.rows(state, T, mask_size)
        return {"pred_cls": rows.logits, "pred_masks": rows.masks.unsqueeze(0), "seq_index": rows.seq_index,
                "padding_masks": rows.padding, "state": state}

    def iter_windows(self, images: Tensor, state: Optional[DAQTrackState] = None,
                     return_records: bool = False) -> Iterator[DAQWindow]:
        """Yield one :class:`DAQWindow` per official window of 5 frames; pass ``state`` to continue a video."""
        for start in range(0, images.shape[0], WINDOW):
            seg = self.segment(images[start:start + WINDOW])
            state, records = self.track_window(seg, state, return_records)
            yield DAQWindow(start=start, segmenter=seg, state=state, records=records)

    def preprocess(self, frames: Tensor) -> Tensor:
        """(T, 3, H, W) RGB 0..255 -> normalised, zero-padded to the size divisibility."""
        return normalize_and_pad(frames.to(self.pixel_mean.device), self.cfg.input.pixel_mean,
                                 self.cfg.input.pixel_std, self.cfg.input.size_divisibility)

    def rows(self, state: DAQTrackState, num_frames: int, mask_size: Tuple[int, int],
             with_masks: bool = True) -> OnlineRows:
        """The official online read-out of a finished clip."""
        return online_rows(state, num_frames, self.cfg.daq.noise_frame_num, self.num_classes, mask_size, with_masks)


class OfflineDAQ(OnlineDAQ):
    """Segmenter + DAQ track module + DAQ refiner over the whole clip (official ``DVIS_DAQ_offline``)."""

    refines_at_end = True

    def __init__(self, cfg: DVISConfig):
        super().__init__(cfg)
        seg = cfg.segmenter
        self.refiner = TemporalRefiner(
            hidden_channel=seg.hidden_dim, feedforward_channel=seg.dim_feedforward, num_head=seg.nheads,
            decoder_layer_num=cfg.refiner.decoder_layers, mask_dim=seg.hidden_dim, class_num=seg.num_classes,
            windows=cfg.test.window_size, local_conv=cfg.daq.use_local_attn)

    def finalize(self, state: DAQTrackState, windows: Optional[Sequence[Any]] = None) -> Dict[str, object]:
        """Step ``finalize`` with the refiner: ``windows`` are the runner's tracked windows of the WHOLE video (their
        ``segmenter`` outputs); without them (``stream``, or the refiner switched off) the online read-out.

        Returns the refiner's ``pred_logits`` (1, T, n, K+1) / ``pred_masks`` (1, n, T, h, w) / ``pred_embds``,
        ``pred_cls`` (n, K+1) (its first frame: the official scores come from the refiner only), the
        ``selection`` (:func:`offline_selection`), ``frame_embeds`` and ``state``. With exactly one selected row
        the official code outputs nothing: ``pred_cls`` is then empty."""
        if not windows:
            return super().finalize(state)
        segs = [w.segmenter for w in windows]
        frame_embeds = torch.cat([s["pred_embds"] for s in segs], dim=2)  # (1, C, T, Q)
        seg_logits = torch.cat([s["pred_logits"] for s in segs], dim=1)[0]  # (T, Q, K+1)
        mask_features = torch.cat([s["mask_features"] for s in segs], dim=0).unsqueeze(0)
        T = seg_logits.shape[0]
        rows = self.rows(state, T, tuple(mask_features.shape[-2:]), with_masks=False)
        sel = offline_selection(state, rows, T, self.cfg.daq.offline_topk_num, self.cfg.daq.num_new_ins,
                                seg_logits, frame_embeds[0].permute(1, 2, 0))
        out: Dict[str, object] = {"selection": sel, "state": state, "frame_embeds": frame_embeds}
        if sel["instance_embeds"].shape[-1] <= 1:
            out.update(pred_cls=seg_logits.new_zeros((0, self.num_classes + 1)),
                       pred_masks=mask_features.new_zeros((1, 0, T) + tuple(mask_features.shape[-2:])))
            return out
        refined = self.refiner(sel["instance_embeds"], frame_embeds, mask_features)
        out.update(pred_logits=refined["pred_logits"], pred_masks=refined["pred_masks"],
                   pred_embds=refined["pred_embds"], pred_cls=refined["pred_logits"][0, 0])
        return out


def build_daq_model(cfg: DVISConfig) -> OnlineDAQ:
    """Build the DVIS-DAQ model ``cfg`` describes (online or offline), random weights, eval mode."""
    model = OfflineDAQ(cfg) if cfg.mode == "offline" else OnlineDAQ(cfg)
    return model.eval()
