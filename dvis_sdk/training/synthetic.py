"""Synthetic video instance segmentation data: moving, rotating, occluding shapes (YouTube-VIS format).

Every scene is a textured background with circles, squares and triangles that move at constant velocity,
bounce off the borders, rotate, cross and hide each other. Each category has its own few colours (as in the example
clip), so objects of one category often look exactly alike and only their motion tells them apart; some enter
late, leave the frame or vanish early. Everything follows from a seed:
video ``i`` of a dataset generated with seed ``s`` is identical on every run and does not depend on how many
other videos are generated.

>>> from dvis_sdk.training.synthetic import generate_ytvis
>>> ann = generate_ytvis("data/shapes_train", num_videos=200, seed=0)          # doctest: +SKIP
>>> # data/shapes_train/annotations.json + data/shapes_train/JPEGImages/<video>/<frame>.jpg

The example clip ``examples/data/shapes.mp4`` is rendered by the same code (:func:`render_scene`), so a
model trained on this data segments it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..masks import encode_mask

__all__ = ["CATEGORIES", "PALETTE", "CATEGORY_PALETTES", "ShapeTrack", "SyntheticConfig", "PRESETS", "make_background",
           "render_scene", "sample_scene", "render_video", "generate_ytvis", "masks_to_ytvis_annotations"]

# category id (1-based, YouTube-VIS style) = index + 1
CATEGORIES: Tuple[str, ...] = ("circle", "square", "triangle")
# colours of the example clip first
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (40, 90, 220), (220, 40, 40), (40, 180, 60), (240, 200, 30), (200, 60, 200),
    (30, 190, 200), (240, 130, 30), (120, 70, 30), (235, 235, 235), (40, 40, 40),
)
# Per-category colours, as in the example clip (squares blue / magenta, circles red / yellow, triangles green):
# the category shows in both shape and colour, while objects of one category often look exactly alike.
CATEGORY_PALETTES: Dict[str, Tuple[Tuple[int, int, int], ...]] = {
    "circle": ((220, 40, 40), (240, 200, 30), (240, 130, 30)),
    "square": ((40, 90, 220), (200, 60, 200), (120, 70, 200)),
    "triangle": ((40, 180, 60), (30, 190, 200), (150, 200, 40)),
}


@dataclass
class ShapeTrack:
    """One object of a scene. Depth order = list order (later shapes are drawn on top).

    ``radius``: circumradius in pixels (a circle is drawn with ``0.8 * radius``); ``pos`` / ``vel``: centre and
    per-frame velocity (x, y); ``angle`` / ``spin``: rotation and per-frame rotation (radians);
    ``start`` / ``end``: first frame shown and first frame no longer shown (``None``: until the end);
    ``bounce``: reflect off the borders (else the shape flies straight on and may leave the frame).
    """

    kind: str
    colour: Tuple[int, int, int]
    radius: float
    pos: Tuple[float, float]
    vel: Tuple[float, float]
    angle: float = 0.0
    spin: float = 0.0
    start: int = 0
    end: Optional[int] = None
    bounce: bool = True

    def __post_init__(self) -> None:
        if self.kind not in CATEGORIES:
            raise ValueError(f"unknown shape kind {self.kind!r}; expected one of {CATEGORIES}")


@dataclass
class SyntheticConfig:
    """How scenes are sampled (sizes in pixels of a ``width`` x ``height`` frame unless said otherwise)."""

    width: int = 320
    height: int = 240
    num_frames: int = 16
    min_objects: int = 2
    max_objects: int = 6
    radius_range: Tuple[float, float] = (0.09, 0.24)   # fraction of min(width, height)
    speed_range: Tuple[float, float] = (1.0, 6.0)      # pixels per frame at a 240-pixel short side
    max_spin: float = 0.1
    same_colour_prob: float = 0.5     # chance that a shape copies the colour of an earlier one of its kind
    same_kind_prob: float = 0.3       # chance that a shape copies the kind of an earlier one
    late_start_prob: float = 0.2      # appears after the first frame
    early_end_prob: float = 0.15      # vanishes before the last frame
    fly_through_prob: float = 0.15    # enters from outside and crosses the frame without bouncing
    crossing_prob: float = 0.3        # aims at another shape's future position (a crossing)
    palette: Tuple[Tuple[int, int, int], ...] = PALETTE
    # kind -> colours; None: every kind takes any colour of ``palette``
    category_palettes: Optional[Dict[str, Tuple[Tuple[int, int, int], ...]]] = field(
        default_factory=lambda: dict(CATEGORY_PALETTES))

    def __post_init__(self) -> None:
        if self.min_objects < 1 or self.max_objects < self.min_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {self.min_objects}, {self.max_objects}")
        if self.num_frames < 1 or self.width < 16 or self.height < 16:
            raise ValueError("num_frames must be >= 1 and the frame at least 16x16")
        if self.category_palettes is not None:
            missing = [c for c in CATEGORIES if not self.category_palettes.get(c)]
            if missing:
                raise ValueError(f"category_palettes has no colours for {missing}")


PRESETS: Dict[str, SyntheticConfig] = {
    "default": SyntheticConfig(),
    # many same-looking shapes crossing each other slowly: identity is hard to keep
    "occlusion": SyntheticConfig(min_objects=5, max_objects=8, radius_range=(0.1, 0.2), speed_range=(1.5, 5.0),
                                 same_colour_prob=0.8, same_kind_prob=0.6, crossing_prob=0.7,
                                 late_start_prob=0.25, early_end_prob=0.2, fly_through_prob=0.1),
    # look-alike objects: one class per video, (nearly) one colour, similar sizes, paths aimed at each other so
    # they cross and hide each other, some flying through the frame (leaving it) or appearing late. Only motion
    # and depth order tell them apart: association is genuinely hard (the denoising study's data)
    "lookalike": SyntheticConfig(width=160, height=120, num_frames=24, min_objects=3, max_objects=5,
                                 radius_range=(0.15, 0.19), speed_range=(2.0, 5.0), same_kind_prob=1.0,
                                 same_colour_prob=0.9, crossing_prob=0.85, late_start_prob=0.25,
                                 early_end_prob=0.15, fly_through_prob=0.2),
}


def make_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour blobs + a faint grid + fine grain: textured, yet cheap to encode. (H, W, 3) uint8."""
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


