"""Result objects returned by :class:`dvis_sdk.VideoSegmenter` (plain numpy, no torch needed to use them).

Masks are stored as pycocotools run-length encodings, one per frame, so a result over thousands of frames stays
small; ``Instance.masks`` decodes them on access and ``Instance.mask(t)`` decodes one frame.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .masks import RLE, decode_rles, encode_masks, rle_area, rle_to_json, to_compressed
from .runtime import atomic_write_text, jsonable

# re-exported: these lived here before dvis_sdk.masks / dvis_sdk.runtime existed
__all__ = ["Instance", "FrameInstance", "FrameResult", "VideoResult", "RLE", "encode_masks", "decode_rles",
           "atomic_write_text"]

class Instance:
    """One tracked object over the video.

    ``track_id`` is the tracker query the instance comes from: stable over the whole video. One query may
    appear more than once with different labels (the official top-k ranks query x class pairs).

    Build from dense ``masks`` ((T, H, W) bool) or from ``rles`` (one pycocotools RLE or ``None`` per frame,
    with ``height``/``width``). ``masks`` is decoded on access; prefer :meth:`mask` for one frame.
    """

    __slots__ = ("track_id", "label", "score", "label_name", "rles", "height", "width")

    def __init__(self, track_id: int, label: int, score: float, masks: Optional[np.ndarray] = None,
                 label_name: Optional[str] = None, *, rles: Optional[Sequence[Optional[RLE]]] = None,
                 height: Optional[int] = None, width: Optional[int] = None):
        self.track_id = int(track_id)
        self.label = int(label)
        self.score = float(score)
        self.label_name = label_name
        if (masks is None) == (rles is None):
            raise ValueError("give exactly one of masks (dense) or rles")
        if masks is not None:
            masks = np.asarray(masks)
            self.rles = encode_masks(masks)
            self.height, self.width = int(masks.shape[1]), int(masks.shape[2])
        else:
            self.rles = [None if r is None else to_compressed(r) for r in rles]
            sizes = {tuple(r["size"]) for r in self.rles if r is not None}
            if height is None or width is None:
                if len(sizes) != 1:
                    raise ValueError("height and width are needed when no frame has a mask")
                height, width = sizes.pop()
            elif sizes - {(height, width)}:
                raise ValueError(f"RLE sizes {sorted(sizes)} do not match {height}x{width}")
            self.height, self.width = int(height), int(width)

    @property
    def num_frames(self) -> int:
        return len(self.rles)

    def mask(self, t: int) -> np.ndarray:
        """(H, W) bool mask of frame ``t``."""
        rle = self.rles[t]
        if rle is None:
            return np.zeros((self.height, self.width), dtype=bool)
        return decode_rles(rle)

    @property
    def masks(self) -> np.ndarray:
        """(T, H, W) bool masks at the input's original size (decoded now: O(T*H*W) memory)."""
        out = np.zeros((self.num_frames, self.height, self.width), dtype=bool)
        present = [t for t, r in enumerate(self.rles) if r is not None]
        if present:
            out[present] = decode_rles([self.rles[t] for t in present]).transpose(2, 0, 1)
        return out

    def areas(self) -> np.ndarray:
        """Mask area (pixels) per frame."""
        return np.array([0 if r is None else rle_area(r) for r in self.rles], dtype=np.int64)

    def frames_present(self) -> np.ndarray:
        """Indices of the frames where the mask is not empty."""
        return np.array([t for t, r in enumerate(self.rles) if r is not None], dtype=np.int64)

    def __repr__(self) -> str:
        name = f" {self.label_name!r}" if self.label_name else ""
        return (f"Instance(track_id={self.track_id}, label={self.label}{name}, score={self.score:.3f}, "
                f"frames={len(self.frames_present())}/{self.num_frames}, size={self.height}x{self.width})")


