"""One image -> a pseudo-video clip of T frames with consistent identities (the official DVIS / DVIS++ way).

The official COCO clip mapper (DVIS++ ``data_video/dataset_mapper.py`` ``CocoClipDatasetMapper``, used with
``DATASET_TYPE: image_instance``; original DVIS's ``*_cocoPesudo.yaml``) reads one image and runs its "pseudo"
augmentation list (``build_pseudo_augmentation``) once per frame. Every augmentation but one draws its parameters
once per clip, so the frames differ only by that one:

1. crop (``RandomApplyClip``, probability 0.5, same crop for the clip): the image is resized to a shortest edge of
   400 / 500 / 600 (longest <= 1333) and a box of ``absolute_range`` (384, 600) pixels per side is cut out of it;
2. resize of the shortest edge (``choice_by_clip``; here the model's training size, as every stage of this package);
3. horizontal flip (``flip_by_clip``, probability 0.5);
4. rotation (``RandomRotationClip([-15, 15], expand=False, center=[(0.4, 0.4), (0.6, 0.6)])``): ONE centre per
   clip, T angles drawn uniformly in [-15, 15] degrees, sorted ascending and reversed with probability 0.5. This is
   what moves the objects: frame after frame the whole image turns monotonically about a common point, so objects
   travel along arcs and turn, and the borders black out.

Object ``k`` of the image keeps identity ``k`` in every frame; an object rotated out of the frame is absent there
(the official ``filter_empty_instances``). Masks are rotated as rasters with nearest interpolation (the official
rotates the polygons, then rasterises: the same up to the boundary pixels).

Pure array math (numpy / OpenCV / PIL); reading files is :mod:`.coco`'s job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from ..ops.preprocess import resize_frame, resized_shape
from .datasets import resize_mask

__all__ = ["PseudoVideoAugmentation", "PseudoClipParams", "draw_pseudo_params", "make_pseudo_clip",
           "rotation_matrix"]


@dataclass(frozen=True)
class PseudoVideoAugmentation:
    """The official pseudo-video settings (DVIS++ ``INPUT.PSEUDO`` of the YouTube-VIS / OVIS MinVIS yamls).

    ``crop_prob`` 0 turns the crop off (``PSEUDO.CROP.ENABLED: False``); ``rotation`` (0, 0) keeps the frames
    identical (a still clip)."""

    rotation: Tuple[float, float] = (-15.0, 15.0)
    center_range: Tuple[Tuple[float, float], Tuple[float, float]] = ((0.4, 0.4), (0.6, 0.6))
    reverse_prob: float = 0.5
    crop_prob: float = 0.5
    crop_resize: Tuple[int, ...] = (400, 500, 600)
    crop_resize_max: int = 1333
    crop_size: Tuple[int, int] = (384, 600)
    flip_prob: float = 0.5


@dataclass(frozen=True)
class PseudoClipParams:
    """The random draws of one clip: ``crop`` (x0, y0, w, h) in source-image pixels or None, ``flip``, one rotation
    ``angles`` entry per frame (degrees, counter-clockwise) and the rotation ``center`` (x, y) relative to the
    frame."""

    crop: Optional[Tuple[int, int, int, int]]
    flip: bool
    angles: Tuple[float, ...]
    center: Tuple[float, float]


def draw_pseudo_params(rng: np.random.Generator, height: int, width: int, num_frames: int,
                       aug: PseudoVideoAugmentation = PseudoVideoAugmentation()) -> PseudoClipParams:
    """Draw one clip's parameters for a ``height`` x ``width`` image (every draw from ``rng``: reproducible)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    crop = None
    if aug.crop_prob > 0 and rng.random() < aug.crop_prob:
        short = int(aug.crop_resize[int(rng.integers(len(aug.crop_resize)))])
        hs, ws = resized_shape(height, width, short, aug.crop_resize_max)
        lo, hi = aug.crop_size
        ch = int(rng.integers(min(hs, lo), min(hs, hi) + 1))
        cw = int(rng.integers(min(ws, lo), min(ws, hi) + 1))
        y0, x0 = int(rng.integers(hs - ch + 1)), int(rng.integers(ws - cw + 1))
        # the box in the resized image, mapped back to source pixels (crop first, resize once: same geometry)
        sy, sx = height / hs, width / ws
        x1, y1 = min(width, int(round((x0 + cw) * sx))), min(height, int(round((y0 + ch) * sy)))
        x0, y0 = min(int(round(x0 * sx)), x1 - 1), min(int(round(y0 * sy)), y1 - 1)
        crop = (x0, y0, x1 - x0, y1 - y0)
    flip = bool(rng.random() < aug.flip_prob)
    (cx0, cy0), (cx1, cy1) = aug.center_range
    # official order of draws: the angles, then the centre, then the reversal
    angles = np.sort(rng.uniform(aug.rotation[0], aug.rotation[1], size=num_frames))
    center = (float(rng.uniform(cx0, cx1)), float(rng.uniform(cy0, cy1)))
    if rng.random() < aug.reverse_prob:
        angles = angles[::-1]
    return PseudoClipParams(crop, flip, tuple(float(a) for a in angles), center)


def rotation_matrix(height: int, width: int, angle: float, center: Tuple[float, float]) -> np.ndarray:
    """The 2x3 pixel-grid rotation of detectron2's ``RotationTransform`` (``expand=False``, absolute centre
    ``(w * cx, h * cy)``, the -0.5 offset of its image matrix)."""
    c = (width * center[0] - 0.5, height * center[1] - 0.5)
    return cv2.getRotationMatrix2D(c, float(angle), 1.0)


def make_pseudo_clip(image: np.ndarray, masks: np.ndarray, params: PseudoClipParams, short_edge: int,
                     max_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Apply ``params`` to one image: ``image`` (H, W, 3) uint8 RGB and its object ``masks`` (N, H, W) bool ->
    ``(frames (T, h, w, 3) uint8, masks (N, T, h, w) bool)``; ``(h, w)``: the (cropped) image resized to
    ``short_edge`` (longest edge <= ``max_size``). The inputs are not modified."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {image.shape}")
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"masks must be (N, H, W) with the image's size, got {masks.shape} for {image.shape}")
    if params.crop is not None:
        x0, y0, cw, ch = params.crop
        image, masks = image[y0:y0 + ch, x0:x0 + cw], masks[:, y0:y0 + ch, x0:x0 + cw]
    h, w = resized_shape(image.shape[0], image.shape[1], short_edge, max_size)
    image = resize_frame(np.ascontiguousarray(image), (h, w))
    masks = (np.stack([resize_mask(m, (h, w)) for m in masks]) if len(masks)
             else np.zeros((0, h, w), bool))
    if params.flip:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    image, masks8 = np.ascontiguousarray(image), np.ascontiguousarray(masks.astype(np.uint8))
    frames, out = [], []
    for angle in params.angles:
        if angle % 360 == 0:
            frames.append(image.copy())
            out.append(masks8.astype(bool))
            continue
        m = rotation_matrix(h, w, angle, params.center)
        frames.append(cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR))
        out.append(np.stack([cv2.warpAffine(k, m, (w, h), flags=cv2.INTER_NEAREST) for k in masks8]).astype(bool)
                   if len(masks8) else np.zeros((0, h, w), bool))
    return np.stack(frames), np.stack(out, 1) if len(masks8) else np.zeros((0, len(frames), h, w), bool)

