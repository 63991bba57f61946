"""``open_video``: pick the frame source for a path, folder, image list or array."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .file_source import _FileSource
from .formats import IMAGE_EXTENSIONS, PathLike, VideoReadError, _check_positive_int, _list_images
from .memory_sources import _ArraySource, _ImageSequenceSource
from .source import VideoSource


def open_video(source: Union[PathLike, np.ndarray, Sequence[np.ndarray], Sequence[PathLike]], *, stride: int = 1,
               max_frames: Optional[int] = None, start: Optional[float] = None,
               end: Optional[float] = None) -> VideoSource:
    """Open a frame source for lazy, bounded-memory decoding.

    Args:
        source: a video file (.mp4/.avi/.mov/.mkv/.webm/... anything OpenCV's FFmpeg decodes); a folder of frame
            images (jpg/jpeg/png/bmp/webp, natural order: ``frame2`` before ``frame10``; hidden files ignored); a
            list of image paths (kept in the given order); a (T, H, W, 3) uint8 RGB array; a list of (H, W, 3)
            uint8 RGB arrays. A single image file is a one-frame source.
        stride: keep every ``stride``-th frame of the range.
        max_frames: stop after yielding this many frames.
        start, end: the range ``[start, end)``: **seconds** for video files (frame ``i`` is kept iff
            ``start <= i / fps < end``); **frame indices** (ints) for folders, image lists and arrays.
            Stride counts from ``start``.

    Raises:
        VideoReadError: (a ValueError) for a missing path, a file that is not a decodable video, an empty folder,
            gray/RGBA/non-uint8 frames, ... The message names the path and the fix. Problems that can only be seen
            while streaming (an image that fails to decode, a size mismatch, a truncated video) are raised during
            iteration, after every good frame before them has been yielded.
    """
    _check_positive_int("stride", stride, allow_none=False)
    _check_positive_int("max_frames", max_frames, allow_none=True)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.exists():
            raise VideoReadError(f"{path}: no such file or directory")
        if path.is_dir():
            return _ImageSequenceSource(_list_images(path), name=path.resolve().name, path=path, stride=stride,
                                        max_frames=max_frames, start=start, end=end)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return _ImageSequenceSource([path], name=path.stem, path=path, stride=stride, max_frames=max_frames,
                                        start=start, end=end)
        return _FileSource(path, stride=stride, max_frames=max_frames, start=start, end=end)
    if isinstance(source, np.ndarray):
        return _ArraySource(source, stride=stride, max_frames=max_frames, start=start, end=end)
    if isinstance(source, (list, tuple)):
        if source and all(isinstance(s, (str, os.PathLike)) for s in source):
            files = [Path(s).expanduser() for s in source]
            missing = [f for f in files if not f.is_file()]
            if missing:
                raise VideoReadError(f"{missing[0]}: no such image file ({len(missing)} of {len(files)} missing)")
            return _ImageSequenceSource(files, name="images", path=None, stride=stride, max_frames=max_frames,
                                        start=start, end=end)
        return _ArraySource(source, stride=stride, max_frames=max_frames, start=start, end=end)
    if type(source).__module__.startswith("torch"):
        raise TypeError("open_video does not take tensors: pass frames.permute(0, 2, 3, 1).byte().numpy() "
                        "((T, H, W, 3) uint8 RGB)")
    raise TypeError(f"unsupported video source of type {type(source).__name__}: give a video file, a folder of "
                    "images, a list of image paths, a (T, H, W, 3) uint8 array or a list of (H, W, 3) uint8 arrays")


# ---- background prefetching ------------------------------------------------------------------------------------
