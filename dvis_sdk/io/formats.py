"""File kinds, errors and frame checks shared by every frame source and the writer."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import cv2
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

PathLike = Union[str, os.PathLike]


class VideoReadError(ValueError):
    """A video / frame source cannot be read. The message names the offending path (and frame) and the fix."""


class VideoWriteError(RuntimeError):
    """No available codec could write the requested video file."""


def natural_sort_key(name: str) -> Tuple[Any, ...]:
    """Sort key that orders embedded numbers numerically: ``frame2 < frame10`` (case-insensitive)."""
    parts = re.split(r"(\d+)", name)
    # (is_number, value) pairs keep int/str comparisons well-typed when names differ in shape.
    return tuple((1, int(p), p) if p.isdigit() else (0, p.lower(), p) for p in parts if p != "")


def _channel_problem(shape: Tuple[int, ...]) -> Optional[str]:
    """Describe why an image/frame shape is not (H, W, 3), or None if it is."""
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return ("grayscale (1 channel); convert it to 3-channel RGB first, e.g. "
                "np.repeat(frame[..., None], 3, axis=-1) or cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)")
    if len(shape) == 3 and shape[2] == 4:
        return ("RGBA (4 channels, has an alpha channel); drop or composite the alpha first, e.g. frame[..., :3] "
                "or PIL.Image.open(p).convert('RGB')")
    if len(shape) != 3 or shape[2] != 3:
        return f"of shape {tuple(shape)}, not (H, W, 3) RGB"
    return None


def _read_image(path: Path) -> np.ndarray:
    """Decode one image file to (H, W, 3) uint8 RGB, with IMREAD_UNCHANGED so gray/alpha/16-bit are detected
    (and rejected with a fix) instead of silently converted. EXIF orientation is NOT applied (frames extracted
    from videos carry none)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode also handles non-ASCII paths
    except OSError as e:
        raise VideoReadError(f"{path}: cannot read image file ({e})") from None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise VideoReadError(f"{path}: cannot decode image (empty, corrupt or unsupported format)")
    if img.dtype != np.uint8:
        raise VideoReadError(f"{path}: image is {img.dtype} ({img.dtype.itemsize * 8}-bit); expected 8-bit RGB. "
                             "Convert it first, e.g. (img // 257).astype(np.uint8) for 16-bit images")
    problem = _channel_problem(img.shape)
    if problem is not None:
        raise VideoReadError(f"{path}: image is {problem}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _check_positive_int(name: str, value: Optional[int], allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype != np.uint8:
        hint = (" (floats in 0..1: (x * 255).round().astype(np.uint8))" if np.issubdtype(dtype, np.floating)
                else "")
        raise VideoReadError(f"{what} has dtype {dtype}; expected uint8 RGB in 0..255{hint}")


def _list_images(folder: Path) -> List[Path]:
    files = [p for p in folder.iterdir()
             if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
    if not files:
        others = sorted(p.name for p in folder.iterdir())
        detail = ("it is empty" if not others else
                  f"it has {len(others)} entries but no {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} image "
                  f"(e.g. {', '.join(others[:3])})")
        raise VideoReadError(f"{folder}: no frame images found: {detail}")
    return sorted(files, key=lambda p: natural_sort_key(p.name))

