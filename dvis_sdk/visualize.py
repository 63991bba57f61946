"""Overlay rendering: masks blended in per-track colours that stay fixed across frames (returns RGB arrays)."""
from __future__ import annotations

import colorsys
from typing import Iterable, Iterator, Tuple

import numpy as np

from .results import VideoResult


def track_color(track_id: int) -> Tuple[int, int, int]:
    """A stable, well-separated RGB colour per track id (golden-ratio hue walk)."""
    h = (track_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def render_frame(frame: np.ndarray, result: VideoResult, index: int, alpha: float = 0.5,
                 show_ids: bool = True) -> np.ndarray:
    """Draw the instances of frame ``index`` on an (H, W, 3) uint8 RGB frame: blended mask, contour, label."""
    import cv2

    out = frame.astype(np.float32)
    labels = []
    for inst in result.instances:
        if inst.rles[index] is None:
            continue
        m = inst.mask(index)
        color = np.array(track_color(inst.track_id), np.float32)
        out[m] = out[m] * (1 - alpha) + color * alpha
        labels.append((inst, m, color))
    out = out.astype(np.uint8)
    for inst, m, color in labels:
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 1)
        ys, xs = np.nonzero(m)
        text = f"{inst.label_name or inst.label} {inst.score:.2f}" + (f" #{inst.track_id}" if show_ids else "")
        cv2.putText(out, text, (int(xs.min()), max(10, int(ys.min()) - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return out


def render_frames(frames: Iterable[np.ndarray], result: VideoResult, **kwargs) -> Iterator[np.ndarray]:
    """Lazily render every frame of a video (frames in the result's order and size)."""
    for i, frame in enumerate(frames):
        yield render_frame(np.asarray(frame), result, i, **kwargs)
