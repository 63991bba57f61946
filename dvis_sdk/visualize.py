"""Overlay rendering and id-map export (plain numpy + OpenCV; returns RGB arrays, so notebooks can show them).

- :func:`render_frame` / :func:`render_frames`: masks blended in per-track colours that stay fixed across frames,
  a contour, ``label score`` at each instance and optionally ``#track_id``.
- :func:`render_video`: the same, written through OpenCV with a codec
  fallback (``mp4v``, then MJPG in an ``.avi``; a clear :class:`~dvis_sdk.io.VideoWriteError`
  when no codec works).
- :func:`save_id_maps` / :func:`load_id_map`: one 16-bit PNG per frame holding ``track_id + 1`` per pixel
  (0 = background) for downstream tools.
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .io import open_video, write_video
from .results import FrameResult, VideoResult

__all__ = ["track_color", "render_frame", "render_frames", "render_video", "id_map_frames", "save_id_maps",
           "load_id_map"]


def track_color(track_id: int) -> Tuple[int, int, int]:
    """A stable, well-separated RGB colour per track id (golden-ratio hue walk): the same id always gets the same
    colour, in every frame and every video."""
    h = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


@dataclass
class _Item:
    track_id: int
    name: str
    score: float
    mask: Callable[[], np.ndarray]


def _items(result: Union[VideoResult, FrameResult], index: Optional[int],
           class_names: Optional[Sequence[str]]) -> List[_Item]:
    def name_of(label: int, label_name: Optional[str]) -> str:
        if label_name:
            return label_name
        names = class_names or getattr(result, "class_names", None)
        return names[label] if names and 0 <= label < len(names) else str(label)

    if isinstance(result, FrameResult):
        return [_Item(i.track_id, name_of(i.label, i.label_name), i.score, (lambda m=i.mask: np.asarray(m, bool)))
                for i in result.instances]
    if index is None:
        raise TypeError("render_frame(frame, video_result, index): index is needed with a VideoResult")
    if not 0 <= index < result.num_frames:
        raise IndexError(f"frame index {index} is out of range: the result has {result.num_frames} frames")
    return [_Item(i.track_id, name_of(i.label, i.label_name), i.score, (lambda inst=i: inst.mask(index)))
            for i in result.instances if i.rles[index] is not None]


def render_frame(frame: np.ndarray, result: Union[VideoResult, FrameResult], index: Optional[int] = None, *,
                 alpha: float = 0.5, show_ids: bool = True, show_labels: bool = True, show_scores: bool = True,
                 contours: bool = True, score_threshold: float = 0.0, font_scale: Optional[float] = None,
                 class_names: Optional[Sequence[str]] = None) -> np.ndarray:
    """Draw the instances of one frame on an (H, W, 3) uint8 RGB ``frame``; returns a new RGB array.

    Args:
        result: a :class:`VideoResult` (with ``index``, the frame's position in it) or a :class:`FrameResult`
            (what ``VideoSegmenter.stream`` yields).
        alpha: mask opacity (0 = masks invisible, 1 = solid colour).
        show_ids: append ``#track_id`` to the label. show_labels / show_scores: the class name / the score.
        contours: outline each mask in its colour.
        score_threshold: skip instances scoring lower.
        font_scale: label size (OpenCV units); default grows with the frame size.
        class_names: names for labels that have none.

    Overlaps: the highest-scoring instance is drawn last, so it is on top (as in :meth:`FrameResult.id_map`).
    """
    import cv2

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got shape {frame.shape} dtype {frame.dtype}")
    if (frame.shape[0], frame.shape[1]) != (result.height, result.width):
        raise ValueError(f"frame is {frame.shape[0]}x{frame.shape[1]} but the result is "
                         f"{result.height}x{result.width}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    items = [it for it in _items(result, index, class_names) if it.score >= score_threshold]
    items.sort(key=lambda it: it.score)  # best last: on top
    out = frame.copy()
    h, w = frame.shape[:2]
    scale = font_scale if font_scale is not None else 0.4 * max(1.0, min(h, w) / 480.0)
    thick = max(1, int(round(min(h, w) / 400)))
    labels = []
    for it in items:
        m = it.mask()
        if not m.any():
            continue
        color = np.array(track_color(it.track_id), np.float32)
        out[m] = (out[m].astype(np.float32) * (1 - alpha) + color * alpha + 0.5).astype(np.uint8)
        if contours:
            cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, cs, -1, tuple(int(c) for c in color), thick)
        parts = ([it.name] if show_labels else []) + ([f"{it.score:.2f}"] if show_scores else []) + (
            [f"#{it.track_id}"] if show_ids else [])
        if parts:
            ys, xs = np.nonzero(m)
            labels.append((" ".join(parts), int(xs.min()), int(ys.min()), color))
    for text, x, y, color in labels:  # after all masks, so no mask covers a label
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x = min(max(0, x), max(0, w - tw - 2))
        y = min(max(th + base + 1, y), h - 1)  # above the mask when there is room, else inside the frame
        cv2.rectangle(out, (x, y - th - base - 1), (x + tw + 2, y), tuple(int(c * 0.5) for c in color), -1)
        cv2.putText(out, text, (x + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def render_frames(frames: Iterable[np.ndarray], result: Union[VideoResult, Iterable[FrameResult]],
                  **kwargs: Any) -> Iterator[np.ndarray]:
    """Lazily render a video: ``frames`` in the result's order and size (``(index, frame)`` pairs of a
    :class:`~dvis_sdk.io.VideoSource` work too); ``result`` a :class:`VideoResult` or the
    :class:`FrameResult` s of a stream. ``kwargs`` go to :func:`render_frame`."""
    per_frame = None if isinstance(result, VideoResult) else iter(result)
    for i, frame in enumerate(frames):
        if isinstance(frame, tuple) and len(frame) == 2:
            frame = frame[1]
        if per_frame is None:
            if i >= result.num_frames:
                raise ValueError(f"more frames than the result has ({result.num_frames})")
            yield render_frame(frame, result, i, **kwargs)
        else:
            fr = next(per_frame, None)
            if fr is None:
                raise ValueError(f"more frames than frame results ({i})")
            yield render_frame(frame, fr, **kwargs)


def render_video(result: VideoResult, video: Any, path: Union[str, Path], fps: Optional[float] = None,
                 **kwargs: Any) -> Path:
    """Write the overlay of ``result`` on ``video`` (a path, or frames at the result's size) to ``path`` (.mp4,
    .avi, ...); returns the path written (``.avi`` after the codec fallback). ``kwargs`` go to
    :func:`render_frame`. A path is re-read with the result's ``start`` / ``stride`` (its ``meta``)."""
    frames, rate = result_frames(result, video, fps)
    return write_video(path, render_frames(frames, result, **kwargs), fps=rate)


