"""Video input / output: lazy frame sources, background prefetching and a codec-robust writer.

>>> src = open_video("clip.mp4", stride=2, start=1.0, end=5.0)   # doctest: +SKIP
>>> len(src), src.height, src.width, src.fps                      # doctest: +SKIP
>>> for start, chunk in prefetch(src.iter_chunks(16)):            # doctest: +SKIP
...     ...                                                       # chunk: (t, H, W, 3) uint8 RGB

Everything here yields **RGB** ``uint8`` frames of shape ``(H, W, 3)`` (OpenCV decodes BGR; we convert once,
at the source, so no caller ever has to think about channel order). Frames are decoded lazily, one at a time:
a source never holds more than the frame being decoded, so arbitrarily long videos stream in bounded memory.
"""
from __future__ import annotations

import math
import os
import queue
import re
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import cv2
import numpy as np

__all__ = [
    "VideoReadError", "VideoWriteError", "VideoSource", "open_video", "prefetch", "write_video",
    "natural_sort_key", "VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# MP4/MOV/AVI carry a frame index, so CAP_PROP_FRAME_COUNT is the real sample count; other containers
# (MKV, WebM, ...) only give duration * fps, which can overshoot (e.g. an audio track longer than the video).
_INDEXED_CONTAINERS = (".mp4", ".m4v", ".mov", ".avi", ".3gp")
# Below this many frames, skipping to `start` by grabbing is cheap and needs no trust in the seek.
_SEEK_MIN_FRAMES = 32

PathLike = Union[str, os.PathLike]
T = TypeVar("T")


class VideoReadError(ValueError):
    """A video / frame source cannot be read. The message names the offending path (and frame) and the fix."""


class VideoWriteError(RuntimeError):
    """No available codec could write the requested video file."""


def natural_sort_key(name: str) -> Tuple[Any, ...]:
    """Sort key that orders embedded numbers numerically: ``frame2 < frame10`` (case-insensitive)."""
    parts = re.split(r"(\d+)", name)
    # (is_number, value) pairs keep int/str comparisons well-typed when names differ in shape.
    return tuple((1, int(p), p) if p.isdigit() else (0, p.lower(), p) for p in parts if p != "")


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


def _channel_problem(shape: Tuple[int, ...]) -> Optional[str]:
    """Describe why an image/frame shape is not (H, W, 3), or None if it is."""
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return ("grayscale (1 channel); convert it to 3-channel RGB first, e.g. "
                "np.repeat(frame[..., None], 3, axis=-1) or cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)")
    if len(shape) == 3 and shape[2] == 4:
        return ("RGBA (4 channels, has an alpha channel); drop or composite the alpha first, e.g. frame[..., :3] "
                "or PIL.Image.open(p).convert('RGB')")
    if len(shape) != 3 or shape[2] != 3:
        return f"of shape {tuple(shape)}, not (H, W, 3) RGB"
    return None


def _read_image(path: Path) -> np.ndarray:
    """Decode one image file to (H, W, 3) uint8 RGB, with IMREAD_UNCHANGED so gray/alpha/16-bit are detected
    (and rejected with a fix) instead of silently converted. EXIF orientation is NOT applied (frames extracted
    from videos carry none)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
    except OSError as e:
        raise VideoReadError(f"{path}: cannot read image file ({e})") from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise VideoReadError(f"{path}: cannot decode image (empty, corrupt or unsupported format)")
    if img.dtype != np.uint8:
        raise VideoReadError(f"{path}: image is {img.dtype} ({img.dtype.itemsize * 8}-bit); expected 8-bit RGB. "
                             "Convert it first, e.g. (img // 257).astype(np.uint8) for 16-bit images")
    problem = _channel_problem(img.shape)
    if problem is not None:
        raise VideoReadError(f"{path}: image is {problem}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _check_positive_int(name: str, value: Optional[int], allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")


class VideoSource:
    """A lazily decoded sequence of (H, W, 3) uint8 RGB frames. Create with :func:`open_video`.

    Attributes:
        kind: ``"file"``, ``"folder"`` (image files) or ``"array"`` (in-memory frames).
        name: file stem / folder name / ``"array"``: handy for naming outputs.
        path: the file or folder, ``None`` for in-memory frames.
        height, width: frame size (every yielded frame has it, or iteration raises).
        fps: frames per second of a video file (of the *source*; divide by ``stride`` for the yielded frames),
            ``None`` for folders/arrays or when the container has no usable frame rate.
        stride, max_frames: the sampling requested.

    Iterating yields ``(index, frame)`` where ``index`` counts the *yielded* frames (0, 1, 2, ...); use
    :meth:`source_index` / :meth:`timestamp` to map it back to the original video. Every iteration starts from
    the beginning of the selected range, so a source can be iterated several times.
    """

    kind: str = ""

    def __init__(self, *, name: str, path: Optional[Path], height: int, width: int, fps: Optional[float],
                 stride: int, max_frames: Optional[int], first: int, last: Optional[int]):
        self.name = name
        self.path = path
        self.height = int(height)
        self.width = int(width)
        self.fps = fps
        self.stride = stride
        self.max_frames = max_frames
        self._first = first          # first source frame index (inclusive)
        self._last = last            # end source frame index (exclusive), None = until the end

    # ---- subclass interface --------------------------------------------------------------------------------------
    def _total_frames(self) -> Optional[int]:
        """Number of frames in the whole source (may be an estimate for files, None if unknown)."""
        raise NotImplementedError

    def _iter_frames(self) -> Iterator[Tuple[int, np.ndarray]]:
        raise NotImplementedError

    # ---- public API ----------------------------------------------------------------------------------------------
    @property
    def length_is_exact(self) -> bool:
        """Whether ``len()`` is exact. False for video files until :meth:`count_exact` (or a full pass) ran."""
        return True

    def __len__(self) -> int:
        """Number of frames iteration will yield, after range, stride and ``max_frames``. For video files this is
        computed from the container's frame count and may be off by a few frames (see :meth:`count_exact`)."""
        total = self._total_frames()
        if total is None:  # unknown count (rare: some streams); decode to find out
            total = self.count_exact_total()
        end = total if self._last is None else min(self._last, total)
        n = max(0, -(-(end - self._first) // self.stride))
        return n if self.max_frames is None else min(n, self.max_frames)

    def count_exact_total(self) -> int:
        """Exact number of frames in the whole source (decodes a video file without colour conversion)."""
        total = self._total_frames()
        assert total is not None
        return total

    def count_exact(self) -> int:
        """Exact number of frames iteration will yield. Cheap except for video files, where it decodes the
        stream once (no colour conversion) and caches the result so ``len()`` becomes exact."""
        self.count_exact_total()
        return len(self)

    def __iter__(self) -> Iterator[Tuple[int, np.ndarray]]:
        return self._iter_frames()

    def iter_chunks(self, size: int) -> Iterator[Tuple[int, np.ndarray]]:
        """Yield ``(start_index, frames)`` with ``frames`` a contiguous (t, H, W, 3) uint8 RGB array of at most
        ``size`` consecutive yielded frames (the last chunk may be shorter); ``start_index`` is the index of its
        first frame. Only one chunk is held at a time."""
        _check_positive_int("size", size, allow_none=False)
        buf: List[np.ndarray] = []
        start = 0
        for i, frame in self:
            if not buf:
                start = i
            buf.append(frame)
            if len(buf) == size:
                chunk = np.stack(buf)
                buf.clear()  # drop the per-frame arrays before the consumer gets the chunk
                yield start, chunk
        if buf:
            chunk = np.stack(buf)
            buf.clear()
            yield start, chunk

    def source_index(self, index: int) -> int:
        """Frame index in the original video / folder / array of the ``index``-th yielded frame."""
        return self._first + index * self.stride

    def timestamp(self, index: int) -> Optional[float]:
        """Time in seconds of the ``index``-th yielded frame (video files only; None without fps)."""
        return None if not self.fps else self.source_index(index) / self.fps

    def __repr__(self) -> str:
        # never decode in repr: an unknown count stays "?"
        n = "?" if self._total_frames() is None else f"{len(self)}{'' if self.length_is_exact else '~'}"
        fps = f", fps={self.fps:g}" if self.fps else ""
        return f"VideoSource({self.kind} {self.name!r}, frames={n}, {self.width}x{self.height}{fps})"


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
            n = 0
            try:
                while cap.grab():
                    n += 1
            finally:
                cap.release()
            self._exact = n
        return self._exact

    def _tolerance(self) -> int:
        """How many frames short of the reported count a stream may end before we call it truncated."""
        rep = self._reported or 0
        if self.path.suffix.lower() in _INDEXED_CONTAINERS:
            return max(2, rep // 100)
        return max(5, rep // 10)   # estimated counts (duration * fps) are only a hint

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

    def _iter_frames(self) -> Iterator[Tuple[int, np.ndarray]]:
        path = self.path
        cap = _open_capture(path)
        try:
            cap, pos = self._seek(cap, self._first)      # pos = index of the next frame a grab() returns
            target, yielded = self._first, 0
            while (self.max_frames is None or yielded < self.max_frames) and \
                    (self._last is None or target < self._last):
                # grab() without retrieve() skips the colour conversion for frames dropped by the stride
                while pos <= target:
                    if not cap.grab():
                        self._end_of_stream(pos, yielded)
                        return
                    pos += 1
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    raise VideoReadError(f"{path}: failed to decode frame {target} (after {yielded} good frames "
                                         "were yielded); the file is corrupt from there on")
                if bgr.shape[:2] != (self.height, self.width):
                    raise VideoReadError(f"{path}: frame size changes mid-video at frame {target}: "
                                         f"{bgr.shape[1]}x{bgr.shape[0]} instead of {self.width}x{self.height}; "
                                         "re-encode to one size, e.g. `ffmpeg -i in -vf scale=W:H out.mp4`")
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                del bgr
                yield yielded, frame
                del frame  # do not keep the last frame alive while decoding the next one
                yielded += 1
                target += self.stride
        finally:
            cap.release()

    def _end_of_stream(self, pos: int, yielded: int) -> None:
        """The decoder returned no frame at source index ``pos``: normal end, or a truncated/corrupt file."""
        expected = self._exact if self._exact is not None else self._reported
        if expected is not None and pos < expected - (0 if self._exact is not None else self._tolerance()):
            raise VideoReadError(
                f"{self.path}: video stopped decoding at frame {pos} but the container says it has {expected} "
                f"frames: the file is truncated or corrupt (the {yielded} frames before it were yielded)")
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


def _index_range(what: str, n: int, start: Optional[int], end: Optional[int]) -> Tuple[int, int]:
    """Frame-index range [first, last) for folders and arrays."""
    for label, v in (("start", start), ("end", end)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
            raise ValueError(f"for {what}, {label} is a non-negative frame index (int), got {v!r}")
    first = 0 if start is None else int(start)
    last = n if end is None else min(int(end), n)
    if first >= last:
        raise VideoReadError(f"{what}: the range start={start}, end={end} selects no frame out of {n}")
    return first, last


class _ImageSequenceSource(VideoSource):
    """A folder (or explicit list) of image files, one frame each."""

    kind = "folder"

    def __init__(self, files: Sequence[Path], *, name: str, path: Optional[Path], stride: int,
                 max_frames: Optional[int], start: Optional[int], end: Optional[int]):
        self._files = list(files)
        what = str(path) if path is not None else "image list"
        first, last = _index_range(what, len(self._files), start, end)
        # Only the first selected image is decoded here (for the size); the rest are checked as they stream.
        self._ref_file = self._files[first]
        ref = _read_image(self._ref_file)
        super().__init__(name=name, path=path, height=ref.shape[0], width=ref.shape[1], fps=None,
                         stride=stride, max_frames=max_frames, first=first, last=last)

    @property
    def files(self) -> List[Path]:
        """All image files of the sequence in frame order (before range / stride)."""
        return list(self._files)

    def _total_frames(self) -> int:
        return len(self._files)

    def _iter_frames(self) -> Iterator[Tuple[int, np.ndarray]]:
        for k, src_i in enumerate(range(self._first, self._last, self.stride)):
            if self.max_frames is not None and k >= self.max_frames:
                return
            f = self._files[src_i]
            frame = _read_image(f)
            if frame.shape[:2] != (self.height, self.width):
                raise VideoReadError(
                    f"{f}: image is {frame.shape[1]}x{frame.shape[0]} (WxH) but {self._ref_file.name} is "
                    f"{self.width}x{self.height}; all frames in a sequence must have the same size "
                    f"(frame {src_i}; the {k} frames before it were yielded)")
            yield k, frame
            del frame


class _ArraySource(VideoSource):
    """In-memory frames: a (T, H, W, 3) uint8 array or a list of (H, W, 3) uint8 arrays. Yields views (no copy)
    when the input is C-contiguous."""

    kind = "array"

    def __init__(self, frames: Union[np.ndarray, Sequence[np.ndarray]], *, stride: int, max_frames: Optional[int],
                 start: Optional[int], end: Optional[int]):
        if isinstance(frames, np.ndarray):
            if frames.ndim == 3:
                raise VideoReadError(f"frame array of shape {frames.shape} is a single frame or grayscale video; "
                                     "expected (T, H, W, 3) uint8 RGB (use arr[None] for one frame)")
            if frames.ndim != 4:
                raise VideoReadError(f"frame array of shape {frames.shape}: expected (T, H, W, 3) uint8 RGB")
            if frames.shape[0] == 0:
                raise VideoReadError("frame array is empty (T = 0): a zero-length video")
            problem = _channel_problem(frames.shape[1:])
            if problem is not None:
                raise VideoReadError(f"frame array of shape {frames.shape}: frames are {problem}")
            _check_dtype(frames.dtype, "frame array")
            self._frames: Union[np.ndarray, List[np.ndarray]] = frames
            h, w = frames.shape[1:3]
        else:
            items = list(frames)
            if not items:
                raise VideoReadError("frame list is empty: a zero-length video")
            h = w = -1
            for i, f in enumerate(items):
                if not isinstance(f, np.ndarray):
                    raise TypeError(f"frame list item {i} is {type(f).__name__}; expected a numpy array "
                                    "(or give a list of image paths)")
                problem = _channel_problem(f.shape)
                if problem is not None:
                    raise VideoReadError(f"frame {i} of the list is {problem}")
                _check_dtype(f.dtype, f"frame {i} of the list")
                if i == 0:
                    h, w = f.shape[:2]
                elif f.shape[:2] != (h, w):
                    raise VideoReadError(f"frame {i} of the list is {f.shape[1]}x{f.shape[0]} (WxH) but frame 0 is "
                                         f"{w}x{h}; frames have different shapes, all must have the same size")
            self._frames = items
        first, last = _index_range("frame array", len(self._frames), start, end)
        super().__init__(name="array", path=None, height=h, width=w, fps=None, stride=stride,
                         max_frames=max_frames, first=first, last=last)

    def _total_frames(self) -> int:
        return len(self._frames)

    def _iter_frames(self) -> Iterator[Tuple[int, np.ndarray]]:
        for k, src_i in enumerate(range(self._first, self._last, self.stride)):
            if self.max_frames is not None and k >= self.max_frames:
                return
            yield k, np.ascontiguousarray(self._frames[src_i])


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype != np.uint8:
        hint = (" (floats in 0..1: (x * 255).round().astype(np.uint8))" if np.issubdtype(dtype, np.floating)
                else "")
        raise VideoReadError(f"{what} has dtype {dtype}; expected uint8 RGB in 0..255{hint}")


def _list_images(folder: Path) -> List[Path]:
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
    if not files:
        others = sorted(p.name for p in folder.iterdir())
        detail = ("it is empty" if not others else
                  f"it has {len(others)} entries but no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} image "
                  f"(e.g. {', '.join(others[:3])})")
        raise VideoReadError(f"{folder}: no frame images found: {detail}")
    return sorted(files, key=lambda p: natural_sort_key(p.name))


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
_ITEM, _DONE, _ERROR = "item", "done", "error"


def prefetch(iterable: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``iterable`` in a background thread, at most ``depth`` items ahead of the consumer.

    Decoding (OpenCV releases the GIL) then overlaps with inference. An exception raised by the iterable is
    re-raised to the consumer, unchanged, after the items produced before it. If the consumer stops early
    (``break``, an exception, or ``close()`` of this generator), the thread is told to stop, the wrapped
    iterator is closed *in that thread* (so e.g. a video decoder is released) and the thread is joined.
    Items are produced lazily: the thread starts on the first ``next()``.
    """
    _check_positive_int("depth", depth, allow_none=False)
    q: "queue.Queue[Tuple[str, Any]]" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(msg: Tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        it: Optional[Iterator[T]] = None
        try:
            it = iter(iterable)
            for item in it:
                if not put((_ITEM, item)):
                    return
                del item  # the queue owns it now; do not keep an extra frame alive in this thread
            put((_DONE, None))
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer, re-raised there
            put((_ERROR, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - cleanup must not mask the real outcome
                    pass

    thread = threading.Thread(target=worker, name="dvis-video-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                kind, payload = q.get(timeout=0.1)
            except queue.Empty:
                if not thread.is_alive() and q.empty():
                    raise RuntimeError("prefetch worker thread ended without a result") from None
                continue
            if kind == _ITEM:
                yield payload
                del payload
            elif kind == _DONE:
                return
            else:
                raise payload
    finally:
        stop.set()
        while True:  # free queued items and unblock a worker waiting to put
            try:
                q.get_nowait()
            except queue.Empty:
                break
        thread.join(timeout=10.0)


# ---- writing ---------------------------------------------------------------------------------------------------
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
