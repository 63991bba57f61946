"""Deprecated location: video input / output moved to :mod:`dvis_sdk.io`; this re-export keeps old imports working."""
from ..io import (  # noqa: F401
    IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VideoReadError, VideoSource, VideoWriteError, natural_sort_key, open_video,
    prefetch, write_video,
)

__all__ = [
    "VideoReadError", "VideoWriteError", "VideoSource", "open_video", "prefetch", "write_video",
    "natural_sort_key", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS",
]
