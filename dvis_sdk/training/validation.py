"""Evaluating a model on a YouTube-VIS style split during / after training: predictions in the YouTube-VIS
result format, mask AP via ``dvis_sdk.evaluation.evaluate_ytvis`` and identity switches."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .datasets import YTVISAnnotations, decode_segmentation, load_frame

__all__ = ["predict_split", "evaluate_model", "evaluate_with_segmenter_only", "category_mapping", "id_switches",
           "load_evaluator"]

PathLike = Union[str, Path]


def load_evaluator():
    """``dvis_sdk.evaluation.evaluate_ytvis`` (imported lazily); ImportError with a clear message if missing."""
    try:
        from ..evaluation import evaluate_ytvis
    except ImportError as e:
        raise ImportError(f"dvis_sdk.evaluation.evaluate_ytvis is not available ({e})") from None
    return evaluate_ytvis


def predict_split(model: Any, ann: YTVISAnnotations, *, device: Union[str, torch.device] = "cpu",
                  max_videos: Optional[int] = None, score_threshold: float = 0.0) -> List[dict]:
    """YouTube-VIS results (one dict per predicted instance, ``video_id`` from the annotation file) of ``model``
    (a DVIS model or a ``VideoSegmenter``) on the videos of ``ann``."""
    from ..inference.predictor import VideoSegmenter

    seg = model if isinstance(model, VideoSegmenter) else VideoSegmenter(model, device=device)
    names = getattr(getattr(seg.model, "cfg", None), "class_names", None)
    to_category, _ = category_mapping(names or seg.model.num_classes, ann)
    results: List[dict] = []
    for video in ann.videos[: max_videos]:
        frames = np.stack([load_frame(ann.frames_root / f) for f in video.file_names])
        res = seg.predict(frames)
        if score_threshold:
            res = res.filter(score_threshold)
        results += res.to_ytvis(video_id=video.id, category_offset=0)
    # our labels are contiguous model labels; the file's categories are matched by name (ids need not be 1..K, and
    # a class the split does not have cannot be scored: its predictions are dropped)
    out = []
    for r in results:
        label = r["category_id"]
        cid = to_category[label] if 0 <= label < len(to_category) else None
        if cid is not None:
            out.append({**r, "category_id": cid})
    return out


def category_mapping(model_classes: Union[Sequence[str], int], ann: YTVISAnnotations
                     ) -> Tuple[List[Optional[int]], List[str]]:
    """Model label -> the split's category id, matched by class name (``model_classes``: the names; or a class
    count when the model has none, then label ``i`` is the split's ``i``-th category). Returns the mapping (None
    where the split has no such class) and the model's class names missing from the split."""
    if isinstance(model_classes, int):
        ids = [ann.category_ids[i] if i < len(ann.category_ids) else None for i in range(model_classes)]
        return ids, [str(i) for i in range(len(ann.category_ids), model_classes)]
    by_name = dict(zip(ann.class_names, ann.category_ids))
    ids = [by_name.get(n) for n in model_classes]
    return ids, [n for n, i in zip(model_classes, ids) if i is None]


