"""Video input / output: lazy frame sources, background prefetching and a codec-robust writer.

>>> src = open_video("clip.mp4", stride=2, start=1.0, end=5.0)   # doctest: +SKIP
>>> len(src), src.height, src.width, src.fps                      # doctest: +SKIP
>>> for start, chunk in prefetch(src.iter_chunks(16)):            # doctest: +SKIP
...     ...                                                       # chunk: (t, H, W, 3) uint8 RGB

Everything here yields **RGB** ``uint8`` frames of shape ``(H, W, 3)`` (OpenCV decodes BGR; we convert once,
at the source, so no caller ever has to think about channel order). Frames are decoded lazily, one at a time:
a source never holds more than the frame being decoded, so arbitrarily long videos stream in bounded memory.

Layout: ``formats`` (extensions, errors, image checks), ``opencv`` (capture opening, log silencing),
``source`` (the base class), ``file_source`` (video files), ``memory_sources`` (image folders / lists, arrays),
``open`` (:func:`open_video`), ``prefetch``, ``writer`` (:func:`write_video`).
"""
from .formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoReadError, VideoWriteError, natural_sort_key
from .open import open_video
from .prefetch import prefetch
from .source import VideoSource
from .writer import write_video

__all__ = [
    "VideoReadError", "VideoWriteError", "VideoSource", "open_video", "prefetch", "write_video",
    "natural_sort_key", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS",
]
