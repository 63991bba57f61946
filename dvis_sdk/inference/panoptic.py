"""Video panoptic (VPS) and video semantic (VSS) results from the window runner, in bounded memory.

The official VPS / VSS post-processing decides on the whole video (the class scores are time averages; a
segment survives by its area over all frames), so nothing final exists before the last frame. The runner's
per-window mask logits (stride 4, all queries) are therefore kept until the end: in memory up to
``buffer_bytes``, beyond that in temporary ``.npy`` files (deleted afterwards). At the end the official
post-processing (:mod:`dvis_sdk.ops.panoptic`) runs a few frames at a time: VPS in two passes (pixel counts,
then id maps), VSS in one; the maps are stored compressed per frame (:class:`dvis_sdk.segmaps.FrameMaps`).
Peak memory: the buffer plus the full-resolution probabilities of a few frames; the result equals the official
whole-video computation.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..config import DVISConfig
from ..ops.panoptic import (
    Workspace,
    mask_probs,
    vps_frame_counts,
    vps_frame_ids,
    vps_queries,
    vps_segments,
    vss_class_probs,
    vss_frame_classes,
)
from ..results import VideoResult
from ..segmaps import FrameMaps
from .runner import ScoreAccumulator, WindowResult

__all__ = ["MaskLogitStore", "DenseTaskAccumulator", "frame_budget"]

#: full-resolution float32 intermediates of one post-processing step are kept under this size (a few frames)
STEP_BYTES = 256 << 20


class MaskLogitStore:
    """Every window's (Q, t, h, w) mask logits: kept as they are up to ``budget_bytes``, then written to
    temporary ``.npy`` files (float32) and read back one window at a time."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = int(budget_bytes)
        self.held = 0
        self.spilled = 0
        self._items: List[Any] = []  # Tensor (held) or Path (spilled)
        self._dir: Optional[Path] = None

    def add(self, mask_logits: Tensor) -> None:
        nbytes = mask_logits.numel() * 4
        if self.held + nbytes <= self.budget_bytes:
            self._items.append(mask_logits)
            self.held += nbytes
            return
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="dvis_masks_"))
        path = self._dir / f"{len(self._items):06d}.npy"
        np.save(path, mask_logits.detach().float().cpu().numpy())
        self._items.append(path)
        self.spilled += nbytes

    def __iter__(self) -> Iterator[Tensor]:
        for item in self._items:
            yield item if isinstance(item, Tensor) else torch.from_numpy(np.load(item))

    def close(self) -> None:
        """Delete the spilled files (also when the store is garbage-collected)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._items = []

    def __del__(self) -> None:
        self.close()


def frame_budget(rows: int, height: int, width: int, extra_rows: int = 0) -> int:
    """How many frames one post-processing step may take: (rows + extra_rows) full-size float32 maps each."""
    per_frame = max(1, (rows + extra_rows) * height * width * 4)
    return max(1, STEP_BYTES // per_frame)


class DenseTaskAccumulator:
    """Collects the runner's windows of a VPS / VSS model and builds the video's panoptic or semantic maps."""

    def __init__(self, cfg: DVISConfig, buffer_bytes: int):
        self.cfg = cfg
        self.scores = ScoreAccumulator(None, keep_masks=False)
        self.store = MaskLogitStore(buffer_bytes)
        self.geometry: Optional[Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]] = None
        self.device: Optional[torch.device] = None

    @property
    def frames(self) -> int:
        return self.scores.frames

    def add(self, w: WindowResult) -> None:
        self.scores.add(w)
        self.store.add(w.mask_logits)
        self.geometry = (tuple(w.padded_size), tuple(w.image_size), tuple(w.output_size))
        self.device = w.mask_logits.device

    def _steps(self, rows: Optional[Tensor], extra_rows: int = 0) -> Iterator[Tensor]:
        """Mask probabilities (K, t, H, W) of the selected rows, a few frames at a time, in frame order. Each
        step is written into the same buffers (no fresh full-size allocation per step): use it before the next."""
        padded, image, output = self.geometry
        n = self.scores.num_queries if rows is None else int(rows.numel())
        step = frame_budget(n, output[0], output[1], extra_rows)
        workspace = Workspace()
        for logits in self.store:
            logits = logits if rows is None else logits[rows.to(logits.device)]
            for s in range(0, logits.shape[1], step):
                chunk = logits[:, s:s + step].to(self.device)
                yield mask_probs(chunk, padded, image, output, workspace)

    def panoptic(self) -> Tuple[FrameMaps, List[Dict[str, object]]]:
        """Official VPS: (ids (T, H, W) int32 as :class:`FrameMaps`, segments)."""
        h, w = self.geometry[2]
        ids = FrameMaps(h, w, np.int32)
        pred_cls, aux = self.scores.mean_logits()
        queries = vps_queries(pred_cls, self.cfg.test.object_mask_threshold, aux)
        if len(queries) == 0:
            for _ in range(self.frames):
                ids.append(np.zeros((h, w), np.int32))
            return ids, []
        scores = queries.score.to(self.device)
        counts = sum(vps_frame_counts(p, scores) for p in self._steps(queries.index))
        seg = vps_segments(queries, counts, int(self.cfg.test.num_thing_classes or 0),
                           self.cfg.test.overlap_threshold)
        area = {s["id"]: 0 for s in seg.segments}
        frames = {s["id"]: [] for s in seg.segments}
        for p in self._steps(queries.index):
            block = vps_frame_ids(p, scores, seg.lut).numpy()
            for frame in block:
                t = len(ids)
                ids.append(frame)
                present, cnt = np.unique(frame, return_counts=True)
                for sid, c in zip(present.tolist(), cnt.tolist()):
                    if sid:
                        area[sid] += c
                        frames[sid].append(t)
        segments = [dict(s, area=area[s["id"]], frames=frames[s["id"]]) for s in seg.segments]
        return ids, segments

    def semantic(self) -> FrameMaps:
        """Official VSS: (T, H, W) class indices as :class:`FrameMaps` (int32)."""
        h, w = self.geometry[2]
        out = FrameMaps(h, w, np.int32)
        pred_cls, aux = self.scores.mean_logits()
        if pred_cls.shape[0] == 0:  # a DVIS-DAQ video without any sequence (the official code returns [])
            for _ in range(self.frames):
                out.append(np.zeros((h, w), np.int32))
            return out
        class_probs = vss_class_probs(pred_cls, aux).to(self.device)
        for p in self._steps(None, extra_rows=class_probs.shape[1]):
            out.extend(vss_frame_classes(p, class_probs).numpy())
        return out

    def close(self) -> None:
        self.store.close()


def frame_names(info: Dict[str, Any], num_frames: int) -> List[str]:
    """Names of the processed frames (the image files' names for a folder of frames, else ``00000.jpg`` ...
    from the source frame index): the writers name each frame's PNG after them."""
    files: Optional[List[str]] = None
    path = info.get("path")
    if path and Path(path).is_dir():
        from ..io.formats import _list_images

        files = [p.name for p in _list_images(Path(path))]
    names = []
    for i in range(num_frames):
        src = int(info["source_index"](i))
        names.append(files[src] if files is not None and src < len(files) else f"{src:05d}.jpg")
    return names


