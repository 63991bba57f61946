"""COCO instance-segmentation annotations (image labels) as training clips: :class:`CocoAnnotations` reads and
checks the file, :class:`CocoClipDataset` turns each image into a pseudo-video clip (:mod:`.pseudo_video`, the
official DVIS / DVIS++ ``image_instance`` recipe) with the same interface as
:class:`~dvis_sdk.training.datasets.VideoClipDataset`, so every stage trains on it.

The format::

    {"images": [{"id": 5, "file_name": "imgs/0001.jpg", "height": H, "width": W}, ...],
     "annotations": [{"id": 17, "image_id": 5, "category_id": 12, "iscrowd": 0,
                      "segmentation": [[x1, y1, x2, y2, ...], ...] | RLE}, ...],
     "categories": [{"id": 12, "name": "fish"}, ...]}

``file_name`` is relative to the JSON's folder (or ``images_root``). Segmentations are polygons or RLE (compressed
string or uncompressed ``counts`` list). Category ids need be neither contiguous nor sorted: labels ``0..K-1`` follow
the ids in ascending order, as the YouTube-VIS reader's. Crowd annotations are ignored and images without objects
skipped (official ``FILTER_EMPTY_ANNOTATIONS``). Bad entries (an image file that is missing, an unknown
``category_id`` or ``image_id``, a polygon of fewer than 3 points, an empty mask, a missing segmentation) are
skipped, each with one line in :attr:`CocoAnnotations.problems` naming the annotation / image; ``strict=True``
raises :class:`~dvis_sdk.training.datasets.DatasetError` on the first one instead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..masks import decode_rles, polygons_to_rle, rle_area, to_compressed
from .datasets import Clip, ClipDatasetBase, DatasetError, load_frame
from .pseudo_video import PseudoVideoAugmentation, draw_pseudo_params, make_pseudo_clip

__all__ = ["CocoAnnotations", "CocoClipDataset", "is_coco"]

PathLike = Union[str, Path]


def is_coco(data: Mapping[str, Any]) -> bool:
    """A COCO instance file (``images`` + ``annotations``, no ``videos``)."""
    return isinstance(data.get("images"), list) and "videos" not in data


@dataclass
class _Object:
    ann_id: int
    label: int
    rle: Dict[str, Any]  # compressed RLE (bytes counts) of the image size


@dataclass
class _Image:
    id: int
    file_name: str
    height: int
    width: int
    objects: List[_Object]


def _as_int(x: Any) -> Optional[int]:
    try:
        return int(x)
    except (TypeError, ValueError):
        return None


class CocoAnnotations:
    """A parsed and checked COCO instance-segmentation file.

    Args:
        ann: path to the JSON file, or the already loaded dict (then ``images_root`` is required).
        images_root: folder ``file_name`` is relative to (default: the JSON's folder).
        check_files: skip (or with ``strict``, refuse) images whose file is missing.
        strict: raise :class:`DatasetError` on the first bad entry instead of skipping it.
        name: how messages name the file (default: its path).
    """

    def __init__(self, ann: Union[PathLike, Mapping[str, Any]], images_root: Optional[PathLike] = None, *,
                 check_files: bool = True, strict: bool = False, name: Optional[str] = None):
        self.source = name or (str(ann) if not isinstance(ann, Mapping) else "<dict>")
        data = ann if isinstance(ann, Mapping) else self._load(Path(ann))
        if images_root is None and isinstance(ann, Mapping):
            raise DatasetError("a COCO annotation dict needs images_root (the folder file_name is relative to)")
        self.images_root = Path(images_root) if images_root is not None else Path(ann).parent  # type: ignore[arg-type]
        if not self.images_root.is_dir():
            raise DatasetError(f"images folder not found: {self.images_root}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DatasetError(f"{self.source} is not a COCO instance file: no {key!r} list")
        self.strict = bool(strict)
        self.problems: List[str] = []
        cats = [c for c in data["categories"] if isinstance(c, Mapping) and _as_int(c.get("id")) is not None]
        cats = sorted(cats, key=lambda c: int(c["id"]))
        if not cats:
            raise DatasetError(f"{self.source}: 'categories' is empty")
        self.category_ids: List[int] = [int(c["id"]) for c in cats]
        if len(set(self.category_ids)) != len(self.category_ids):
            raise DatasetError(f"{self.source}: duplicate category ids in 'categories'")
        self.class_names: List[str] = [str(c.get("name", c["id"])) for c in cats]
        cat_to_label = {cid: i for i, cid in enumerate(self.category_ids)}

        by_id: Dict[int, _Image] = {}
        for im in data["images"]:
            iid = _as_int(im.get("id")) if isinstance(im, Mapping) else None
            h = _as_int(im.get("height")) if iid is not None else None
            w = _as_int(im.get("width")) if iid is not None else None
            name = im.get("file_name") if iid is not None else None
            if iid is None or not name or not h or not w:
                self._problem(f"image entry {im.get('id', '?') if isinstance(im, Mapping) else im!r} lacks "
                              "id / file_name / height / width")
                continue
            if iid in by_id:
                self._problem(f"image {iid} ({name}) is listed twice; the second entry is ignored")
                continue
            by_id[iid] = _Image(iid, str(name), h, w, [])
        self.crowd = 0
        for a in data["annotations"]:
            self._add_annotation(a, by_id, cat_to_label)
        self.images: List[_Image] = []
        self.unlabeled = 0
        for im in by_id.values():
            if check_files and not (self.images_root / im.file_name).is_file():
                self._problem(f"image file not found: {self.images_root / im.file_name} (image {im.id}; file_name is "
                              f"relative to {self.images_root})")
                continue
            if not im.objects:
                self.unlabeled += 1
                continue
            self.images.append(im)
        if not self.images:
            why = f" ({self.problems[0]}{' ...' if len(self.problems) > 1 else ''})" if self.problems else ""
            raise DatasetError(f"{self.source}: no image with a usable object annotation{why}")

    @staticmethod
    def _load(p: Path) -> Mapping[str, Any]:
        if not p.is_file():
            raise DatasetError(f"annotation file not found: {p}")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"annotation file {p} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise DatasetError(f"annotation file {p} does not hold a JSON object")
        return data

    def _problem(self, msg: str) -> None:
        line = f"{self.source}: {msg}"
        if self.strict:
            raise DatasetError(line)
        self.problems.append(line)

    def _add_annotation(self, a: Any, by_id: Dict[int, _Image], cat_to_label: Dict[int, int]) -> None:
        if not isinstance(a, Mapping):
            self._problem(f"annotation entry {a!r} is not an object; skipped")
            return
        aid, iid, cid = a.get("id", "?"), _as_int(a.get("image_id")), _as_int(a.get("category_id"))
        if iid not in by_id:
            self._problem(f"annotation {aid} refers to unknown image_id {a.get('image_id')}; skipped")
            return
        im = by_id[iid]  # type: ignore[index]
        where = f"annotation {aid} (image {im.id}, {im.file_name})"
        if cid not in cat_to_label:
            self._problem(f"{where} has unknown category_id {a.get('category_id')} (known: {self.category_ids}); "
                          "skipped")
            return
        if a.get("iscrowd", 0):
            self.crowd += 1  # official: crowd regions are not training targets
            return
        seg = a.get("segmentation")
        try:
            rle = self._to_rle(seg, im.height, im.width, where)
        except (ValueError, TypeError) as e:
            self._problem(f"{where}: {e}; skipped")
            return
        if rle is None:
            return
        if rle_area(rle) == 0:
            self._problem(f"{where} has an empty mask; skipped")
            return
        im.objects.append(_Object(_as_int(aid) if _as_int(aid) is not None else -1, cat_to_label[cid], rle))

    def _to_rle(self, seg: Any, h: int, w: int, where: str) -> Optional[Dict[str, Any]]:
        """One annotation's segmentation -> compressed RLE; None (with a problem line) when nothing is left."""
        if isinstance(seg, Mapping):
            if "counts" not in seg or "size" not in seg:
                raise ValueError("an RLE segmentation needs 'counts' and 'size'")
            if [int(s) for s in seg["size"]] != [h, w]:
                raise ValueError(f"RLE size {list(seg['size'])} != image size [{h}, {w}]")
            return to_compressed(dict(seg))
        if isinstance(seg, list) and seg and all(isinstance(p, (list, tuple)) for p in seg):
            good = [[float(v) for v in p] for p in seg if len(p) >= 6 and len(p) % 2 == 0]
            if len(good) < len(seg):
                bad = len(seg) - len(good)
                tail = "skipped" if not good else "that polygon is dropped"
                self._problem(f"{where} has {bad} polygon(s) with fewer than 3 points (or an odd coordinate count); "
                              f"{tail}")
            if not good:
                return None
            return polygons_to_rle(good, h, w)
        if isinstance(seg, list) and seg and all(isinstance(v, (int, float)) for v in seg):
            raise ValueError("the segmentation is a flat list: polygons are a list of [x1, y1, x2, y2, ...] lists")
        raise ValueError("no segmentation (polygons or RLE expected)")

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.images)

    def image_masks(self, index: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Image ``index``: ``(image (H, W, 3) uint8 RGB, labels (N,), ann ids (N,), masks (N, H, W) bool)``."""
        im = self.images[index]
        image = load_frame(self.images_root / im.file_name)
        if image.shape[:2] != (im.height, im.width):
            raise DatasetError(f"{self.source}: image {im.id} ({im.file_name}) is {image.shape[1]}x{image.shape[0]} "
                               f"but declared {im.width}x{im.height}")
        masks = decode_rles([o.rle for o in im.objects]).transpose(2, 0, 1)
        return (image, np.asarray([o.label for o in im.objects], np.int64),
                np.asarray([o.ann_id for o in im.objects], np.int64), masks)


class CocoClipDataset(ClipDatasetBase):
    """Pseudo-video training clips from :class:`CocoAnnotations` (the interface of ``VideoClipDataset``).

    Args:
        annotations: the parsed file (or the arguments of :class:`CocoAnnotations` via :meth:`from_files`).
        num_frames: frames per clip (``INPUT.SAMPLING_FRAME_NUM``).
        min_sizes / max_size: shortest-edge sizes (one drawn per clip) and the longest-edge cap.
        augmentation: the pseudo-video draws (:class:`~dvis_sdk.training.pseudo_video.PseudoVideoAugmentation`).
        min_instances: re-draw a clip (up to 10 times) with fewer visible objects than this.

    A clip is a fresh random draw each time, so its frames' segmenter outputs cannot be cached by frame
    (``cacheable`` is False: the tracker stage recomputes them).
    """

    cacheable = False

    def __init__(self, annotations: CocoAnnotations, *, num_frames: int = 5, min_sizes: Sequence[int] = (360,),
                 max_size: int = 640,
                 # a frozen dataclass of numbers and tuples: immutable, so one shared default instance is safe
                 augmentation: PseudoVideoAugmentation = PseudoVideoAugmentation(),  # noqa: B008
                 min_instances: int = 0):
        super().__init__(annotations, num_frames, min_sizes, max_size, min_instances)
        self.augmentation = augmentation

    @classmethod
    def from_files(cls, ann_json: Union[PathLike, Mapping[str, Any]], images_root: Optional[PathLike] = None,
                   **kwargs: Any) -> "CocoClipDataset":
        """Parse ``ann_json`` (images under ``images_root``, default its folder) and build the dataset."""
        return cls(CocoAnnotations(ann_json, images_root), **kwargs)

    def sample(self, index: int, rng: np.random.Generator) -> Clip:
        """A random pseudo-video clip of image ``index``; every random choice comes from ``rng``."""
        image, labels, ids, masks = self.ann.image_masks(index)
        short = self.min_sizes[int(rng.integers(len(self.min_sizes)))]
        for _ in range(10):
            params = draw_pseudo_params(rng, image.shape[0], image.shape[1], self.num_frames, self.augmentation)
            frames, clip_masks = make_pseudo_clip(image, masks, params, short, self.max_size)
            visible = clip_masks.reshape(len(clip_masks), -1).any(1) if len(clip_masks) else np.zeros(0, bool)
            if int(visible.sum()) >= self.min_instances:
                break
        # objects the crop / rotation removed from every frame are no targets (official filter_empty_instances)
        return Clip(frames=torch.from_numpy(frames).permute(0, 3, 1, 2).float(),
                    labels=torch.from_numpy(labels[visible]), ids=torch.from_numpy(ids[visible]),
                    masks=torch.from_numpy(np.ascontiguousarray(clip_masks[visible])), video_index=int(index),
                    frame_indices=list(range(self.num_frames)), flipped=params.flip)
