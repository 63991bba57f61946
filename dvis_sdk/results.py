"""Result objects returned by :class:`dvis_sdk.VideoSegmenter` (plain numpy, no torch needed to use them)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np


@dataclass
class Instance:
    """One tracked object over the video.

    ``track_id`` is the tracker query the instance comes from: stable over the whole video. One query may
    appear more than once with different labels (the official top-k ranks query x class pairs).
    ``masks``: (T, H, W) bool at the input's original size.
    """

    track_id: int
    label: int
    score: float
    masks: np.ndarray
    label_name: Optional[str] = None

    @property
    def num_frames(self) -> int:
        return int(self.masks.shape[0])

    def frames_present(self) -> np.ndarray:
        """Indices of the frames where the mask is not empty."""
        return np.flatnonzero(self.masks.reshape(self.masks.shape[0], -1).any(1))


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
        from pycocotools import mask as mask_util

        out = []
        for inst in self.instances:
            segs: List[Optional[dict]] = []
            for m in inst.masks:
                if not m.any():
                    segs.append(None)
                    continue
                rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                segs.append(rle)
            out.append({"video_id": video_id, "score": float(inst.score),
                        "category_id": int(inst.label) + category_offset, "segmentations": segs,
                        "track_id": int(inst.track_id)})
        return out

    def filter(self, score_threshold: float) -> "VideoResult":
        """A copy keeping the instances scoring at least ``score_threshold``."""
        kept = [i for i in self.instances if i.score >= score_threshold]
        return VideoResult(kept, self.num_frames, self.height, self.width, self.class_names, dict(self.meta))

    def save(self, out_dir: Union[str, Path], video_id: int = 1, video: Optional[object] = None,
             fps: float = 10.0) -> Path:
        """Write ``results.json`` (YouTube-VIS format with RLE masks) into ``out_dir``; returns its path.

        With ``video`` (the frames or the path the result was computed from) also write ``overlay.mp4``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "results.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_ytvis(video_id)))
        tmp.replace(path)  # atomic: a crash never leaves a half-written results.json
        if video is not None:
            self.render(out_dir / "overlay.mp4", video, fps=fps)
        return path

    def render(self, path: Union[str, Path], video: object, fps: Optional[float] = None) -> Path:
        """Write an overlay video of ``video`` (a path, or frames at the result's size); returns the path written."""
        from .inference.video_io import open_video, write_video
        from .visualize import render_frames

        src = open_video(video, max_frames=self.num_frames)
        if (src.height, src.width) != (self.height, self.width):
            raise ValueError(f"video is {src.height}x{src.width} but the result is {self.height}x{self.width}")
        frames = (f for _, f in src)
        return write_video(path, render_frames(frames, self), fps=fps or src.fps or 10.0)
