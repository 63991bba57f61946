"""YouTube-VIS / OVIS format datasets (annotation JSON + frame folders) and training clip sampling.

The format (also used for custom data)::

    {"videos": [{"id": 1, "width": W, "height": H, "length": T, "file_names": ["vid/00000.jpg", ...]}, ...],
     "annotations": [{"id": 1, "video_id": 1, "category_id": 3, "iscrowd": 0,
                      "segmentations": [RLE | polygons | null per frame], ...}, ...],
     "categories": [{"id": 3, "name": "dog"}, ...]}

``file_names`` are relative to the frames folder. Segmentations are COCO RLE (compressed string or
uncompressed list ``counts``) or polygon lists, ``null`` where the object is not visible. Category ids map to
contiguous labels ``0..K-1`` in the order of ``categories`` sorted by id.

:class:`VideoClipDataset` samples training clips the way the official DVIS / DVIS++ mapper does (a reference
frame, the other frames within ``frame_range`` of it, sorted; optional reversal for the offline stage), with a
resize of the shortest edge and a horizontal flip drawn once per clip. :func:`convert_png_masks` builds the
annotation file from folders of per-frame instance-id PNG masks.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from ..io import IMAGE_EXTENSIONS, natural_sort_key
from ..masks import decode_rles, encode_mask, polygons_to_rle
from ..ops.preprocess import resize_frame, resized_shape

__all__ = ["DatasetError", "ClipDatasetBase", "YTVISAnnotations", "VideoClipDataset", "Clip", "decode_segmentation",
           "convert_png_masks", "load_frame"]

PathLike = Union[str, Path]


class DatasetError(ValueError):
    """A malformed dataset (annotation file or frames); the message names the file, video and problem."""


# ----------------------------------------------------------------------------------------------- annotations
def decode_segmentation(seg: Any, height: int, width: int) -> Optional[np.ndarray]:
    """One frame's segmentation (RLE dict, uncompressed RLE, polygon list or None) -> (H, W) bool or None."""
    if seg is None:
        return None
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise ValueError("an RLE segmentation needs 'counts' and 'size'")
        if list(seg["size"]) != [height, width]:
            raise ValueError(f"RLE size {seg['size']} != video size [{height}, {width}]")
        return decode_rles(seg)
    if isinstance(seg, list):
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            return np.zeros((height, width), bool)
        return decode_rles(polygons_to_rle(polys, height, width))
    raise ValueError(f"unsupported segmentation of type {type(seg).__name__} (expected an RLE dict or polygons)")


@dataclass
class _Track:
    ann_id: int
    label: int
    segmentations: List[Any]


@dataclass
class _Video:
    id: int
    height: int
    width: int
    file_names: List[str]
    tracks: List[_Track]


