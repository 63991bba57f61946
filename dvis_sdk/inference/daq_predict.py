"""``VideoSegmenter.predict`` for DVIS-DAQ models (phase 1: the whole clip at once).

DAQ's online output is a per-sequence mean over all its stored frames and its offline refiner sees the whole
clip, so this path holds the clip's frames and the sequences' mask logits in memory (the bounded-memory window
runner of DVIS / DVIS++ does not drive the DAQ track module yet).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..results import Instance, VideoResult


def predict_daq(segmenter: Any, frames: Any, resize: bool = True, max_frames: Optional[int] = None, stride: int = 1,
                start: Optional[float] = None, end: Optional[float] = None) -> VideoResult:
    """Run a DAQ ``segmenter.model`` (:class:`dvis_sdk.models.daq.model.OnlineDAQ` / ``OfflineDAQ``) on one video
    with the official DAQ inference; arguments as :meth:`VideoSegmenter.predict`."""
    windows, info = segmenter._windows(frames, resize=resize, window=5, stride=stride, max_frames=max_frames,
                                       start=start, end=end)
    chunks = [x for _, x in windows]
    if not chunks:
        raise ValueError(f"{info['name']}: no frames to process (empty range?)")
    video = torch.cat(chunks).to(segmenter.device)
    h, w = info["height"], info["width"]
    with torch.no_grad(), segmenter._autocast():
        out = segmenter.model.inference(video.float(), output_size=(h, w))
    names = segmenter.cfg.class_names
    order = torch.argsort(out.scores, descending=True, stable=True).tolist()
    masks = out.masks.cpu().numpy()
    instances = [Instance(int(out.ids[i]), int(out.labels[i]), float(out.scores[i]), masks=np.asarray(masks[i]),
                          label_name=names[int(out.labels[i])] if names else None) for i in order]
    meta = {"mode": segmenter.cfg.mode, "source": info.get("path") or info["name"], "fps": info.get("fps"),
            "stride": stride, "start": start, "model_size": list(info["model_size"]), "window_size": 5,
            "chunk_size": None, "dtype": segmenter.dtype, "masks_encoded_per_window": False}
    return VideoResult(instances=instances, num_frames=video.shape[0], height=h, width=w, class_names=names,
                       meta=meta)
