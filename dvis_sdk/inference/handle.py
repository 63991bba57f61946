"""An opened video: :class:`VideoHandle`, what :meth:`VideoSegmenter.open` returns and ``predict`` / ``stream``
accept. Opening starts decoding (and resizing to the model's size) in a background thread, so a caller can open
the next video while the current one is in inference (the batch workers do)."""
from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np
import torch

from ..io import open_video, prefetch
from ..ops.preprocess import resize_frame, resize_frames_tensor, resized_shape

Window = Tuple[int, torch.Tensor]  # (index of the first frame, (t, 3, h, w) uint8 RGB frames at model size)


def _tensor_chunks(x: torch.Tensor, window: int, stride: int, max_frames: Optional[int], start: Optional[float],
                   end: Optional[float]) -> Tuple[Iterator[Window], dict]:
    """Chunks of a (T, 3, H, W) RGB 0..255 tensor with the same range / stride semantics as ``open_video``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"a frame tensor must be (T, 3, H, W) RGB, got shape {tuple(x.shape)}")
    if x.is_floating_point() and x.numel() and float(x.max()) <= 1.0 + 1e-6 and float(x.max()) > 0:
        warnings.warn("frame tensor values are all <= 1: frames are expected in 0..255", stacklevel=5)
    first = int(start or 0)
    idx = list(range(first, int(end) if end is not None else x.shape[0], stride))[: max_frames]
    idx = [i for i in idx if i < x.shape[0]]

    def gen():
        for s in range(0, len(idx), window):
            # a tensor on an accelerator stays there (resized there too): no copy to the host and back
            yield s, x[idx[s:s + window]].detach()

    info = dict(height=int(x.shape[2]), width=int(x.shape[3]), num_frames=len(idx), name="tensor", fps=None, path=None,
                source_index=lambda i: first + i * stride, timestamp=lambda i: None)
    return gen(), info


class VideoHandle:
    """A video opened for inference (one use): windows of frames decoding ahead in a background thread, and facts
    about the source (``height``, ``width``, ``num_frames``, ``name``, ``fps``, ``path``, ``model_size``).
    ``close()`` stops the decoding (also done when inference finishes)."""

    def __init__(self, frames: Any, *, min_size: int, max_size: int, pin: bool, resize: bool = True,
                 window_size: int, stride: int = 1, max_frames: Optional[int] = None, start: Optional[float] = None,
                 end: Optional[float] = None):
        if isinstance(frames, torch.Tensor):
            chunks, info = _tensor_chunks(frames, window_size, stride, max_frames, start, end)
        else:
            src = open_video(frames, stride=stride, max_frames=max_frames, start=start, end=end)
            info = dict(height=src.height, width=src.width, num_frames=len(src), name=src.name, fps=src.fps,
                        path=str(src.path) if src.path else None, source_index=src.source_index,
                        timestamp=src.timestamp)
            chunks = ((i, torch.from_numpy(c).permute(0, 3, 1, 2)) for i, c in src.iter_chunks(window_size))
        h, w = info["height"], info["width"]
        size = resized_shape(h, w, min_size, max_size) if resize else (h, w)
        info["model_size"] = size
        self.info = info
        self.window_size, self.stride, self.start = window_size, stride, start

        def prepare(chunks=chunks):
            for i, x in chunks:
                if x.device.type != "cpu":  # frames already on an accelerator
                    yield i, resize_frames_tensor(x.to(torch.uint8), size) if size != (h, w) else x
                    continue
                if size != (h, w):
                    arr = x.permute(0, 2, 3, 1).to(torch.uint8).numpy()
                    x = torch.from_numpy(np.stack([resize_frame(f, size) for f in arr])).permute(0, 3, 1, 2)
                # uint8 until it is on the device: a quarter of the bytes to copy
                if pin:
                    x = x.pin_memory()
                yield i, x

        self._windows = prefetch(prepare())
        # pulling the first window starts the decoding thread, which then keeps a few windows ahead
        self._first: Optional[Window] = next(self._windows, None)
        self._used = False

    def __getattr__(self, name: str) -> Any:
        info = self.__dict__.get("info")
        if info is not None and name in info:
            return info[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def windows(self, on_frames: Optional[Callable[[int], None]] = None) -> Iterator[Window]:
        """The windows, once (``on_frames(n)`` after each); closing the iterator stops the decoding."""
        if self._used:
            raise ValueError("this VideoHandle was already used: open the video again")
        self._used = True
        first, self._first = self._first, None
        try:
            for item in ([first] if first is not None else []):
                yield item
                if on_frames is not None:
                    on_frames(int(item[1].shape[0]))
            for item in self._windows:
                yield item
                if on_frames is not None:
                    on_frames(int(item[1].shape[0]))
        finally:
            self.close()

    def close(self) -> None:
        """Stop decoding (a video that will not be processed, or an early stop)."""
        self._first = None
        close = getattr(self._windows, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return (f"VideoHandle({self.info['name']!r}, {self.info['num_frames']} frames, "
                f"{self.info['height']}x{self.info['width']} -> {self.info['model_size']})")
