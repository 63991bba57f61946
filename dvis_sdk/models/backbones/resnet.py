"""detectron2-style ResNet backbone (BasicStem + BottleneckBlocks, FrozenBatchNorm2d).

State-dict keys are identical to detectron2's ``build_resnet_backbone`` output, e.g.
``stem.conv1.weight``, ``stem.conv1.norm.running_var``, ``res2.0.shortcut.weight``,
``res3.1.conv2.norm.bias`` (inside a full DVIS checkpoint they carry the ``backbone.`` prefix).
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layers.conv import Conv2d
from ...layers.impl import ImplChoices, check_choice
from ...runtime import fp32_under_autocast

__all__ = ["FrozenBatchNorm2d", "Conv2d", "BasicStem", "BottleneckBlock", "ResNet"]

# Blocks per stage (res2..res5) as in detectron2; 18/34 use BasicBlock, which is not implemented.
_BLOCKS_PER_STAGE = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_STAGE_INDEX = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (all four are buffers).

    Keys: ``weight``, ``bias``, ``running_mean``, ``running_var`` - no ``num_batches_tracked``.
    detectron2's own FrozenBatchNorm2d does not drop a stray ``num_batches_tracked`` either (its
    checkpointer just loads non-strictly and logs it), so a strict load here rejects it too.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        # detectron2 initialises running_var to 1 - eps so that a fresh layer is an exact identity.
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: Tensor) -> Tensor:
        # Same fused op as detectron2's no-grad path; its grad path (torch.batch_norm) is the same math.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, eps={self.eps}"


def _make_norm(norm: str, channels: int) -> nn.Module:
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm in ("BN", "SyncBN"):
        # In eval a SyncBatchNorm behaves like BatchNorm2d and has the same keys.
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unsupported norm {norm!r} (expected 'FrozenBN', 'BN' or 'SyncBN')")


class BasicStem(ImplChoices, nn.Module):
    """7x7/2 conv + norm + ReLU + 3x3/2 max-pool (overall stride 4). ``stem_fp32``: run in fp32 under autocast
    (:mod:`dvis_sdk.layers.impl`)."""

    impl_choices = ("stem_fp32",)

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "FrozenBN",
                 stem_fp32: bool = True):
        super().__init__()
        self.stem_fp32 = check_choice("stem_fp32", stem_fp32)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = 4
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False,
                            norm=_make_norm(norm, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        return fp32_under_autocast(self._forward, x, self.stem_fp32, self.conv1.weight.dtype)

    def _forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (grouped, dilated) -> 1x1 bottleneck with a projection shortcut when channels change.

    ``stride_in_1x1=False`` (detectron2 / torchvision convention, used by DVIS) puts the stride in the
    3x3 conv; ``True`` is the original MSRA layout with the stride in the first 1x1 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int = 1,
                 num_groups: int = 1, norm: str = "FrozenBN", stride_in_1x1: bool = False,
                 dilation: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        if in_channels != out_channels:
            self.shortcut = Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
                                   norm=_make_norm(norm, out_channels))
        else:
            self.shortcut = None
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv2d(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, bias=False,
                            norm=_make_norm(norm, bottleneck_channels))
        self.conv2 = Conv2d(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
                            padding=dilation, dilation=dilation, groups=num_groups, bias=False,
                            norm=_make_norm(norm, bottleneck_channels))
        self.conv3 = Conv2d(bottleneck_channels, out_channels, kernel_size=1, bias=False,
                            norm=_make_norm(norm, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """detectron2 ResNet-50/101/152 backbone (bottleneck blocks), stages named ``res2``..``res5``.

    Only the stages up to the deepest requested output are built (as detectron2 does), so the
    state dict holds exactly the keys of the official module for the same ``out_features``.

    forward(x: (N, in_channels, H, W)) -> {name: (N, out_channels[name], H/s, W/s)} for each name in
    ``out_features`` (strides s = 4, 8, 16, 32; res5 stride 16 with ``res5_dilation=2``).
    """

    def __init__(self, depth: int = 50, stem_out_channels: int = 64, res2_out_channels: int = 256,
                 width_per_group: int = 64, num_groups: int = 1, stride_in_1x1: bool = False,
                 res5_dilation: int = 1,
                 out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
                 in_channels: int = 3, norm: str = "FrozenBN", stem_fp32: bool = True):
        super().__init__()
        if depth not in _BLOCKS_PER_STAGE:
            raise ValueError(f"depth {depth} not supported (bottleneck depths: {sorted(_BLOCKS_PER_STAGE)})")
        if res5_dilation not in (1, 2):
            raise ValueError(f"res5_dilation must be 1 or 2, got {res5_dilation}")
        unknown = [f for f in out_features if f not in _STAGE_INDEX and f != "stem"]
        if unknown or not out_features:
            raise ValueError(f"out_features must be a non-empty subset of stem, res2..res5; got {out_features}")
        self.out_features = tuple(out_features)

        self.stem = BasicStem(in_channels, stem_out_channels, norm=norm, stem_fp32=stem_fp32)
        strides = {"stem": self.stem.stride}
        channels = {"stem": stem_out_channels}

        blocks_per_stage = _BLOCKS_PER_STAGE[depth]
        max_stage = max((_STAGE_INDEX[f] for f in self.out_features if f != "stem"), default=1)
        self.stage_names = []
        cur_stride, in_ch = self.stem.stride, stem_out_channels
        out_ch, bottleneck = res2_out_channels, num_groups * width_per_group
        for idx, stage_idx in enumerate(range(2, max_stage + 1)):
            dilation = res5_dilation if stage_idx == 5 else 1
            first_stride = 1 if idx == 0 or (stage_idx == 5 and dilation == 2) else 2
            blocks = []
            for b in range(blocks_per_stage[idx]):
                blocks.append(BottleneckBlock(in_ch if b == 0 else out_ch, out_ch,
                                              bottleneck_channels=bottleneck,
                                              stride=first_stride if b == 0 else 1, num_groups=num_groups,
                                              norm=norm, stride_in_1x1=stride_in_1x1, dilation=dilation))
            name = f"res{stage_idx}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            cur_stride *= first_stride
            strides[name], channels[name] = cur_stride, out_ch
            in_ch, out_ch, bottleneck = out_ch, out_ch * 2, bottleneck * 2

        self.out_channels: Dict[str, int] = {f: channels[f] for f in self.out_features}
        self.out_strides: Dict[str, int] = {f: strides[f] for f in self.out_features}

    @property
    def size_divisibility(self) -> int:
        return 32

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        """x: (N, C, H, W) normalised image batch -> dict of (N, C_l, H/s, W/s) features."""
        if x.dim() != 4:
            raise ValueError(f"ResNet takes an input of shape (N, C, H, W); got {tuple(x.shape)}")
        outputs: Dict[str, Tensor] = {}
        x = self.stem(x)
        if "stem" in self.out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self.out_features:
                outputs[name] = x
        return outputs

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        """detectron2 ``FREEZE_AT``: 1 freezes the stem, 2 also res2, ... (stops gradients only)."""
        modules = [self.stem] + [getattr(self, n) for n in self.stage_names]
        for m in modules[:max(freeze_at, 0)]:
            for p in m.parameters():
                p.requires_grad_(False)
        return self
