"""Image backbones with official detectron2 / Mask2Former / DVIS++ state-dict keys.

Every backbone maps (N, 3, H, W) normalised RGB to ``{"res2".."res5": (N, C_l, H/s, W/s)}`` and exposes
``out_channels`` / ``out_strides`` dicts.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from ...config import BackboneConfig


def build_backbone(cfg: BackboneConfig) -> nn.Module:
    """Build the backbone described by ``cfg`` (random weights; load a checkpoint afterwards)."""
    if cfg.type == "resnet":
        from .resnet import ResNet
        return ResNet(**dataclasses.asdict(cfg.resnet))
    if cfg.type == "swin":
        from .swin import SwinTransformer
        return SwinTransformer(**dataclasses.asdict(cfg.swin))
    if cfg.type == "vit_adapter":
        from .vit_adapter import ViTAdapter
        return ViTAdapter(**dataclasses.asdict(cfg.vit_adapter))
    raise ValueError(f"unknown backbone type {cfg.type!r}")
