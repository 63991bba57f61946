"""Result objects returned by :class:`dvis_sdk.VideoSegmenter` (plain numpy, no torch needed to use them).

Masks are stored as pycocotools run-length encodings, one per frame, so a result over thousands of frames stays
small; ``Instance.masks`` decodes them on access and ``Instance.mask(t)`` decodes one frame.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, TextIO, Union

import numpy as np

RLE = Dict[str, Any]  # pycocotools RLE: {"size": [H, W], "counts": bytes | str}


def encode_masks(masks: np.ndarray) -> List[Optional[RLE]]:
    """(T, H, W) bool -> one RLE per frame (``counts`` as bytes), ``None`` for empty frames."""
    from pycocotools import mask as mask_util

    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (T, H, W), got shape {masks.shape}")
    out: List[Optional[RLE]] = [None] * masks.shape[0]
    present = np.flatnonzero(masks.reshape(masks.shape[0], -1).any(1))
    if len(present):
        # one call over all present frames: pycocotools wants (H, W, N) Fortran-ordered uint8
        stack = np.asfortranarray(masks[present].transpose(1, 2, 0).astype(np.uint8))
        for t, rle in zip(present.tolist(), mask_util.encode(stack)):
            out[t] = rle
    return out


def decode_rles(rles: Union[RLE, List[RLE]]) -> np.ndarray:
    """pycocotools ``decode`` (one RLE -> (H, W) bool, a list -> (H, W, N) bool), without the DeprecationWarning
    pycocotools emits under numpy 2 on every call."""
    import warnings

    from pycocotools import mask as mask_util

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode(rles).astype(bool)


def _rle_bytes(rle: RLE) -> RLE:
    counts = rle["counts"]
    if isinstance(counts, str):
        return {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    if isinstance(counts, list):  # uncompressed RLE (e.g. from annotation files)
        from pycocotools import mask as mask_util

        return mask_util.frPyObjects(rle, *rle["size"])
    return rle


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
            self.rles = [None if r is None else _rle_bytes(r) for r in rles]
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
        from pycocotools import mask as mask_util

        return np.array([0 if r is None else int(mask_util.area(r)) for r in self.rles], dtype=np.int64)

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
    """Instances of one video, sorted by decreasing score."""

    instances: List[Instance]
    num_frames: int
    height: int
    width: int
    class_names: Optional[Sequence[str]] = None
    meta: Dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.instances)

    def to_ytvis(self, video_id: int = 1, category_offset: int = 1) -> List[dict]:
        """YouTube-VIS result dicts: one per instance, pycocotools RLE per frame (``None`` where empty).
        Category ids are ``label + category_offset`` (the official datasets number categories from 1)."""
        out = []
        for inst in self.instances:
            segs = [None if r is None else {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}
                    for r in inst.rles]
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
        if isinstance(data, dict):  # written with metadata
            return cls.from_ytvis(data["instances"], data.get("num_frames"), data.get("height"), data.get("width"),
                                  class_names or data.get("class_names"))
        return cls.from_ytvis(data, class_names=class_names)

    def filter(self, score_threshold: float) -> "VideoResult":
        """A copy keeping the instances scoring at least ``score_threshold``."""
        kept = [i for i in self.instances if i.score >= score_threshold]
        return VideoResult(kept, self.num_frames, self.height, self.width, self.class_names, dict(self.meta))

    def frame(self, t: int) -> FrameResult:
        """The instances present in frame ``t`` (with their video-level scores)."""
        insts = [FrameInstance(i.track_id, i.label, i.score, i.mask(t), i.label_name)
                 for i in self.instances if i.rles[t] is not None]
        return FrameResult(t, insts, self.height, self.width)

    def id_maps(self) -> Iterable[np.ndarray]:
        """Per-frame (H, W) uint16 maps of ``track_id + 1`` (0 = background; best score wins overlaps)."""
        for t in range(self.num_frames):
            yield self.frame(t).id_map()

    def save(self, out_dir: Union[str, Path], video_id: int = 1, video: Optional[object] = None,
             fps: Optional[float] = None) -> Path:
        """Write ``results.json`` into ``out_dir``: a JSON object with the video's size, frame count, class names
        and ``instances`` in YouTube-VIS result format (RLE masks). Returns its path.

        With ``video`` (the frames or the path the result was computed from) also write ``overlay.mp4``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = {"num_frames": self.num_frames, "height": self.height, "width": self.width,
               "class_names": list(self.class_names) if self.class_names else None,
               "meta": _jsonable(self.meta), "instances": self.to_ytvis(video_id)}
        path = atomic_write_text(out_dir / "results.json", json.dumps(doc))
        if video is not None:
            self.render(out_dir / "overlay.mp4", video, fps=fps)
        return path

    def render(self, path: Union[str, Path], video: object, fps: Optional[float] = None, **kwargs: Any) -> Path:
        """Write an overlay video of ``video`` (a path, or frames at the result's size); returns the path written.
        ``kwargs`` go to :func:`dvis_sdk.visualize.render_frame` (e.g. ``show_ids``, ``alpha``)."""
        from .inference.video_io import open_video, write_video
        from .visualize import render_frames

        start, stride = (self.meta.get("start"), self.meta.get("stride", 1)) if isinstance(video, (str, Path)) else (None, 1)
        src = open_video(video, max_frames=self.num_frames, start=start, stride=int(stride or 1))
        if (src.height, src.width) != (self.height, self.width):
            raise ValueError(f"video is {src.height}x{src.width} but the result is {self.height}x{self.width}")
        frames = (f for _, f in src)
        rate = fps or (src.fps / src.stride if src.fps else 10.0)
        return write_video(path, render_frames(frames, self, **kwargs), fps=rate)


@contextlib.contextmanager
def atomic_open(path: Union[str, Path]) -> Iterator[TextIO]:
    """Open a temp file beside ``path`` for writing; on success it is synced and renamed onto ``path``, on error
    removed: a crash never leaves a half-written file under the final name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)
