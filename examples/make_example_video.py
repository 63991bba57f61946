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

import numpy as np

try:
    from dvis_sdk.io import write_video
    from dvis_sdk.training.synthetic import ShapeTrack, make_background, render_scene
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dvis_sdk.io import write_video
    from dvis_sdk.training.synthetic import ShapeTrack, make_background, render_scene

# (kind, RGB colour); drawing order = depth order, later shapes occlude earlier ones
SHAPES: List[Tuple[str, Tuple[int, int, int]]] = [
    ("square", (40, 90, 220)),
    ("circle", (220, 40, 40)),
    ("triangle", (40, 180, 60)),
    ("circle", (240, 200, 30)),
    ("square", (200, 60, 200)),
]


def render(seed: int = 0, num_frames: int = 48, size: Tuple[int, int] = (320, 240)
           ) -> Tuple[np.ndarray, np.ndarray]:
    """Render the clip. Returns (frames (T, H, W, 3) uint8 RGB, visible masks (T, N, H, W) bool per shape).

    The scene is fixed (the five shapes above, motion drawn from ``seed``); the drawing is the synthetic
    training data's (:func:`dvis_sdk.training.synthetic.render_scene`), so the shipped ``dvis-tiny-shapes``
    model, trained on that data, segments this clip.
    """
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
    shapes = [ShapeTrack(kind=kind, colour=colour, radius=float(radius[k]), pos=tuple(pos[k]), vel=tuple(vel[k]),
                         angle=float(angle[k]), spin=float(spin[k]))
              for k, (kind, colour) in enumerate(SHAPES)]
    return render_scene(shapes, bg, num_frames)


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
