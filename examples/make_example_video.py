"""Generate the small synthetic example clip ``examples/data/shapes.mp4``.

Coloured circles, squares and triangles move, bounce, rotate and occlude each other over a fixed textured
background. Everything is derived from ``--seed``, so the frames are identical on every run (the encoded bytes
may still differ between FFmpeg versions).

    python examples/make_example_video.py                 # -> examples/data/shapes.mp4
    python examples/make_example_video.py --frames 96 --seed 3 --out /tmp/clip.mp4
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

try:
    from dvis_sdk.inference.video_io import write_video
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dvis_sdk.inference.video_io import write_video

# (kind, RGB colour); drawing order = depth order, later shapes occlude earlier ones
SHAPES: List[Tuple[str, Tuple[int, int, int]]] = [
    ("square", (40, 90, 220)),
    ("circle", (220, 40, 40)),
    ("triangle", (40, 180, 60)),
    ("circle", (240, 200, 30)),
    ("square", (200, 60, 200)),
]


def make_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour blobs + a faint grid + fine grain: textured, yet cheap to encode."""
    coarse = rng.uniform(60, 190, size=(6, 8, 3)).astype(np.float32)
    bg = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    bg[::20, :, :] *= 0.85
    bg[:, ::20, :] *= 0.85
    bg += rng.normal(0, 4, size=(h, w, 3)).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    n = 4 if kind == "square" else 3
    a = angle + np.arange(n) * 2 * np.pi / n
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], -1)


def render(seed: int = 0, num_frames: int = 48, size: Tuple[int, int] = (320, 240)
           ) -> Tuple[np.ndarray, np.ndarray]:
    """Render the clip. Returns (frames (T, H, W, 3) uint8 RGB, visible masks (T, N, H, W) bool per shape)."""
    w, h = size
    rng = np.random.default_rng(seed)
    bg = make_background(rng, h, w)
    n = len(SHAPES)
    radius = rng.uniform(0.09, 0.15, n) * min(w, h) * 1.6
    pos = np.stack([rng.uniform(0.2, 0.8, n) * w, rng.uniform(0.2, 0.8, n) * h], -1)
    speed = rng.uniform(2.0, 5.0, n) * min(w, h) / 240
    heading = rng.uniform(0, 2 * np.pi, n)
    vel = np.stack([np.cos(heading), np.sin(heading)], -1) * speed[:, None]
    angle = rng.uniform(0, np.pi, n)
    spin = rng.uniform(-0.08, 0.08, n)

    frames = np.empty((num_frames, h, w, 3), np.uint8)
    masks = np.zeros((num_frames, n, h, w), bool)
    for t in range(num_frames):
        img = bg.copy()
        owner = np.full((h, w), -1, np.int16)  # which shape is visible at each pixel
        for k, (kind, colour) in enumerate(SHAPES):
            layer = np.zeros((h, w), np.uint8)
            cx, cy = pos[k]
            if kind == "circle":
                cv2.circle(layer, (int(round(cx)), int(round(cy))), int(round(radius[k] * 0.8)), 255, -1, cv2.LINE_AA)
            else:
                pts = np.round(_polygon(kind, cx, cy, radius[k], angle[k]) * 16).astype(np.int32)
                cv2.fillPoly(layer, [pts], 255, cv2.LINE_AA, shift=4)
            alpha = layer.astype(np.float32)[..., None] / 255.0
            # a vertical shading gradient gives the shapes a bit of 3-D look
            shade = np.linspace(1.15, 0.8, h, dtype=np.float32)[:, None, None]
            fill = np.clip(np.asarray(colour, np.float32) * shade, 0, 255)
            img = (img * (1 - alpha) + fill * alpha).astype(np.uint8)
            owner[layer >= 128] = k
        for k in range(n):
            masks[t, k] = owner == k
        frames[t] = img
        # constant-velocity motion with bounces off the borders
        pos += vel
        for d, lim in ((0, w), (1, h)):
            lo, hi = radius * 0.7, lim - radius * 0.7
            out = (pos[:, d] < lo) | (pos[:, d] > hi)
            vel[out, d] *= -1
            pos[:, d] = np.clip(pos[:, d], lo, hi)
        angle += spin
    return frames, masks


def main(argv: List[str] = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "shapes.mp4")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    frames, _ = render(args.seed, args.frames, (args.width, args.height))
    out = write_video(args.out, frames, args.fps)
    print(f"wrote {out} ({len(frames)} frames, {args.width}x{args.height}, {out.stat().st_size / 1024:.0f} KiB)")
    return out


if __name__ == "__main__":
    main()
