"""The official DVIS preprocessing: resize shortest edge, normalise, pad (pure functions). The one copy used by
inference (:meth:`OnlineDVIS.preprocess`) and training (:func:`pad_clips`)."""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["resized_shape", "resize_frame", "padded_size", "normalize_and_pad", "pad_clips"]


def resized_shape(height: int, width: int, short_edge: int, max_size: int) -> Tuple[int, int]:
    """Output (h, w) of detectron2's ``ResizeShortestEdge`` for one test size (same rounding)."""
    scale = short_edge / min(height, width)
    if height < width:
        newh, neww = short_edge, scale * width
    else:
        newh, neww = scale * height, short_edge
    if max(newh, neww) > max_size:
        rescale = max_size / max(newh, neww)
        newh, neww = newh * rescale, neww * rescale
    return int(newh + 0.5), int(neww + 0.5)


def resize_frame(frame: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize one (H, W, 3) uint8 RGB frame to ``size`` = (h, w) as detectron2 does at test time
    (PIL bilinear, which low-pass filters when shrinking; OpenCV's bilinear does not)."""
    from PIL import Image

    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))


def resize_frames_tensor(frames: Tensor, size: Tuple[int, int]) -> Tensor:
    """Resize (T, 3, H, W) uint8 RGB frames to ``size`` = (h, w) where they are (a GPU: no host round trip), with
    the same filter as :func:`resize_frame` (bilinear that low-pass filters when shrinking, torch's ``antialias``);
    PIL rounds in fixed point, so values may differ from it by one grey level."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    x = F.interpolate(frames.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def padded_size(height: int, width: int, size_divisibility: int) -> Tuple[int, int]:
    """(h, w) rounded up to multiples of ``size_divisibility`` (unchanged for <= 1)."""
    d = max(int(size_divisibility), 1)
    return int(math.ceil(height / d) * d), int(math.ceil(width / d) * d)


def normalize_and_pad(frames: Tensor, pixel_mean: Union[Sequence[float], Tensor],
                      pixel_std: Union[Sequence[float], Tensor], size_divisibility: int = 32,
                      pad_to: Optional[Tuple[int, int]] = None) -> Tensor:
    """(T, 3, H, W) RGB 0..255 -> normalised, zero-padded (bottom/right, AFTER normalisation) to a multiple
    of ``size_divisibility`` (or to ``pad_to`` = (Hp, Wp)), as detectron2's ``ImageList.from_tensors``.
    Returns (T, 3, Hp, Wp) float32."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames of shape (T, 3, H, W), got {tuple(frames.shape)}")
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    x = (frames.to(torch.float32) - mean) / std
    h, w = x.shape[-2:]
    hp, wp = pad_to if pad_to is not None else padded_size(h, w, size_divisibility)
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, wp - w, 0, hp - h), value=0.0)
    return x


def pad_clips(frames: Sequence[Tensor], pixel_mean: Sequence[float], pixel_std: Sequence[float],
              size_divisibility: int = 32) -> Tensor:
    """Normalise clips (each (t, 3, h, w) RGB 0..255, sizes may differ) and zero-pad them (after normalising, as
    detectron2's ImageList) to one size divisible by ``size_divisibility``: (B*t, 3, Hp, Wp)."""
    size = padded_size(max(f.shape[-2] for f in frames), max(f.shape[-1] for f in frames), size_divisibility)
    return torch.cat([normalize_and_pad(f, pixel_mean, pixel_std, pad_to=size) for f in frames], 0)
