"""The frame-source base class: length, chunking and index/time mapping shared by every source."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from .formats import VideoReadError, _check_positive_int


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