class YTVISAnnotations:
    """A parsed and validated YouTube-VIS style annotation file.

    Args:
        ann: path to the JSON file, or the already loaded dict.
        frames_root: folder the ``file_names`` are relative to.
        check_files: verify that every frame file exists (clear error naming the first missing one).
        require_annotations: refuse a file with no ``annotations`` (a test split) - on for training.
    """

    def __init__(self, ann: Union[PathLike, Mapping[str, Any]], frames_root: PathLike, *, check_files: bool = True,
                 require_annotations: bool = True):
        self.source = str(ann) if not isinstance(ann, Mapping) else "<dict>"
        data = self._load(ann)
        self.frames_root = Path(frames_root)
        if not self.frames_root.is_dir():
            raise DatasetError(f"frames folder not found: {self.frames_root}")
        for key in ("videos", "categories"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{self.source} is not a YouTube-VIS annotation file: no {key!r} list")
        if require_annotations and not isinstance(data.get("annotations"), list):
            raise DatasetError(f"{self.source} has no 'annotations' list (a test split cannot be trained on)")
        cats = sorted(data["categories"], key=lambda c: c["id"])
        if not cats:
            raise DatasetError(f"{self.source}: 'categories' is empty")
        self.category_ids: List[int] = [int(c["id"]) for c in cats]
        self.class_names: List[str] = [str(c.get("name", c["id"])) for c in cats]
        cat_to_label = {cid: i for i, cid in enumerate(self.category_ids)}

        self.problems: List[str] = []  # one line per entry dropped while reading
        self.videos: List[_Video] = []
        by_id: Dict[int, _Video] = {}
        for v in data["videos"]:
            try:
                vid, files = int(v["id"]), list(v["file_names"])
                h, w = int(v["height"]), int(v["width"])
            except (KeyError, TypeError, ValueError) as e:
                raise DatasetError(f"{self.source}: video entry {v.get('id', '?')} lacks id/width/height/file_names "
                                   f"({e})") from None
            if "length" in v and int(v["length"]) != len(files):
                raise DatasetError(f"{self.source}: video {vid} has length {v['length']} but {len(files)} file_names")
            if not files:
                raise DatasetError(f"{self.source}: video {vid} has no frames")
            video = _Video(vid, h, w, files, [])
            by_id[vid] = video
            self.videos.append(video)
        for a in data.get("annotations") or []:
            vid = a.get("video_id")
            if vid not in by_id:
                raise DatasetError(f"{self.source}: annotation {a.get('id', '?')} refers to unknown video_id {vid}")
            video = by_id[vid]
            cid = a.get("category_id")
            if cid not in cat_to_label:
                raise DatasetError(f"{self.source}: annotation {a.get('id', '?')} (video {vid}) has unknown "
                                   f"category_id {cid}; known: {self.category_ids}")
            segs = a.get("segmentations")
            if not isinstance(segs, list):
                raise DatasetError(f"{self.source}: annotation {a.get('id', '?')} has no 'segmentations' list")
            if len(segs) != len(video.file_names):
                raise DatasetError(f"{self.source}: annotation {a.get('id', '?')} has {len(segs)} segmentations but "
                                   f"video {vid} has {len(video.file_names)} frames (frame count mismatch)")
            if a.get("iscrowd", 0):
                continue
            short = [f for f, sg in enumerate(segs) if isinstance(sg, list) and any(len(p) < 6 for p in sg)]
            if short:  # decode_segmentation drops them: say so (the rest of the object is kept)
                self.problems.append(f"{self.source}: annotation {a.get('id', '?')} (video {vid}) has polygons with "
                                     f"fewer than 3 points in frame(s) {short[:5]}; those polygons are dropped")
            if all(sg is None for sg in segs):
                self.problems.append(f"{self.source}: annotation {a.get('id', '?')} (video {vid}) has an empty "
                                     "mask in every frame; skipped")
                continue
            video.tracks.append(_Track(int(a.get("id", len(video.tracks) + 1)), cat_to_label[cid], segs))
        if check_files:
            for video in self.videos:
                for f in video.file_names:
                    if not (self.frames_root / f).is_file():
                        raise DatasetError(f"frame file not found: {self.frames_root / f} (video {video.id} in "
                                           f"{self.source}); is the frames folder right?")

    @staticmethod
    def _load(ann: Union[PathLike, Mapping[str, Any]]) -> Mapping[str, Any]:
        if isinstance(ann, Mapping):
            return ann
        p = Path(ann)
        if not p.is_file():
            raise DatasetError(f"annotation file not found: {p}")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"annotation file {p} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise DatasetError(f"annotation file {p} does not hold a JSON object")
        return data

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.videos)

    def video_masks(self, index: int, frames: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tracks visible in at least one of ``frames``: labels (N,), ann ids (N,), masks (N, t, H, W) bool."""
        video = self.videos[index]
        labels, ids, masks = [], [], []
        for tr in video.tracks:
            per = []
            for f in frames:
                try:
                    m = decode_segmentation(tr.segmentations[f], video.height, video.width)
                except ValueError as e:
                    raise DatasetError(f"{self.source}: annotation {tr.ann_id} (video {video.id}), frame {f}: {e}"
                                       ) from None
                per.append(m)
            if all(m is None or not m.any() for m in per):
                continue
            empty = np.zeros((video.height, video.width), bool)
            labels.append(tr.label)
            ids.append(tr.ann_id)
            masks.append(np.stack([empty if m is None else m for m in per]))
        if not masks:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64),
                    np.zeros((0, len(frames), video.height, video.width), bool))
        return np.asarray(labels, np.int64), np.asarray(ids, np.int64), np.stack(masks)


def load_frame(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a clear error for a missing / unreadable file."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read frame {path} (missing or not an image)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------- clips
def resize_mask(mask: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """(H, W) mask -> bool (h, w), PIL nearest (detectron2's ``apply_segmentation``; OpenCV's nearest samples
    pixel corners instead of centres and shifts the mask by up to a pixel)."""
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((w, h), Image.NEAREST)).astype(bool)


@dataclass
class Clip:
    """One training clip.

    ``frames``: (t, 3, H, W) float32 RGB 0..255 (resized, flipped, NOT normalised or padded);
    ``labels`` (N,) int64 contiguous class labels; ``ids`` (N,) annotation ids; ``masks`` (N, t, H, W) bool
    (all False in frames where the object is not visible); ``video_index`` / ``frame_indices`` where it comes
    from; ``flipped``.
    """

    frames: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor
    masks: torch.Tensor
    video_index: int
    frame_indices: List[int]
    flipped: bool = False

    @property
    def present(self) -> torch.Tensor:
        """(N, t) bool: visible in that frame."""
        return self.masks.flatten(2).any(-1)


class ClipDatasetBase:
    """What the clip datasets share: the parsed annotations, clip length, resize range and minimum instances
    (checked), the class count and names, and one item per annotated video or image."""

    def __init__(self, annotations: Any, num_frames: int, min_sizes: Sequence[int], max_size: int,
                 min_instances: int):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if not min_sizes or any(s < 1 for s in min_sizes) or max_size < 1:
            raise ValueError("min_sizes must be positive sizes and max_size positive")
        self.ann = annotations
        self.num_frames = int(num_frames)
        self.min_sizes = tuple(int(s) for s in min_sizes)
        self.max_size = int(max_size)
        self.min_instances = int(min_instances)

    @property
    def num_classes(self) -> int:
        return self.ann.num_classes

    @property
    def class_names(self) -> List[str]:
        return self.ann.class_names

    def __len__(self) -> int:
        return len(self.ann)


class VideoClipDataset(ClipDatasetBase):
    """Training clips from a :class:`YTVISAnnotations` (official DVIS sampling + clip-consistent augmentation).

    Args:
        annotations: the parsed file (or the arguments of :class:`YTVISAnnotations` via :meth:`from_files`).
        num_frames: frames per clip (cfg ``INPUT.SAMPLING_FRAME_NUM``).
        frame_range: how far from the reference frame the others may be (``INPUT.SAMPLING_FRAME_RANGE``);
            with ``2 * frame_range + 1 == num_frames`` a contiguous window is taken (official).
        reverse_prob: probability of reversing the clip's order (offline ``INPUT.REVERSE_AGU``: 0.5).
        min_sizes: shortest-edge sizes; one is drawn per clip (``MIN_SIZE_TRAIN`` with ``choice_by_clip``).
        max_size: longest-edge cap (``MAX_SIZE_TRAIN``).
        flip_prob: probability of a horizontal flip of the whole clip.
        min_instances: re-draw a clip (up to 10 times) with fewer visible instances than this.
    """

    def __init__(self, annotations: YTVISAnnotations, *, num_frames: int = 5, frame_range: int = 20,
                 reverse_prob: float = 0.0, min_sizes: Sequence[int] = (360,), max_size: int = 640,
                 flip_prob: float = 0.5, min_instances: int = 0):
        super().__init__(annotations, num_frames, min_sizes, max_size, min_instances)
        self.frame_range = int(frame_range)
        self.reverse_prob = float(reverse_prob)
        self.flip_prob = float(flip_prob)

    @classmethod
    def from_files(cls, ann_json: Union[PathLike, Mapping[str, Any]], frames_root: PathLike,
                   **kwargs: Any) -> "VideoClipDataset":
        """Parse ``ann_json`` (frames under ``frames_root``) and build the dataset (``kwargs``: see the class)."""
        return cls(YTVISAnnotations(ann_json, frames_root), **kwargs)

    def select_frames(self, length: int, rng: np.random.Generator) -> List[int]:
        """Frame indices of one clip of a ``length``-frame video (official ``select_frames``)."""
        n, r = self.num_frames, self.frame_range
        if 2 * r + 1 == n:  # contiguous window
            if n > length:
                idx = list(range(length)) + rng.choice(length, n - length).tolist()
                idx.sort()
            else:
                start = 0 if length == n else int(rng.integers(length - n))
                idx = list(range(start, start + n))
        else:
            ref = int(rng.integers(length))
            lo, hi = max(0, ref - r), min(length, ref + r + 1)
            pool = [i for i in range(lo, hi) if i != ref]
            if n == 1:
                idx = [ref]
            elif not pool:
                idx = [ref] * n
            else:
                others = rng.choice(pool, n - 1, replace=len(pool) < n - 1).tolist()
                idx = sorted(others + [ref])
        if self.reverse_prob > 0 and rng.random() < self.reverse_prob:
            idx = idx[::-1]
        return [int(i) for i in idx]

    def sample(self, index: int, rng: np.random.Generator) -> Clip:
        """A random clip of video ``index``; every random choice comes from ``rng`` (reproducible)."""
        video = self.ann.videos[index]
        for _ in range(10):
            frames_idx = self.select_frames(len(video.file_names), rng)
            labels, ids, masks = self.ann.video_masks(index, frames_idx)
            if len(labels) >= self.min_instances:
                break
        short = self.min_sizes[int(rng.integers(len(self.min_sizes)))]
        flip = bool(rng.random() < self.flip_prob)
        return self._make_clip(index, frames_idx, labels, ids, masks, short, flip)

    def clip(self, index: int, frame_indices: Sequence[int], short: Optional[int] = None, flip: bool = False) -> Clip:
        """A given clip without randomness (evaluation, caching): ``short`` defaults to the first min size."""
        labels, ids, masks = self.ann.video_masks(index, list(frame_indices))
        return self._make_clip(index, list(frame_indices), labels, ids, masks, short or self.min_sizes[0], flip)

    def _make_clip(self, index: int, frames_idx: List[int], labels: np.ndarray, ids: np.ndarray, masks: np.ndarray,
                   short: int, flip: bool) -> Clip:
        video = self.ann.videos[index]
        h, w = resized_shape(video.height, video.width, short, self.max_size)
        frames = []
        for f in frames_idx:
            img = load_frame(self.ann.frames_root / video.file_names[f])
            if img.shape[:2] != (video.height, video.width):
                raise DatasetError(f"frame {video.file_names[f]} is {img.shape[1]}x{img.shape[0]} but video {video.id} "
                                   f"is declared {video.width}x{video.height}")
            # the inference resize (PIL bilinear, as the official pipeline at train and test time): no mismatch
            frames.append(resize_frame(img, (h, w)))
        frames_np = np.stack(frames)
        if masks.shape[0] and (h, w) != masks.shape[-2:]:
            n, t = masks.shape[:2]
            flat = masks.reshape(n * t, *masks.shape[2:]).astype(np.uint8)
            masks = np.stack([resize_mask(m, (h, w)) for m in flat])
            masks = masks.reshape(n, t, h, w)
        elif not masks.shape[0]:
            masks = np.zeros((0, len(frames_idx), h, w), bool)
        if flip:
            frames_np = frames_np[:, :, ::-1]
            masks = masks[..., ::-1]
        return Clip(frames=torch.from_numpy(np.ascontiguousarray(frames_np)).permute(0, 3, 1, 2).float(),
                    labels=torch.from_numpy(labels), ids=torch.from_numpy(ids),
                    masks=torch.from_numpy(np.ascontiguousarray(masks)), video_index=index,
                    frame_indices=list(frames_idx), flipped=flip)


# ----------------------------------------------------------------------------------------------- converter
def _read_id_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "1"):
            arr = np.asarray(im)
        else:
            raise DatasetError(f"{path}: expected a single-channel instance-id PNG (palette / grayscale / 16-bit), "
                               f"got mode {im.mode!r}")
    return arr.astype(np.int64)


def convert_png_masks(frames_dir: PathLike, masks_dir: PathLike, out_json: PathLike,
                      categories: Union[str, Sequence[str], Mapping[int, str], Mapping[str, Mapping[int, str]]],
                      *, allow_missing_masks: bool = False) -> Path:
    """Folders of per-frame instance-id PNG masks -> a YouTube-VIS annotation file.

    Layout: ``frames_dir/<video>/<frame>.jpg`` and ``masks_dir/<video>/<frame>.png`` (same stems); in a mask, 0 is
    background and every other value one object, with the same value for the same object through the video
    (palette PNGs as DAVIS, or 8/16-bit grayscale). ``out_json``'s ``file_names`` are relative to ``frames_dir``.

    ``categories`` gives each object a class: one name for all objects; or the class names in order, with every
    object's category read from its id as ``id // 1000`` (0-based index into the names, the panoptic-style
    ``class * 1000 + instance`` encoding); or ``{object id: name}`` for every video; or
    ``{video name: {object id: name}}``. Returns the path written.
    """
    frames_dir, masks_dir, out_json = Path(frames_dir), Path(masks_dir), Path(out_json)
    for d, what in ((frames_dir, "frames"), (masks_dir, "masks")):
        if not d.is_dir():
            raise DatasetError(f"{what} folder not found: {d}")
    if isinstance(categories, str):
        names = [categories]
    elif isinstance(categories, Mapping):
        vals = [v for v in categories.values()]
        if vals and all(isinstance(v, Mapping) for v in vals):
            vals = [n for m in vals for n in m.values()]
        names = sorted(set(str(v) for v in vals))
    else:
        names = [str(c) for c in categories]
    if not names:
        raise DatasetError("categories is empty")
    cat_id = {n: i + 1 for i, n in enumerate(names)}

    def category_of(video: str, obj: int) -> str:
        if isinstance(categories, str):
            return categories
        if isinstance(categories, Mapping):
            table = categories.get(video) if isinstance(next(iter(categories.values())), Mapping) else categories
            if table is None or obj not in table:
                raise DatasetError(f"no category given for object {obj} of video {video!r}")
            return str(table[obj])
        k = obj // 1000
        if not 0 <= k < len(names):
            raise DatasetError(f"object id {obj} of video {video!r} encodes class index {k}, but only {len(names)} "
                               "category names were given")
        return names[k]

    videos, annotations = [], []
    for vdir in sorted((p for p in frames_dir.iterdir() if p.is_dir()), key=lambda p: natural_sort_key(p.name)):
        frames = sorted((p for p in vdir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                        key=lambda p: natural_sort_key(p.name))
        if not frames:
            continue
        mdir = masks_dir / vdir.name
        if not mdir.is_dir():
            raise DatasetError(f"no mask folder for video {vdir.name!r}: expected {mdir}")
        first = load_frame(frames[0])
        h, w = first.shape[:2]
        tracks: Dict[int, List[Optional[dict]]] = {}
        areas: Dict[int, List[Optional[float]]] = {}
        for t, fp in enumerate(frames):
            mp = mdir / (fp.stem + ".png")
            if not mp.is_file():
                if allow_missing_masks:
                    continue
                raise DatasetError(f"video {vdir.name!r}: frame {fp.name} has no mask {mp} (frame count mismatch); "
                                   "pass allow_missing_masks=True to treat it as unannotated")
            ids = _read_id_mask(mp)
            if ids.shape != (h, w):
                raise DatasetError(f"mask {mp} is {ids.shape[1]}x{ids.shape[0]} but the frames are {w}x{h}")
            for obj in np.unique(ids):
                if obj == 0:
                    continue
                m = ids == obj
                rle = encode_mask(m, text=True)
                tracks.setdefault(int(obj), [None] * len(frames))[t] = rle
                areas.setdefault(int(obj), [None] * len(frames))[t] = float(m.sum())
        vid = len(videos) + 1
        videos.append({"id": vid, "width": w, "height": h, "length": len(frames),
                       "file_names": [f"{vdir.name}/{f.name}" for f in frames]})
        for obj, segs in sorted(tracks.items()):
            annotations.append({"id": len(annotations) + 1, "video_id": vid,
                                "category_id": cat_id[category_of(vdir.name, obj)], "iscrowd": 0,
                                "segmentations": segs, "width": w, "height": h, "length": 1,
                                "areas": areas[obj]})
    if not videos:
        raise DatasetError(f"no video folders with frames found in {frames_dir}")
    data = {"videos": videos, "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in cat_id.items()]}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(data))
    return out_json


def padded_size(h: int, w: int, divisibility: int = 32) -> Tuple[int, int]:
    """(h, w) rounded up to a multiple of ``divisibility`` (the model's padding)."""
    return int(math.ceil(h / divisibility) * divisibility), int(math.ceil(w / divisibility) * divisibility)
