"""Frame sources for image folders / image lists and in-memory arrays."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .formats import VideoReadError, _channel_problem, _check_dtype, _read_image
from .source import VideoSource, _index_range


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

