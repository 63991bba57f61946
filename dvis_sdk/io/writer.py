"""A codec-robust video writer (FourCC per suffix, MJPG-in-AVI fallback, odd sizes padded)."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

import cv2
import numpy as np

from .formats import PathLike, VideoWriteError, _channel_problem
from .opencv import _quiet_opencv

# suffix -> FourCC codes to try, in order, before the final MJPG-in-AVI fallback.
_WRITE_CODECS = {
    ".mp4": ("mp4v",), ".m4v": ("mp4v",), ".mov": ("mp4v",), ".mkv": ("mp4v",),
    ".avi": ("MJPG",),
}
_FALLBACK = (".avi", "MJPG")


def _as_rgb_frame(item: Any, i: int) -> np.ndarray:
    # Accept the (index, frame) pairs a VideoSource yields, so write_video(path, source, fps) just works.
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], np.ndarray):
        item = item[1]
    if not isinstance(item, np.ndarray):
        raise TypeError(f"frame {i} is {type(item).__name__}; expected an (H, W, 3) uint8 RGB numpy array")
    problem = _channel_problem(item.shape)
    if problem is not None:
        raise ValueError(f"frame {i} is {problem}")
    if item.dtype != np.uint8:
        raise ValueError(f"frame {i} has dtype {item.dtype}; expected uint8 RGB in 0..255")
    return item


def write_video(path: PathLike, frames: Iterable[Any], fps: float, *, codec: Optional[str] = None) -> Path:
    """Encode (H, W, 3) uint8 RGB frames (or the ``(index, frame)`` pairs of a :class:`VideoSource`) to a file.

    Frames are consumed lazily (one in memory at a time). Codec choice: ``codec`` (a FourCC) if given, else
    ``mp4v`` for .mp4/.m4v/.mov/.mkv and ``MJPG`` for .avi; if that encoder is unavailable, falls back to MJPG in
    ``path.with_suffix(".avi")`` (with a warning). Odd frame sizes are padded by one edge-replicated row/column
    (the encoders silently crop to even sizes otherwise). Parent folders are created.

    Returns:
        The path actually written (differs from ``path`` only after the AVI fallback).

    Raises:
        VideoWriteError: no codec could open the file. ValueError/TypeError: bad ``fps`` or frames (empty input,
        gray/RGBA/non-uint8, frames of different sizes); frames before a bad one are already in the file.
    """
    path = Path(path).expanduser()
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r} (folders and arrays have no fps: pass e.g. 25)")
    suffix = path.suffix.lower()
    if codec is None and suffix not in _WRITE_CODECS:
        raise ValueError(f"{path}: cannot choose a codec for {suffix or 'no'} extension; use one of "
                         f"{', '.join(sorted(_WRITE_CODECS))} or pass codec=")
    if codec is not None and len(codec) != 4:
        raise ValueError(f"codec must be a 4-character FourCC such as 'mp4v' or 'MJPG', got {codec!r}")
    attempts = [(path, c) for c in ((codec,) if codec else _WRITE_CODECS[suffix])]
    fallback = (path.with_suffix(_FALLBACK[0]), _FALLBACK[1])
    if fallback not in attempts:
        attempts.append(fallback)

    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    first = _as_rgb_frame(first, 0)
    h, w = first.shape[:2]
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        warnings.warn(f"{path.name}: frame size {w}x{h} is odd; padding to {w + pad_w}x{h + pad_h} "
                      "(video encoders need even sizes)", stacklevel=2)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer, out, tried = None, None, []
    for out_path, fourcc in attempts:
        existed = out_path.exists()
        with _quiet_opencv():
            wr = cv2.VideoWriter(str(out_path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (w + pad_w, h + pad_h))
        if wr.isOpened():
            writer, out = wr, out_path
            break
        wr.release()
        tried.append(f"{fourcc} -> {out_path.name}")
        if not existed and out_path.exists() and out_path.stat().st_size == 0:
            out_path.unlink()
    if writer is None:
        raise VideoWriteError(f"{path}: no available video codec could write it (tried {'; '.join(tried)}). "
                              "Your OpenCV build may lack FFmpeg encoders: `pip install opencv-python` "
                              "(not -headless variants built without video I/O), or write image frames instead")
    if out != path:
        warnings.warn(f"{path}: {tried[0] if tried else 'requested codec'} unavailable; wrote {out.name} "
                      f"({attempts[-1][1]}) instead", stacklevel=2)

    def encode(f: np.ndarray) -> np.ndarray:
        bgr = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR)
        if pad_h or pad_w:
            bgr = cv2.copyMakeBorder(bgr, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        return bgr

    try:
        writer.write(encode(first))
        del first
        for i, item in enumerate(it, start=1):
            f = _as_rgb_frame(item, i)
            if f.shape[:2] != (h, w):
                raise ValueError(f"frame {i} is {f.shape[1]}x{f.shape[0]} (WxH) but the video is {w}x{h}; "
                                 "all frames must have the same size")
            writer.write(encode(f))
    finally:
        writer.release()
    if not out.exists() or out.stat().st_size == 0:
        raise VideoWriteError(f"{out}: the encoder opened but wrote nothing (disk full or codec failure?)")
    return out
