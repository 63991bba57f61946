"""The per-frame segmenter every family shares: backbone, Mask2Former pixel decoder and video masked-attention
decoder, plus the input normalisation. DVIS / DVIS++ (:mod:`.dvis`) and DVIS-DAQ (:mod:`.daq.model`) put their
tracker on top of it; the modules keep the official top-level names (``backbone.``, ``sem_seg_head.pixel_decoder.``
-> ``pixel_decoder.``, ``sem_seg_head.predictor.`` -> ``decoder.``)."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from ..config import DVISConfig
from ..ops.preprocess import normalize_and_pad
from .backbones import build_backbone
from .decoder import VideoMaskedAttentionDecoder
from .pixel_decoder import MSDeformAttnPixelDecoder


class SegmenterModel(nn.Module):
    """Base of the DVIS-family models: builds the segmenter of ``cfg`` (decoder ``decoder_variant``: ``"dvis++"``
    with the re-identification branch, or ``"dvis"``)."""

    def __init__(self, cfg: DVISConfig, decoder_variant: str):
        super().__init__()
        self.cfg = cfg
        seg = cfg.segmenter
        self.backbone = build_backbone(cfg.backbone)
        shapes = {k: (self.backbone.out_channels[k], self.backbone.out_strides[k]) for k in seg.in_features}
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            input_shape=shapes, conv_dim=seg.convs_dim, mask_dim=seg.mask_dim, norm=seg.norm,
            transformer_nheads=seg.transformer_enc_nheads,
            transformer_dim_feedforward=seg.transformer_enc_dim_feedforward,
            transformer_enc_layers=seg.transformer_enc_layers, transformer_in_features=seg.deform_in_features,
            common_stride=seg.common_stride)
        self.decoder = VideoMaskedAttentionDecoder(
            in_channels=seg.convs_dim, hidden_dim=seg.hidden_dim, num_queries=seg.num_queries, nheads=seg.nheads,
            dim_feedforward=seg.dim_feedforward, dec_layers=seg.dec_layers, pre_norm=seg.pre_norm,
            mask_dim=seg.mask_dim,
            enforce_input_project=seg.enforce_input_proj, num_classes=seg.num_classes, variant=decoder_variant,
            num_reid_head_layers=seg.num_reid_head_layers, reid_hidden_dim=seg.reid_hidden_dim)
        self.register_buffer("pixel_mean", torch.tensor(cfg.input.pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.input.pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.cfg.segmenter.num_classes

    def run_segmenter(self, images: Tensor) -> Tuple[Dict[str, Tensor], Tensor]:
        """(t, 3, Hp, Wp) normalised padded frames -> (decoder outputs, mask features (t, mask_dim, Hp/4, Wp/4))."""
        features = self.backbone(images)
        mask_features, _, multi_scale = self.pixel_decoder.forward_features(features)
        return self.decoder(multi_scale, mask_features), mask_features

    def preprocess(self, frames: Tensor) -> Tensor:
        """(T, 3, H, W) RGB 0..255 -> normalised, zero-padded to the size divisibility."""
        # the mean / std buffers (already on the device, the same float32 values as the config's): a list would be
        # copied host -> device, synchronising the stream, on every window (a model cast to half keeps the lists)
        exact = self.pixel_mean.dtype == torch.float32
        mean = self.pixel_mean.view(-1) if exact else self.cfg.input.pixel_mean
        std = self.pixel_std.view(-1) if exact else self.cfg.input.pixel_std
        return normalize_and_pad(frames.to(self.pixel_mean.device), mean, std, self.cfg.input.size_divisibility)