def dense_predict(windows: Iterable[WindowResult], runner: Any, info: Dict[str, Any], cfg: DVISConfig,
                  buffer_bytes: int, stride: int, start: Optional[float], dtype: str) -> VideoResult:
    """Run the windows of a VPS / VSS model to the end and build its :class:`VideoResult` (``panoptic`` or
    ``semantic``; no instances)."""
    from ..io import VideoReadError

    acc = DenseTaskAccumulator(cfg, buffer_bytes)
    try:
        for w in windows:
            acc.add(w)
        if acc.frames == 0:
            raise VideoReadError(f"{info.get('path') or info['name']}: no frames to process (empty range?)")
        panoptic = acc.panoptic() if cfg.test.task == "vps" else None
        semantic = acc.semantic() if cfg.test.task == "vss" else None
        spilled = acc.store.spilled
    finally:
        acc.close()
    h, w = info["height"], info["width"]
    meta = {"mode": "offline" if runner.offline else "online", "source": info.get("path") or info["name"],
            "fps": info.get("fps"), "stride": stride, "start": start, "model_size": list(info["model_size"]),
            "window_size": runner.window_size, "chunk_size": runner.chunk_size, "dtype": dtype,
            "task": cfg.test.task, "dataset": cfg.dataset, "frame_names": frame_names(info, acc.frames),
            "mask_logits_spilled_bytes": spilled}
    return VideoResult(instances=[], num_frames=acc.frames, height=h, width=w, class_names=cfg.class_names,
                       meta=meta, task=cfg.test.task, panoptic=panoptic, semantic=semantic)
