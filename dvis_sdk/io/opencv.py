"""OpenCV capture opening with its own log lines silenced (we raise one clear error instead)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2

from .formats import VideoReadError

_LOG_LOCK = threading.Lock()
_log_state = {"depth": 0, "saved": None}


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own WARN/ERROR log lines while probing a file or codec: we raise a clear error instead.
    The log level is process-global, so nested/concurrent uses (prefetch threads) are reference-counted."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None:
        yield
        return
    with _LOG_LOCK:
        if _log_state["depth"] == 0:
            _log_state["saved"] = log.getLogLevel()
            log.setLogLevel(log.LOG_LEVEL_SILENT)
        _log_state["depth"] += 1
    try:
        yield
    finally:
        with _LOG_LOCK:
            _log_state["depth"] -= 1
            if _log_state["depth"] == 0:
                log.setLogLevel(_log_state["saved"])


def _ffmpeg_api() -> int:
    # Pin the FFmpeg backend when present: CAP_ANY may pick the image-sequence backend, which treats
    # printf-like names specially and gives confusing results for non-video files.
    try:
        if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            return cv2.CAP_FFMPEG
    except (AttributeError, cv2.error):
        pass
    return cv2.CAP_ANY


def _open_capture(path: Path) -> "cv2.VideoCapture":
    with _quiet_opencv():
        cap = cv2.VideoCapture(str(path), _ffmpeg_api())
    if not cap.isOpened():
        cap.release()
        size = path.stat().st_size if path.exists() else -1
        detail = "the file is empty (0 bytes)" if size == 0 else "OpenCV/FFmpeg cannot open it"
        raise VideoReadError(f"{path}: corrupt or empty video ({detail}); check the file plays in a media player, "
                             "or re-encode it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`")
    return cap

