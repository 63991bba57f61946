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
from torch import Tensor

from ...config import DVISConfig
from ..refiner import TemporalRefiner
from ..segmenter import SegmenterModel
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


class OnlineDAQ(SegmenterModel):
    """Segmenter + DAQ track module (official ``DVIS_DAQ_online``), run by :class:`dvis_sdk.inference.runner.
    WindowRunner` through the steps ``segment`` / ``track`` / ``finalize``."""

    #: the official DAQ inference runs windows of 5 frames (the result does not depend on it: both the segmenter
    #: and the track module work frame by frame)
    default_window_size = WINDOW
    #: the DAQ refiner sees the whole video once the state is final (OfflineDAQ)
    refines_at_end = False

    def __init__(self, cfg: DVISConfig):
        if cfg.variant != "daq" or cfg.daq is None:
            raise ValueError(f"OnlineDAQ needs a DVIS-DAQ config (variant 'daq'), got variant {cfg.variant!r}")
        seg, d = cfg.segmenter, cfg.daq
        if d.num_new_ins != seg.num_queries:
            raise ValueError(f"daq.num_new_ins ({d.num_new_ins}) must equal segmenter.num_queries ({seg.num_queries})")
        super().__init__(cfg, decoder_variant="dvis++")
        self.tracker = DAQTrackModule(
            hidden_dim=seg.hidden_dim, feedforward_dim=seg.dim_feedforward, num_head=seg.nheads,
            decoder_layer_num=cfg.tracker.decoder_layers, mask_dim=seg.hidden_dim, num_classes=seg.num_classes,
            num_new_ins=d.num_new_ins, num_slots=d.num_slots, inference_select_threshold=d.inference_select_threshold,
            dis_fg_threshold=d.dis_fg_threshold, ovis_infer=d.ovis_infer, kick_out=d.kick_out)

    # --- stages ---------------------------------------------------------------------------------
    def segment(self, images: Tensor) -> Dict[str, Tensor]:
        """(t, 3, Hp, Wp) normalised padded frames -> segmenter outputs (layouts in :class:`DAQWindow`)."""
        out, mask_features = self.run_segmenter(images)
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
