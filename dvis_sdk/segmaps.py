"""Per-frame integer maps of a video (panoptic segment ids, semantic classes), kept compressed frame by frame.

A video panoptic / semantic result is a (T, H, W) integer volume; for long videos that volume does not have to
exist at once: :class:`FrameMaps` holds each frame zlib-compressed (a few kB for a typical segmentation map),
decodes one frame on ``maps[t]`` and the whole volume only on ``np.asarray(maps)``.
"""
from __future__ import annotations

import zlib
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

__all__ = ["FrameMaps"]


class FrameMaps:
    """A read-only (T, H, W) integer array stored frame by frame (zlib, level 1).

    ``maps[t]`` -> (H, W) array; ``maps[a:b]`` -> (b - a, H, W) array; ``np.asarray(maps)`` -> the whole volume;
    iterating yields the frames one at a time (bounded memory)."""

    def __init__(self, height: int, width: int, dtype: Union[str, np.dtype] = np.int32):
        self.height, self.width = int(height), int(width)
        self.dtype = np.dtype(dtype)
        self._frames: List[bytes] = []

    @classmethod
    def from_array(cls, volume: np.ndarray) -> "FrameMaps":
        """Wrap a (T, H, W) integer array (copied, compressed)."""
        volume = np.asarray(volume)
        if volume.ndim != 3 or volume.dtype.kind not in "iu":
            raise ValueError(f"FrameMaps needs a (T, H, W) integer array, got {volume.dtype} {volume.shape}")
        maps = cls(volume.shape[1], volume.shape[2], volume.dtype)
        for frame in volume:
            maps.append(frame)
        return maps

    def append(self, frame: np.ndarray) -> None:
        """Add the next frame ((H, W), cast to this map's dtype)."""
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width):
            raise ValueError(f"frame of shape {frame.shape}, expected {(self.height, self.width)}")
        self._frames.append(zlib.compress(np.ascontiguousarray(frame, dtype=self.dtype).tobytes(), 1))

    def extend(self, frames: np.ndarray) -> None:
        for f in frames:
            self.append(f)

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (len(self._frames), self.height, self.width)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def compressed_bytes(self) -> int:
        return sum(len(b) for b in self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def _decode(self, t: int) -> np.ndarray:
        buf = zlib.decompress(self._frames[t])
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.height, self.width).copy()

    def __getitem__(self, key: Union[int, slice]) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            t = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= t < len(self):
                raise IndexError(f"frame {key} out of range for {len(self)} frames")
            return self._decode(t)
        if isinstance(key, slice):
            idx = range(*key.indices(len(self)))
            out = np.empty((len(idx), self.height, self.width), dtype=self.dtype)
            for i, t in enumerate(idx):
                out[i] = self._decode(t)
            return out
        return np.asarray(self)[key]

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self._decode(t)

    def __array__(self, dtype: Optional[np.dtype] = None, copy: Optional[bool] = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, FrameMaps):
            return NotImplemented
        return self.shape == other.shape and all(np.array_equal(a, b) for a, b in zip(self, other))

    def __repr__(self) -> str:
        return (f"FrameMaps({len(self)} frames, {self.height}x{self.width}, {self.dtype}, "
                f"{self.compressed_bytes / 1e3:.1f} kB compressed)")
