"""detectron2-style ``Conv2d`` (conv -> optional norm -> optional activation), pure PyTorch.

Official checkpoints store such a layer as ``<name>.weight``, ``<name>.bias`` and, when it has a
norm, ``<name>.norm.<param>``; subclassing ``nn.Conv2d`` with a ``norm`` child reproduces exactly
those keys.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch.nn.functional as F
from torch import Tensor, nn


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with optional ``norm`` module and ``activation`` callable (norm before activation).

    Accepts every ``nn.Conv2d`` argument plus the keyword-only ``norm`` and ``activation``.
    """

    def __init__(self, *args, norm: Optional[nn.Module] = None,
                 activation: Optional[Callable[[Tensor], Tensor]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


def get_norm(norm: Optional[str], out_channels: int) -> Optional[nn.Module]:
    """The subset of detectron2's ``get_norm`` the DVIS heads use: ``""``/None -> None, "GN" -> GroupNorm(32, C),
    "BN" -> BatchNorm2d(C)."""
    if norm is None or norm == "":
        return None
    if norm == "GN":
        return nn.GroupNorm(32, out_channels)
    if norm == "BN":
        return nn.BatchNorm2d(out_channels)
    raise ValueError(f"unsupported norm {norm!r} (expected '', 'GN' or 'BN')")