def result_frames(result: VideoResult, video: Any, fps: Optional[float] = None) -> Tuple[Iterator[np.ndarray], float]:
    """The frames of ``video`` that ``result`` was computed on (a path is re-read with the result's ``start`` /
    ``stride``) and the frame rate to write them at (``fps``, else the source's rate over the stride, else 10)."""
    if isinstance(video, (str, Path)):
        start, stride = result.meta.get("start"), result.meta.get("stride", 1)
    else:
        start, stride = None, 1
    src = open_video(video, max_frames=result.num_frames, start=start, stride=int(stride or 1))
    if (src.height, src.width) != (result.height, result.width):
        raise ValueError(f"video is {src.height}x{src.width} but the result is {result.height}x{result.width}")
    return (f for _, f in src), fps or (src.fps / src.stride if src.fps else 10.0)


def id_map_frames(result: Union[VideoResult, Iterable[FrameResult]]) -> Iterator[np.ndarray]:
    """(H, W) uint16 id maps, one per frame: ``track_id + 1`` of the highest-scoring instance at each pixel,
    0 = background (see :meth:`FrameResult.id_map`)."""
    frames = (result.frame(t) for t in range(result.num_frames)) if isinstance(result, VideoResult) else result
    for fr in frames:
        if any(i.track_id + 1 > np.iinfo(np.uint16).max or i.track_id < 0 for i in fr.instances):
            raise ValueError("track ids must be in 0..65534 to fit a uint16 id map")
        yield fr.id_map()


def save_id_maps(result: Union[VideoResult, Iterable[FrameResult]], out_dir: Union[str, Path],
                 pattern: str = "{:06d}.png") -> List[Path]:
    """Write one 16-bit PNG id map per frame into ``out_dir`` (``000000.png``, ``000001.png``, ...; frame
    results of a stream are named by their ``index``). Read them back with :func:`load_id_map` (or
    ``cv2.imread(path, cv2.IMREAD_UNCHANGED)``; most image viewers show them nearly black). Returns the paths."""
    import cv2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if isinstance(result, VideoResult):
        pairs: Iterable[Tuple[int, np.ndarray]] = enumerate(id_map_frames(result))
    else:
        pairs = ((fr.index, next(id_map_frames([fr]))) for fr in result)
    for i, id_map in pairs:
        path = out_dir / pattern.format(i)
        if not cv2.imwrite(str(path), id_map):
            raise OSError(f"{path}: OpenCV could not write the PNG (is the folder writable?)")
        written.append(path)
    return written


def load_id_map(path: Union[str, Path]) -> np.ndarray:
    """Read an id map written by :func:`save_id_maps` as (H, W) uint16."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FileNotFoundError(f"{path}: cannot read id map (missing or not an image)")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise ValueError(f"{path}: not an id map (expected a single-channel 16-bit PNG, got {img.dtype} "
                         f"{img.shape})")
    return img