@dataclass
class FrameInstance:
    """One instance in one frame of a stream: its running class score / label so far and this frame's mask."""

    track_id: int
    label: int
    score: float
    mask: np.ndarray
    label_name: Optional[str] = None


@dataclass
class FrameResult:
    """What :meth:`VideoSegmenter.stream` yields for each frame as soon as it is processed.

    ``index`` counts the processed frames (0, 1, ...); ``source_index`` / ``timestamp`` locate the frame in the
    original video (after ``start`` / ``stride``). ``instances`` are sorted by decreasing score."""

    index: int
    instances: List[FrameInstance]
    height: int
    width: int
    source_index: Optional[int] = None
    timestamp: Optional[float] = None

    def id_map(self) -> np.ndarray:
        """(H, W) uint16 map: ``track_id + 1`` of the highest-scoring instance at each pixel, 0 = background."""
        out = np.zeros((self.height, self.width), dtype=np.uint16)
        for inst in reversed(self.instances):  # best last, so it wins overlaps
            out[inst.mask] = inst.track_id + 1
        return out


@dataclass
class VideoResult:
    """Instances of one video, sorted by decreasing score.

    Video panoptic / semantic models (``task`` "vps" / "vss", ``docs/panoptic.md``) return no instances but
    ``panoptic`` = ``(ids, segments)``: ``ids`` a (T, H, W) int32 array of segment ids (0 = void; a
    :class:`dvis_sdk.segmaps.FrameMaps`, decoded frame by frame, ``np.asarray(ids)`` for the whole volume) and
    ``segments`` dicts with ``id``, ``category_id`` (model class index), ``isthing``, ``track_id`` (query),
    ``score``, ``area`` and ``frames``; or ``semantic``: a (T, H, W) int32 array of class indices (FrameMaps)."""

    instances: List[Instance]
    num_frames: int
    height: int
    width: int
    class_names: Optional[Sequence[str]] = None
    meta: Dict[str, object] = field(default_factory=dict)
    task: str = "vis"
    panoptic: Optional[Tuple[Any, List[Dict[str, Any]]]] = None
    semantic: Optional[Any] = None

    def __len__(self) -> int:
        return len(self.instances)

    def to_ytvis(self, video_id: int = 1, category_offset: int = 1) -> List[dict]:
        """YouTube-VIS result dicts: one per instance, pycocotools RLE per frame (``None`` where empty).
        Category ids are ``label + category_offset`` (the official datasets number categories from 1)."""
        out = []
        for inst in self.instances:
            segs = [None if r is None else rle_to_json(r) for r in inst.rles]
            out.append({"video_id": video_id, "score": float(inst.score),
                        "category_id": int(inst.label) + category_offset, "segmentations": segs,
                        "track_id": int(inst.track_id)})
        return out

    @classmethod
    def from_ytvis(cls, entries: Iterable[dict], num_frames: Optional[int] = None, height: Optional[int] = None,
                   width: Optional[int] = None, class_names: Optional[Sequence[str]] = None,
                   category_offset: int = 1) -> "VideoResult":
        """Inverse of :meth:`to_ytvis` for the entries of one video (e.g. a saved ``results.json``)."""
        entries = list(entries)
        if entries:
            sizes = {tuple(s["size"]) for e in entries for s in e["segmentations"] if s is not None}
            lengths = {len(e["segmentations"]) for e in entries}
            if len(lengths) != 1:
                raise ValueError(f"instances have different frame counts: {sorted(lengths)}")
            num_frames = num_frames if num_frames is not None else lengths.pop()
            if height is None or width is None:
                if len(sizes) != 1:
                    raise ValueError(f"cannot tell the frame size from the masks (sizes {sorted(sizes)})")
                height, width = sizes.pop()
        if num_frames is None or height is None or width is None:
            raise ValueError("num_frames, height and width are needed for a result without instances")
        instances = []
        for e in entries:
            label = int(e["category_id"]) - category_offset
            name = class_names[label] if class_names and 0 <= label < len(class_names) else None
            instances.append(Instance(e.get("track_id", len(instances)), label, e["score"], label_name=name,
                                      rles=e["segmentations"], height=height, width=width))
        instances.sort(key=lambda i: -i.score)
        return cls(instances, int(num_frames), int(height), int(width), class_names)

    @classmethod
    def load(cls, path: Union[str, Path], class_names: Optional[Sequence[str]] = None) -> "VideoResult":
        """Read a ``results.json`` written by :meth:`save`."""
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        data = json.loads(path.read_text())
        if isinstance(data, dict) and data.get("task") in ("vps", "vss"):  # maps beside it (io/segmentation.py)
            from .io.segmentation import read_dense_maps

            maps = read_dense_maps(path, data)
            return cls([], data["num_frames"], data["height"], data["width"], class_names or data.get("class_names"),
                       data.get("meta") or {}, data["task"], maps if data["task"] == "vps" else None,
                       maps if data["task"] == "vss" else None)
        if isinstance(data, dict):  # written with metadata
            return cls.from_ytvis(data["instances"], data.get("num_frames"), data.get("height"), data.get("width"),
                                  class_names or data.get("class_names"))
        return cls.from_ytvis(data, class_names=class_names)

    def filter(self, score_threshold: float) -> "VideoResult":
        """A copy keeping the instances scoring at least ``score_threshold`` (panoptic / semantic maps: as they
        are; the official VPS post-processing has its own threshold)."""
        kept = [i for i in self.instances if i.score >= score_threshold]
        return VideoResult(kept, self.num_frames, self.height, self.width, self.class_names, dict(self.meta),
                           self.task, self.panoptic, self.semantic)

    def frame(self, t: int) -> FrameResult:
        """The instances present in frame ``t`` (with their video-level scores)."""
        insts = [FrameInstance(i.track_id, i.label, i.score, i.mask(t), i.label_name)
                 for i in self.instances if i.rles[t] is not None]
        return FrameResult(t, insts, self.height, self.width)

    def id_maps(self) -> Iterable[np.ndarray]:
        """Per-frame (H, W) uint16 maps of ``track_id + 1`` (0 = background; best score wins overlaps)."""
        for t in range(self.num_frames):
            yield self.frame(t).id_map()

    def save(self, out_dir: Union[str, Path], video_id: int = 1, video: None = None) -> Path:
        """Write ``results.json`` into ``out_dir``: a JSON object with the video's size, frame count, class names
        and ``instances`` in YouTube-VIS result format (RLE masks). Returns its path.

        A panoptic / semantic result also writes its maps frame by frame in the official submission layouts
        (VIPSeg: ``pan_pred/<video>/<frame>.png`` + ``pred.json``; VSPW: ``<video>/<frame>.png``; see
        :func:`dvis_sdk.io.segmentation.save_dense_result`).

        The overlay video is drawn by :func:`dvis_sdk.visualize.render_video` (``render_video(result, video,
        out_dir / "overlay.mp4")``); results hold data only."""
        if self.task != "vis":
            from .io.segmentation import save_dense_result

            return save_dense_result(self, out_dir, video_id)
        if video is not None:
            raise TypeError("VideoResult.save no longer renders: call dvis_sdk.visualize.render_video(result, video, "
                            "out_dir / 'overlay.mp4') for the overlay")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = {"num_frames": self.num_frames, "height": self.height, "width": self.width,
               "class_names": list(self.class_names) if self.class_names else None,
               "meta": jsonable(self.meta), "instances": self.to_ytvis(video_id)}
        return atomic_write_text(out_dir / "results.json", json.dumps(doc))

    def render(self, *args: object, **kwargs: object) -> None:
        """Moved: rendering lives in :mod:`dvis_sdk.visualize` (results hold data only)."""
        raise AttributeError("VideoResult.render moved to dvis_sdk.visualize.render_video(result, video, path, "
                             "fps=None, **options)")
