"""Synthetic IMAGE labels in COCO instance format, rendered by the shapes generator (:mod:`.synthetic`): frames of
synthetic videos saved as independent images, each visible object one annotation. For examples and tests of
"image labels -> video model" (``dvis finetune --data coco.json``).

>>> from dvis_sdk.training.synthetic_coco import generate_coco
>>> generate_coco("data/coco_shapes", num_images=120, names={"circle": "ball", "square": "tile",
...               "triangle": "wedge"}, category_ids={"circle": 7, "square": 3, "triangle": 12})  # doctest: +SKIP
>>> # data/coco_shapes/annotations.json + data/coco_shapes/images/00000.jpg ...
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import cv2
import numpy as np

from ..masks import encode_mask
from .synthetic import CATEGORIES, PRESETS, SyntheticConfig, render_video

__all__ = ["generate_coco", "mask_to_polygons"]

SEGMENTATION_FORMATS = ("polygon", "rle", "rle_uncompressed")


def mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """(H, W) bool -> COCO polygons (outer contours, ``[x1, y1, x2, y2, ...]``) that rasterise back to the mask.

    OpenCV traces the centres of the border pixels, which COCO's rasteriser would shrink by half a pixel on every
    side; tracing the mask upsampled twice and mapping back puts the outline on the pixels' outer edges."""
    up = np.kron(mask.astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [((c.reshape(-1, 2).astype(np.float64) + 0.5) / 2).reshape(-1).round(2).tolist()
            for c in contours if len(c) >= 3]


def _uncompressed_rle(mask: np.ndarray) -> Dict[str, object]:
    flat = mask.astype(np.uint8).reshape(-1, order="F")
    # run lengths, the first one of zeros (0 when the first pixel is set)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat])))
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def generate_coco(out_dir: Union[str, Path], num_images: int, seed: int = 0,
                  config: Union[SyntheticConfig, str, None] = None, names: Optional[Mapping[str, str]] = None,
                  category_ids: Optional[Mapping[str, int]] = None, formats: tuple = SEGMENTATION_FORMATS,
                  frames_per_video: int = 2, image_dir: str = "images", name: str = "annotations.json") -> Path:
    """Write a COCO instance-segmentation set of synthetic shapes; returns the annotation file.

    Images are frames of synthetic videos (``frames_per_video`` evenly spaced frames of video ``(seed, i)``),
    written as ``out_dir/<image_dir>/<n>.jpg``; ``file_name`` is relative to ``out_dir`` (the JSON's folder).

    Args:
        names: shape kind -> class name (default the kinds themselves), e.g. new names for a model that knows shapes.
        category_ids: shape kind -> category id (default 1, 2, 3); need be neither contiguous nor sorted. The
            ``categories`` list is written in the order of ``CATEGORIES``, whatever the ids.
        formats: segmentation formats used in turn (``polygon``, ``rle`` (compressed), ``rle_uncompressed``).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    bad = [f for f in formats if f not in SEGMENTATION_FORMATS]
    if bad or not formats:
        raise ValueError(f"unknown segmentation formats {bad}; choose from {SEGMENTATION_FORMATS}")
    cfg = PRESETS[config] if isinstance(config, str) else (config or SyntheticConfig())
    names = {k: (names or {}).get(k, k) for k in CATEGORIES}
    ids = {k: int((category_ids or {}).get(k, i + 1)) for i, k in enumerate(CATEGORIES)}
    if len(set(ids.values())) != len(ids):
        raise ValueError(f"category ids must differ, got {ids}")
    out_dir = Path(out_dir)
    (out_dir / image_dir).mkdir(parents=True, exist_ok=True)
    images: List[dict] = []
    annotations: List[dict] = []
    per = max(1, int(frames_per_video))
    pick = np.linspace(0, cfg.num_frames - 1, per).round().astype(int)
    video = 0
    while len(images) < num_images:
        frames, masks, shapes = render_video((seed, video), cfg)
        video += 1
        for f in pick:
            if len(images) == num_images:
                break
            visible = [k for k in range(masks.shape[1]) if masks[f, k].any()]
            if not visible:
                continue
            rel = f"{image_dir}/{len(images):05d}.jpg"
            cv2.imwrite(str(out_dir / rel), cv2.cvtColor(frames[f], cv2.COLOR_RGB2BGR),
                        [int(cv2.IMWRITE_JPEG_QUALITY), 90])
            iid = 1000 + 3 * len(images)  # ids need not be 1..N
            images.append({"id": iid, "file_name": rel, "height": cfg.height, "width": cfg.width})
            for k in visible:
                m = masks[f, k]
                fmt = formats[len(annotations) % len(formats)]
                if fmt == "polygon":
                    seg: object = mask_to_polygons(m)
                    if not seg:
                        seg = encode_mask(m, text=True)
                elif fmt == "rle":
                    seg = encode_mask(m, text=True)
                else:
                    seg = _uncompressed_rle(m)
                ys, xs = np.nonzero(m)
                annotations.append({"id": 50 + len(annotations), "image_id": iid,
                                     "category_id": ids[shapes[k].kind], "iscrowd": 0, "segmentation": seg,
                                     "area": float(m.sum()),
                                     "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                                              float(ys.max() - ys.min() + 1)]})
    data = {"info": {"description": "dvis_sdk synthetic shapes as image labels", "seed": seed},
            "images": images, "annotations": annotations,
            "categories": [{"id": ids[k], "name": names[k], "supercategory": "shape"} for k in CATEGORIES]}
    path = out_dir / name
    path.write_text(json.dumps(data))
    return path
