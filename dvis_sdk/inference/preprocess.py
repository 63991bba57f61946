"""The official DVIS test-time preprocessing: resize shortest edge, normalise, pad (pure functions)."""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


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


def normalize_and_pad(frames: Tensor, pixel_mean: Sequence[float], pixel_std: Sequence[float],
                      size_divisibility: int = 32) -> Tensor:
    """(T, 3, H, W) RGB 0..255 -> normalised, zero-padded (bottom/right, AFTER normalisation) to a multiple
    of ``size_divisibility``, as detectron2's ``ImageList.from_tensors``. Returns (T, 3, Hp, Wp) float32."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames of shape (T, 3, H, W), got {tuple(frames.shape)}")
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=frames.device).view(1, 3, 1, 1)
    x = (frames.to(torch.float32) - mean) / std
    h, w = x.shape[-2:]
    if size_divisibility > 1:
        hp = int(math.ceil(h / size_divisibility) * size_divisibility)
        wp = int(math.ceil(w / size_divisibility) * size_divisibility)
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, wp - w, 0, hp - h), value=0.0)
    return x
