"""Overlays of video panoptic / semantic results: stuff (and every VSS class) in its class colour, things in the
colour of their track (the query, stable over the video, as :func:`dvis_sdk.visualize.track_color`), segment
outlines, and a legend of what the frame shows. Frames are rendered one at a time (bounded memory)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .io import write_video
from .io.segmentation import dataset_category
from .results import VideoResult
from .visualize import result_frames, track_color

__all__ = ["segment_palette", "render_dense_frame", "render_dense_frames", "render_dense_video"]


def _class_color(label: int, dataset: Optional[str]) -> Tuple[int, int, int]:
    return tuple(int(c) for c in dataset_category(label, dataset)[1])


def segment_palette(result: VideoResult) -> Dict[int, Tuple[Tuple[int, int, int], str]]:
    """Value of the maps -> (RGB colour, legend text). VPS: segment id -> thing: track colour, "name #track";
    stuff: class colour, "name". VSS: class index -> class colour, name."""
    names = result.class_names
    dataset = result.meta.get("dataset")

    def name(label: int) -> str:
        return names[label] if names and 0 <= label < len(names) else str(label)

    if result.task == "vps":
        out = {}
        for s in result.panoptic[1]:
            label = int(s["category_id"])
            if s["isthing"]:
                out[int(s["id"])] = (track_color(int(s["track_id"])), f"{name(label)} #{s['track_id']}")
            else:
                out[int(s["id"])] = (_class_color(label, dataset), name(label))
        return out
    n = len(names) if names else int(np.asarray(result.semantic[0]).max(initial=0)) + 1
    return {c: (_class_color(c, dataset), name(c)) for c in range(n)}


def render_dense_frame(frame: np.ndarray, values: np.ndarray, palette: Dict[int, Tuple[Tuple[int, int, int], str]],
                       alpha: float = 0.5, contours: bool = True, legend: bool = True,
                       font_scale: Optional[float] = None) -> np.ndarray:
    """Blend the (H, W) map ``values`` (0 = void for VPS maps) onto an (H, W, 3) uint8 RGB frame."""
    import cv2

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8 RGB, got shape {frame.shape} dtype {frame.dtype}")
    if frame.shape[:2] != values.shape:
        raise ValueError(f"frame is {frame.shape[0]}x{frame.shape[1]} but the map is "
                         f"{values.shape[0]}x{values.shape[1]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = frame.copy()
    h, w = values.shape
    thick = max(1, int(round(min(h, w) / 400)))
    shown: List[Tuple[Tuple[int, int, int], str, int]] = []
    for v in np.unique(values).tolist():
        if v not in palette:
            continue
        color, text = palette[v]
        m = values == v
        c = np.array(color, np.float32)
        out[m] = (out[m].astype(np.float32) * (1 - alpha) + c * alpha + 0.5).astype(np.uint8)
        if contours:
            cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, cs, -1, tuple(int(x) for x in color), thick)
        shown.append((color, text, int(m.sum())))
    if legend and shown:
        scale = font_scale if font_scale is not None else 0.35 * max(1.0, min(h, w) / 480.0)
        shown.sort(key=lambda x: -x[2])  # largest first
        y = 2
        for color, text, _ in shown:
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            if y + th + base + 2 > h:
                break
            box = th + base
            cv2.rectangle(out, (2, y), (2 + box + tw + 6, y + box + 2), (0, 0, 0), -1)
            cv2.rectangle(out, (3, y + 1), (3 + box, y + box + 1), tuple(int(x) for x in color), -1)
            cv2.putText(out, text, (box + 6, y + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
            y += box + 4
    return out


def render_dense_frames(frames: Iterable[np.ndarray], result: VideoResult, **kwargs: Any) -> Iterator[np.ndarray]:
    """Lazily render a VPS / VSS result over ``frames`` (in the result's order and size)."""
    if result.task not in ("vps", "vss"):
        raise ValueError(f"render_dense_frames draws panoptic / semantic results, not {result.task!r}")
    maps = result.panoptic[0] if result.task == "vps" else result.semantic
    palette = segment_palette(result)
    for i, frame in enumerate(frames):
        if isinstance(frame, tuple) and len(frame) == 2:
            frame = frame[1]
        if i >= result.num_frames:
            raise ValueError(f"more frames than the result has ({result.num_frames})")
        yield render_dense_frame(frame, maps[i], palette, **kwargs)


def render_dense_video(result: VideoResult, video: Any, path: Union[str, Path], fps: Optional[float] = None,
                       **kwargs: Any) -> Path:
    """Write the overlay of a VPS / VSS ``result`` on ``video`` (a path is re-read with the result's start /
    stride) to ``path``; returns the path written (see :func:`dvis_sdk.visualize.render_video`)."""
    frames, rate = result_frames(result, video, fps)
    return write_video(path, render_dense_frames(frames, result, **kwargs), fps=rate)

