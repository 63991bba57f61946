"""The one place masks become run-length encodings and back (pycocotools RLE), for results, datasets, the
synthetic generator and evaluation. An RLE is ``{"size": [H, W], "counts": bytes}`` in memory; in JSON files
``counts`` is an ASCII string (:func:`rle_to_json`)."""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

RLE = Dict[str, Any]  # pycocotools RLE: {"size": [H, W], "counts": bytes | str}

__all__ = ["RLE", "encode_masks", "encode_masks_colmajor", "encode_mask", "decode_rles", "rle_to_json",
           "to_compressed", "polygons_to_rle", "rle_area"]


def _mask_util():
    from pycocotools import mask as mask_util

    return mask_util


def encode_masks(masks: np.ndarray) -> List[Optional[RLE]]:
    """(T, H, W) bool -> one RLE per frame (``counts`` as bytes), ``None`` for empty frames."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (T, H, W), got shape {masks.shape}")
    out: List[Optional[RLE]] = [None] * masks.shape[0]
    present = np.flatnonzero(masks.reshape(masks.shape[0], -1).any(1))
    if len(present):
        # one call over all present frames: pycocotools wants (H, W, N) Fortran-ordered uint8
        stack = np.asfortranarray(masks[present].transpose(1, 2, 0).astype(np.uint8))
        for t, rle in zip(present.tolist(), _mask_util().encode(stack)):
            out[t] = rle
    return out


def encode_masks_colmajor(masks_wh: np.ndarray) -> List[Optional[RLE]]:
    """Same result as :func:`encode_masks` of ``masks_wh.transpose(0, 2, 1)``, from (T, W, H) uint8 / bool masks
    already in column-major order (C-contiguous): what RLE reads, so no conversion copy is made (the fast path of
    long-video inference, whose masks are transposed on the device)."""
    masks_wh = np.asarray(masks_wh)
    if masks_wh.ndim != 3:
        raise ValueError(f"masks must be (T, W, H), got shape {masks_wh.shape}")
    if masks_wh.dtype != np.uint8:
        masks_wh = masks_wh.astype(np.uint8)
    out: List[Optional[RLE]] = [None] * masks_wh.shape[0]
    present = np.flatnonzero(masks_wh.reshape(masks_wh.shape[0], -1).any(1))
    if len(present):
        chosen = masks_wh if len(present) == len(out) else masks_wh[present]
        # (N, W, H) C-contiguous is (H, W, N) Fortran-ordered: what pycocotools wants, without a copy
        stack = np.ascontiguousarray(chosen).transpose(2, 1, 0)
        for t, rle in zip(present.tolist(), _mask_util().encode(stack)):
            out[t] = rle
    return out


def encode_mask(mask: np.ndarray, text: bool = False) -> RLE:
    """(H, W) bool -> RLE (empty masks too); ``text=True``: ``counts`` as an ASCII string, for JSON."""
    rle = _mask_util().encode(np.asfortranarray(np.asarray(mask).astype(np.uint8)))
    return rle_to_json(rle) if text else rle


def decode_rles(rles: Union[RLE, List[RLE]]) -> np.ndarray:
    """pycocotools ``decode`` (one RLE -> (H, W) bool, a list -> (H, W, N) bool), without the DeprecationWarning
    pycocotools emits under numpy 2 on every call. ``counts`` may be bytes, an ASCII string or uncompressed."""
    rles = [to_compressed(r) for r in rles] if isinstance(rles, list) else to_compressed(rles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _mask_util().decode(rles).astype(bool)


def rle_to_json(rle: RLE) -> RLE:
    """The JSON form: ``{"size": [H, W], "counts": str}``."""
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def to_compressed(rle: RLE) -> RLE:
    """An RLE with compressed ``counts`` as bytes, from bytes, an ASCII string or an uncompressed list."""
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    if isinstance(counts, list):  # uncompressed RLE (e.g. from annotation files)
        h, w = rle["size"]
        return _mask_util().frPyObjects({"size": [int(h), int(w)], "counts": [int(c) for c in counts]}, h, w)
    return rle


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> RLE:
    """Polygons (lists of x, y coordinates) -> one RLE of their union."""
    mu = _mask_util()
    return mu.merge(mu.frPyObjects([list(p) for p in polygons], height, width))


def rle_area(rle: RLE) -> int:
    """Pixels covered by one RLE."""
    return int(_mask_util().area(to_compressed(rle)))