def _draw(layer: np.ndarray, kind: str, cx: float, cy: float, r: float, angle: float) -> None:
    if kind == "circle":
        cv2.circle(layer, (int(round(cx)), int(round(cy))), int(round(r * 0.8)), 255, -1, cv2.LINE_AA)
    else:
        pts = np.round(_polygon(kind, cx, cy, r, angle) * 16).astype(np.int32)
        cv2.fillPoly(layer, [pts], 255, cv2.LINE_AA, shift=4)


def render_scene(shapes: Sequence[ShapeTrack], background: np.ndarray, num_frames: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Render ``num_frames`` frames of a scene.

    Returns ``(frames (T, H, W, 3) uint8 RGB, masks (T, N, H, W) bool)``: per shape, the pixels where it is the
    visible (top-most) object; all False while it is hidden, off-screen or not shown.
    """
    h, w = background.shape[:2]
    n = len(shapes)
    pos = np.array([s.pos for s in shapes], np.float64).reshape(n, 2)
    vel = np.array([s.vel for s in shapes], np.float64).reshape(n, 2)
    radius = np.array([s.radius for s in shapes], np.float64)
    angle = np.array([s.angle for s in shapes], np.float64)
    spin = np.array([s.spin for s in shapes], np.float64)
    bounce = np.array([s.bounce for s in shapes], bool)
    # a vertical shading gradient gives the shapes a bit of 3-D look
    shade = np.linspace(1.15, 0.8, h, dtype=np.float32)[:, None, None]
    fills = [np.clip(np.asarray(s.colour, np.float32) * shade, 0, 255) for s in shapes]

    frames = np.empty((num_frames, h, w, 3), np.uint8)
    masks = np.zeros((num_frames, n, h, w), bool)
    layer = np.zeros((h, w), np.uint8)
    for t in range(num_frames):
        img = background.copy()
        owner = np.full((h, w), -1, np.int16)  # which shape is visible at each pixel
        for k, s in enumerate(shapes):
            if t < s.start or (s.end is not None and t >= s.end):
                continue
            cx, cy = pos[k]
            reach = radius[k] + 2
            x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, w)
            y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, h)
            if x0 >= x1 or y0 >= y1:
                continue  # entirely off-screen
            layer[:] = 0
            _draw(layer, s.kind, cx, cy, radius[k], angle[k])
            # blend only inside the shape's box: outside it alpha is 0 and the pixels are unchanged
            sub = layer[y0:y1, x0:x1]
            alpha = sub.astype(np.float32)[..., None] / 255.0
            region = img[y0:y1, x0:x1]
            img[y0:y1, x0:x1] = (region * (1 - alpha) + fills[k][y0:y1] * alpha).astype(np.uint8)
            owner[y0:y1, x0:x1][sub >= 128] = k
        for k in range(n):
            masks[t, k] = owner == k
        frames[t] = img
        # constant-velocity motion with bounces off the borders
        pos += vel
        for d, lim in ((0, w), (1, h)):
            lo, hi = radius * 0.7, lim - radius * 0.7
            out = ((pos[:, d] < lo) | (pos[:, d] > hi)) & bounce
            vel[out, d] *= -1
            pos[bounce, d] = np.clip(pos[bounce, d], lo[bounce], hi[bounce])
        angle += spin
    return frames, masks


def sample_scene(rng: np.random.Generator, cfg: SyntheticConfig) -> List[ShapeTrack]:
    """Draw a random scene (list of :class:`ShapeTrack`) for ``cfg``."""
    w, h, T = cfg.width, cfg.height, cfg.num_frames
    side = min(w, h)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    shapes: List[ShapeTrack] = []
    for _ in range(n):
        if shapes and rng.random() < cfg.same_kind_prob:
            kind = shapes[int(rng.integers(len(shapes)))].kind
        else:
            kind = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        palette = cfg.category_palettes[kind] if cfg.category_palettes else cfg.palette
        same = [sh for sh in shapes if sh.kind == kind] if cfg.category_palettes else shapes
        if same and rng.random() < cfg.same_colour_prob:
            colour = same[int(rng.integers(len(same)))].colour
        else:
            colour = tuple(int(c) for c in palette[int(rng.integers(len(palette)))])
        radius = float(rng.uniform(*cfg.radius_range) * side)
        speed = float(rng.uniform(*cfg.speed_range) * side / 240)
        heading = float(rng.uniform(0, 2 * np.pi))
        pos = np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h])
        start = int(rng.integers(1, max(T // 2, 2))) if T > 2 and rng.random() < cfg.late_start_prob else 0
        end = None
        if T > 3 and rng.random() < cfg.early_end_prob:
            end = int(rng.integers(max(start + 2, T // 2), T))
        bounce = True
        if rng.random() < cfg.fly_through_prob:
            # start just outside a random border, heading across the frame
            bounce = False
            side_i = int(rng.integers(4))
            margin = radius * 0.6
            pos = np.array([[-margin, rng.uniform(0.2, 0.8) * h], [w + margin, rng.uniform(0.2, 0.8) * h],
                            [rng.uniform(0.2, 0.8) * w, -margin], [rng.uniform(0.2, 0.8) * w, h + margin]][side_i])
            target = np.array([rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h])
            heading = float(np.arctan2(*(target - pos)[::-1]))
            speed = max(speed, 2.5 * side / 240)
        elif shapes and rng.random() < cfg.crossing_prob:
            # aim at where an earlier shape will be half-way through the clip
            other = shapes[int(rng.integers(len(shapes)))]
            meet = np.asarray(other.pos) + np.asarray(other.vel) * (T / 2)
            meet = np.clip(meet, [0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h])
            heading = float(np.arctan2(*(meet - pos)[::-1]))
            dist = float(np.hypot(*(meet - pos)))
            speed = float(np.clip(dist / max(T / 2, 1), cfg.speed_range[0] * side / 240,
                                  cfg.speed_range[1] * side / 240))
        vel = (speed * float(np.cos(heading)), speed * float(np.sin(heading)))
        shapes.append(ShapeTrack(kind=kind, colour=colour, radius=radius, pos=(float(pos[0]), float(pos[1])),
                                 vel=vel, angle=float(rng.uniform(0, np.pi)),
                                 spin=float(rng.uniform(-cfg.max_spin, cfg.max_spin)), start=start, end=end,
                                 bounce=bounce))
    return shapes


def render_video(seed: Union[int, Sequence[int]], cfg: Optional[SyntheticConfig] = None
                 ) -> Tuple[np.ndarray, np.ndarray, List[ShapeTrack]]:
    """Sample and render one scene: ``(frames (T, H, W, 3) uint8, masks (T, N, H, W) bool, shapes)``."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(seed)
    bg = make_background(rng, cfg.height, cfg.width)
    shapes = sample_scene(rng, cfg)
    frames, masks = render_scene(shapes, bg, cfg.num_frames)
    return frames, masks, shapes


def masks_to_ytvis_annotations(masks: np.ndarray, category_ids: Sequence[int], video_id: int, first_ann_id: int
                               ) -> List[dict]:
    """(T, N, H, W) bool masks -> YouTube-VIS annotation dicts (RLE per frame, ``None`` where empty).
    Objects that are never visible are skipped."""
    t, n, h, w = masks.shape
    out = []
    for k in range(n):
        if not masks[:, k].any():
            continue
        segs, boxes, areas = [], [], []
        for f in range(t):
            m = masks[f, k]
            if not m.any():
                segs.append(None)
                boxes.append(None)
                areas.append(None)
                continue
            ys, xs = np.nonzero(m)
            segs.append(encode_mask(m, text=True))
            boxes.append([float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                          float(ys.max() - ys.min() + 1)])
            areas.append(float(m.sum()))
        out.append({"id": first_ann_id + len(out), "video_id": video_id, "category_id": int(category_ids[k]),
                    "iscrowd": 0, "segmentations": segs, "bboxes": boxes, "areas": areas, "width": w,
                    "height": h, "length": 1})
    return out


def generate_ytvis(out_dir: Union[str, Path], num_videos: int, seed: int = 0,
                   config: Union[SyntheticConfig, str, None] = None, image_ext: str = ".jpg",
                   jpeg_quality: int = 90, name: str = "annotations.json") -> Path:
    """Write a synthetic YouTube-VIS dataset; returns the annotation file.

    Layout: ``out_dir/<name>`` (annotations, ``file_names`` relative to ``out_dir/JPEGImages``) and
    ``out_dir/JPEGImages/video_<seed>_<i>/<frame>.jpg``. Video ``i`` is rendered from the seed ``(seed, i)``.
    ``config``: a :class:`SyntheticConfig` or a preset name (``"default"``, ``"occlusion"``).
    """
    if num_videos < 1:
        raise ValueError(f"num_videos must be >= 1, got {num_videos}")
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown synthetic preset {config!r}; expected one of {sorted(PRESETS)}")
        config = PRESETS[config]
    cfg = config or SyntheticConfig()
    if image_ext not in (".jpg", ".png"):
        raise ValueError(f"image_ext must be '.jpg' or '.png', got {image_ext!r}")
    out_dir = Path(out_dir)
    frames_root = out_dir / "JPEGImages"
    frames_root.mkdir(parents=True, exist_ok=True)
    params = [int(cv2.IMWRITE_JPEG_QUALITY), int(jpeg_quality)] if image_ext == ".jpg" else []
    videos, annotations = [], []
    for i in range(num_videos):
        frames, masks, shapes = render_video((seed, i), cfg)
        vname = f"video_{seed}_{i:05d}"
        (frames_root / vname).mkdir(exist_ok=True)
        files = []
        for f, frame in enumerate(frames):
            rel = f"{vname}/{f:05d}{image_ext}"
            cv2.imwrite(str(frames_root / rel), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
            files.append(rel)
        vid = i + 1
        videos.append({"id": vid, "width": cfg.width, "height": cfg.height, "length": len(files),
                       "file_names": files})
        cats = [CATEGORIES.index(s.kind) + 1 for s in shapes]
        annotations += masks_to_ytvis_annotations(masks, cats, vid, len(annotations) + 1)
    cfg_dict = asdict(cfg)
    data = {"info": {"description": "dvis_sdk synthetic shapes", "seed": seed, "config": cfg_dict},
            "licenses": [], "categories": [{"id": i + 1, "name": c, "supercategory": "shape"}
                                           for i, c in enumerate(CATEGORIES)],
            "videos": videos, "annotations": annotations}
    path = out_dir / name
    path.write_text(json.dumps(data))
    return path
