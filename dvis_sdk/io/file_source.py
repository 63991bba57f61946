"""Video files decoded lazily with OpenCV/FFmpeg (seek, exact counting, truncation checks)."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import cv2
import numpy as np

from .formats import VideoReadError
from .opencv import _open_capture
from .source import VideoSource

# MP4/MOV/AVI carry a frame index, so CAP_PROP_FRAME_COUNT is the real sample count; other containers
# (MKV, WebM, ...) only give duration * fps, which can overshoot (e.g. an audio track longer than the video).
_INDEXED_CONTAINERS = (".mp4", ".m4v", ".mov", ".avi", ".3gp")
# Below this many frames, skipping to `start` by grabbing is cheap and needs no trust in the seek.
_SEEK_MIN_FRAMES = 32


class _FileSource(VideoSource):
    kind = "file"

    def __init__(self, path: Path, *, stride: int, max_frames: Optional[int], start: Optional[float],
                 end: Optional[float]):
        cap = _open_capture(path)
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            ok, bgr = cap.read()
        finally:
            cap.release()
        if not ok or bgr is None:
            raise VideoReadError(f"{path}: corrupt or empty video (opened, but not a single frame could be decoded)")
        self._reported = count if count > 0 else None
        self._exact: Optional[int] = None
        self._times: Dict[int, float] = {}  # yielded index -> the decoder's timestamp (s), filled while iterating
        fps_ok = math.isfinite(fps) and fps > 0
        first, last = _seconds_to_range(path, fps if fps_ok else None, start, end)
        if self._reported is not None and first >= self._reported:
            dur = f" ({self._reported / fps:.2f} s)" if fps_ok else ""
            raise VideoReadError(f"{path}: start={start} s is at or past the end of the video: it has "
                                 f"{self._reported} frames{dur}")
        super().__init__(name=path.stem, path=path, height=bgr.shape[0], width=bgr.shape[1],
                         fps=fps if fps_ok else None, stride=stride, max_frames=max_frames, first=first, last=last)

    @property
    def length_is_exact(self) -> bool:
        return self._exact is not None

    def _total_frames(self) -> Optional[int]:
        return self._exact if self._exact is not None else self._reported

    def count_exact_total(self) -> int:
        if self._exact is None:
            cap = _open_capture(self.path)
            n, state = 0, {"skipped": 0}
            try:
                while self._grab(cap, n, state):
                    n += 1
            finally:
                cap.release()
            self._exact = n
        return self._exact

    def timestamp(self, index: int) -> Optional[float]:
        """Time in seconds of the ``index``-th yielded frame: the decoder's timestamp once the frame was decoded
        (exact for variable frame rates), else ``source_index / fps``."""
        return self._times.get(index, super().timestamp(index))

    def _seek(self, cap: "cv2.VideoCapture", target: int) -> Tuple["cv2.VideoCapture", int]:
        """Position ``cap`` so that the next grab returns frame ``target``; returns (capture, position)."""
        if target >= _SEEK_MIN_FRAMES:
            # FFmpeg seeks to the previous keyframe and decodes forward; trust it only if it reports the exact
            # position, otherwise fall back to grabbing from the start (always frame-accurate).
            if cap.set(cv2.CAP_PROP_POS_FRAMES, target) and int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == target:
                return cap, target
            cap.release()
            cap = _open_capture(self.path)
        pos = 0
        while pos < target and cap.grab():
            pos += 1
        return cap, pos

    def _grab(self, cap: "cv2.VideoCapture", pos: int, state: dict) -> bool:
        """Grab the next decodable frame. Frames the decoder fails on in the middle of the stream (it resumes after
        them) are skipped and counted in ``state["skipped"]``; False at the real end of the stream."""
        if cap.grab():
            return True
        expected = self._exact if self._exact is not None else self._reported
        failed = 1
        while expected is not None and pos + state["skipped"] + failed < expected:  # bounded by the frames expected
            if cap.grab():
                state["skipped"] += failed
                return True
            failed += 1
        return False

    def _iter_frames(self) -> Iterator[Tuple[int, np.ndarray]]:
        path = self.path
        cap = _open_capture(path)
        state = {"skipped": 0}
        try:
            cap, pos = self._seek(cap, self._first)      # pos = index of the next frame a grab() returns
            target, yielded = self._first, 0
            while (self.max_frames is None or yielded < self.max_frames) and \
                    (self._last is None or target < self._last):
                # grab() without retrieve() skips the colour conversion for frames dropped by the stride
                while pos <= target:
                    if not self._grab(cap, pos, state):
                        self._end_of_stream(pos, yielded, state)
                        return
                    pos += 1
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)  # the frame's own time: right for variable frame rates too
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:  # grabbed but not decodable: skip it like a failed grab
                    state["skipped"] += 1
                    target += self.stride
                    continue
                if bgr.shape[:2] != (self.height, self.width):
                    raise VideoReadError(f"{path}: frame size changes mid-video at frame {target}: "
                                         f"{bgr.shape[1]}x{bgr.shape[0]} instead of {self.width}x{self.height}; "
                                         "re-encode to one size, e.g. `ffmpeg -i in -vf scale=W:H out.mp4`")
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                del bgr
                if math.isfinite(msec) and msec >= 0:
                    self._times[yielded] = msec / 1000.0
                yield yielded, frame
                del frame  # do not keep the last frame alive while decoding the next one
                yielded += 1
                target += self.stride
        finally:
            cap.release()
            if state["skipped"]:
                warnings.warn(f"{path}: skipped {state['skipped']} frame(s) that could not be decoded (damaged or "
                              "truncated file); the other frames were used, so yielded frame indices after the "
                              "first skipped frame no longer match the file's frame numbers", stacklevel=2)

    def _end_of_stream(self, pos: int, yielded: int, state: dict) -> None:
        """The decoder returned no more frames at source index ``pos``: the normal end, or frames lost to damaged
        data or a truncated file (counted as skipped: the caller warns once; an error only if nothing decoded,
        which :func:`open_video` already refuses)."""
        if self._exact is None and self.path.suffix.lower() in _INDEXED_CONTAINERS and self._reported is not None:
            # an exact frame index: frames it lists that never decoded were lost
            state["skipped"] += max(0, self._reported - pos - state["skipped"])
        self._exact = pos  # we decoded through to the real end: len() is exact from now on


def _seconds_to_range(path: Path, fps: Optional[float], start: Optional[float],
                      end: Optional[float]) -> Tuple[int, Optional[int]]:
    """Seconds -> source frame range [first, last): frame i is kept iff start <= i / fps < end."""
    if start is None and end is None:
        return 0, None
    for label, v in (("start", start), ("end", end)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
            raise ValueError(f"{label} must be a non-negative number of seconds, got {v!r}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end} s) must be greater than start ({start} s)")
    if fps is None:
        raise VideoReadError(f"{path}: the video reports no frame rate, so start/end in seconds cannot be used")
    eps = 1e-6  # tolerate float error: start=1.0 at 29.97 fps must not skip the frame at exactly 1.0 s
    first = 0 if start is None else max(0, math.ceil(start * fps - eps))
    last = None if end is None else math.ceil(end * fps - eps)
    if last is not None and last <= first:
        raise ValueError(f"the range start={start} s, end={end} s contains no frame at {fps:g} fps")
    return first, last