def id_switches(gt: Union[PathLike, Mapping[str, Any]], results: Sequence[Mapping[str, Any]],
                iou_threshold: float = 0.5, score_threshold: float = 0.3) -> Dict[str, int]:
    """Identity switches of the predicted tracks (``track_id``) along every ground-truth track.

    Per frame, ground-truth masks are matched one-to-one to the predicted instances scoring at least
    ``score_threshold`` (one per track, the best scoring) by IoU (>= ``iou_threshold``, Hungarian). A switch is
    counted whenever a ground-truth object is matched to a different track than the last time it was matched.
    Returns ``{"id_switches", "matched", "gt_frames"}`` (matched / visible ground-truth object-frames).
    """
    data = gt if isinstance(gt, Mapping) else json.loads(Path(gt).read_text())
    videos = {v["id"]: v for v in data["videos"]}
    by_video: Dict[int, Dict[int, Mapping[str, Any]]] = {}
    for r in results:
        if r["score"] < score_threshold:
            continue
        tid = int(r.get("track_id", id(r)))
        cur = by_video.setdefault(r["video_id"], {}).get(tid)
        if cur is None or r["score"] > cur["score"]:
            by_video[r["video_id"]][tid] = r
    switches = matched = gt_frames = 0
    for vid, v in videos.items():
        h, w, n = v["height"], v["width"], len(v["file_names"])
        gts = [a for a in data.get("annotations", []) if a["video_id"] == vid and not a.get("iscrowd", 0)]
        preds = list(by_video.get(vid, {}).items())
        last: Dict[int, int] = {}
        for t in range(n):
            g_masks = [(k, decode_segmentation(a["segmentations"][t], h, w)) for k, a in enumerate(gts)]
            g_masks = [(k, m) for k, m in g_masks if m is not None and m.any()]
            gt_frames += len(g_masks)
            p_masks = [(tid, decode_segmentation(r["segmentations"][t], h, w)) for tid, r in preds]
            p_masks = [(tid, m) for tid, m in p_masks if m is not None and m.any()]
            if not g_masks or not p_masks:
                continue
            g = np.stack([m.reshape(-1) for _, m in g_masks]).astype(np.float32)
            p = np.stack([m.reshape(-1) for _, m in p_masks]).astype(np.float32)
            inter = g @ p.T
            union = g.sum(1)[:, None] + p.sum(1)[None, :] - inter
            iou = inter / np.maximum(union, 1)
            rows, cols = linear_sum_assignment(-iou)
            for r_, c_ in zip(rows, cols):
                if iou[r_, c_] < iou_threshold:
                    continue
                k, tid = g_masks[r_][0], p_masks[c_][0]
                matched += 1
                if k in last and last[k] != tid:
                    switches += 1
                last[k] = tid
    return {"id_switches": switches, "matched": matched, "gt_frames": gt_frames}


def evaluate_model(model: Any, ann_json: Union[PathLike, Mapping[str, Any]], frames_root: PathLike, *,
                   device: Union[str, torch.device] = "cpu", max_videos: Optional[int] = None,
                   with_id_switches: bool = True) -> Dict[str, float]:
    """Predict every video of a split and score it: the ``evaluate_ytvis`` metrics (``AP``, ``AP50``, ... on a 0-100
    scale) plus ``id_switches`` / ``id_matched`` and, with ``trackeval`` installed, ``IDF1``, ``AssA``, ``HOTA`` and
    ``id_switches_per_matched`` (:func:`dvis_sdk.evaluation.tracking.tracking_metrics`). Raises ImportError when
    ``dvis_sdk.evaluation`` is missing."""
    evaluate_ytvis = load_evaluator()
    ann = YTVISAnnotations(ann_json, frames_root)
    data = ann_json if isinstance(ann_json, Mapping) else json.loads(Path(ann_json).read_text())
    if max_videos is not None:
        keep = {v["id"] for v in data["videos"][:max_videos]}
        data = {**data, "videos": [v for v in data["videos"] if v["id"] in keep],
                "annotations": [a for a in data.get("annotations", []) if a["video_id"] in keep]}
    results = predict_split(model, ann, device=device, max_videos=max_videos)
    metrics = {k: float(v) for k, v in dict(evaluate_ytvis(data, results)).items()
               if isinstance(v, (int, float, np.floating, np.integer))}
    if with_id_switches:
        ids = id_switches(data, results)
        metrics["id_switches"] = float(ids["id_switches"])
        metrics["id_matched"] = float(ids["matched"])
        try:  # association metrics when trackeval is installed (the "tracking" extra)
            from ..evaluation.tracking import tracking_metrics

            t = tracking_metrics(data, results)
            metrics.update(IDF1=t["IDF1"], AssA=t["AssA"], HOTA=t["HOTA"],
                           id_switches_per_matched=t["id_switches_per_matched"])
        except ImportError:
            pass
    return metrics


def evaluate_with_segmenter_only(model: Any, ann_json: Union[PathLike, Mapping[str, Any]], frames_root: PathLike, *,
                                 device: Union[str, torch.device] = "cpu",
                                 known: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """:func:`evaluate_model` of ``model`` (``known``: its metrics, already computed) and, when it has a tracker,
    of its segmenter alone (the official MinVIS association, :func:`dvis_sdk.models.minvis.segmenter_only`) under
    ``"segmenter_only"``: what the trained tracker adds over plain embedding matching."""
    metrics: Dict[str, Any] = dict(known) if known is not None else evaluate_model(model, ann_json, frames_root,
                                                                                   device=device)
    metrics.pop("segmenter_only", None)
    if getattr(model, "tracker", None) is not None:
        from ..models.minvis import segmenter_only

        metrics["segmenter_only"] = evaluate_model(segmenter_only(model), ann_json, frames_root, device=device)
    return metrics
