"""Association metrics of video instance segmentation results: identity switches, IDF1 and HOTA (DetA / AssA).

The metrics are computed by ``trackeval`` (the reference implementation of HOTA, with the CLEAR and Identity
metrics; ``pip install "dvis-sdk[tracking]"``) on mask IoUs: per frame, every visible ground-truth object against
every predicted track (YouTube-VIS results, one instance per ``track_id`` or per result) that scores at least
``score_threshold`` and has a non-empty mask there. CLEAR (ID switches, MOTA) and Identity (IDF1) match at IoU
>= 0.5; HOTA averages over IoU thresholds 0.05..0.95.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["tracking_metrics", "sequence_data"]

PathOrData = Union[str, Path, Mapping[str, Any]]


def _metrics():
    try:
        from trackeval.metrics import CLEAR, HOTA, Identity
    except ImportError as e:
        raise ImportError(f"tracking metrics need trackeval ({e}); install it with: "
                          f"pip install \"dvis-sdk[tracking]\"") from None
    cfg = {"PRINT_CONFIG": False, "THRESHOLD": 0.5}
    return HOTA(), CLEAR(cfg), Identity(cfg)


def _decode(seg: Any, h: int, w: int) -> Optional[np.ndarray]:
    if seg is None:
        return None
    from pycocotools import mask as mask_util

    if isinstance(seg, list):  # polygons
        rle = mask_util.merge(mask_util.frPyObjects(seg, h, w)) if seg else None
    elif isinstance(seg.get("counts"), list):  # uncompressed RLE
        rle = mask_util.frPyObjects(seg, h, w)
    else:
        rle = dict(seg)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    if rle is None:
        return None
    return mask_util.decode(rle).astype(bool)


def sequence_data(video: Mapping[str, Any], gts: Sequence[Mapping[str, Any]],
                  preds: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """trackeval's per-sequence input for one video: ``gts`` its annotations, ``preds`` its predicted tracks."""
    h, w, n = int(video["height"]), int(video["width"]), len(video["file_names"])
    gt_ids: List[np.ndarray] = []
    tr_ids: List[np.ndarray] = []
    sims: List[np.ndarray] = []
    for t in range(n):
        g = [(k, _decode(a["segmentations"][t], h, w)) for k, a in enumerate(gts)]
        g = [(k, m) for k, m in g if m is not None and m.any()]
        p = [(k, _decode(r["segmentations"][t], h, w)) for k, r in enumerate(preds)]
        p = [(k, m) for k, m in p if m is not None and m.any()]
        gt_ids.append(np.array([k for k, _ in g], dtype=int))
        tr_ids.append(np.array([k for k, _ in p], dtype=int))
        if g and p:
            gm = np.stack([m.reshape(-1) for _, m in g]).astype(np.float64)
            pm = np.stack([m.reshape(-1) for _, m in p]).astype(np.float64)
            inter = gm @ pm.T
            union = gm.sum(1)[:, None] + pm.sum(1)[None, :] - inter
            sims.append(inter / np.maximum(union, 1.0))
        else:
            sims.append(np.zeros((len(g), len(p))))
    return {"num_timesteps": n, "num_gt_ids": len(gts), "num_tracker_ids": len(preds),
            "num_gt_dets": int(sum(len(x) for x in gt_ids)), "num_tracker_dets": int(sum(len(x) for x in tr_ids)),
            "gt_ids": gt_ids, "tracker_ids": tr_ids, "similarity_scores": sims}


def _load(obj: Any) -> Any:
    return json.loads(Path(obj).read_text()) if isinstance(obj, (str, Path)) else obj


def tracking_metrics(gt: PathOrData, results: Union[PathOrData, Sequence[Mapping[str, Any]]], *,
                     score_threshold: float = 0.3, per_video: bool = False) -> Dict[str, Any]:
    """Association metrics over all videos of a YouTube-VIS split.

    Returns ``IDF1``, ``HOTA``, ``DetA``, ``AssA`` (0-100, HOTA averaged over IoU thresholds), ``MOTA`` (0-100),
    ``id_switches`` (CLEAR IDSW), ``matched`` (object-frames matched at IoU >= 0.5), ``gt_dets`` (visible
    object-frames) and ``id_switches_per_matched`` (switches / matched object-frames: a tracker that matches less
    cannot look better by switching less). With ``per_video``, also ``per_video``: per video its ``video_id`` and
    the additive counts ``IDTP``, ``IDFN``, ``IDFP``, ``IDSW``, ``CLR_TP``, ``CLR_FN`` (for bootstrap intervals).
    """
    data = _load(gt)
    res = _load(results)
    if isinstance(res, Mapping):
        res = res.get("annotations", [])
    hota, clear, identity = _metrics()
    by_video: Dict[Any, Dict[Any, Mapping[str, Any]]] = {}
    for k, r in enumerate(res):
        if float(r.get("score", 1.0)) < score_threshold:
            continue
        key = r.get("track_id", ("result", k))
        cur = by_video.setdefault(r["video_id"], {}).get(key)
        if cur is None or r.get("score", 1.0) > cur.get("score", 1.0):
            by_video[r["video_id"]][key] = r
    anns: Dict[Any, List[Mapping[str, Any]]] = {}
    for a in data.get("annotations", []):
        if not a.get("iscrowd", 0):
            anns.setdefault(a["video_id"], []).append(a)
    per_seq: Dict[str, List[Dict[str, Any]]] = {"hota": [], "clear": [], "identity": []}
    for v in data["videos"]:
        seq = sequence_data(v, anns.get(v["id"], []), list(by_video.get(v["id"], {}).values()))
        per_seq["hota"].append(hota.eval_sequence(seq))
        per_seq["clear"].append(clear.eval_sequence(seq))
        per_seq["identity"].append(identity.eval_sequence(seq))
    if not data["videos"]:
        raise ValueError("the ground truth has no videos")
    h = hota.combine_sequences(dict(enumerate(per_seq["hota"])))
    c = clear.combine_sequences(dict(enumerate(per_seq["clear"])))
    i = identity.combine_sequences(dict(enumerate(per_seq["identity"])))
    matched = int(c["CLR_TP"])
    out: Dict[str, Any] = {"IDF1": 100 * float(i["IDF1"]), "HOTA": 100 * float(np.mean(h["HOTA"])),
            "DetA": 100 * float(np.mean(h["DetA"])), "AssA": 100 * float(np.mean(h["AssA"])),
            "MOTA": 100 * float(c["MOTA"]), "id_switches": int(c["IDSW"]), "matched": matched,
            "gt_dets": int(c["CLR_TP"] + c["CLR_FN"]),
            "id_switches_per_matched": float(c["IDSW"]) / matched if matched else float("nan")}
    if per_video:
        out["per_video"] = [{"video_id": v["id"], **{k: int(ci[k]) for k in ("CLR_TP", "CLR_FN", "IDSW")},
                             **{k: int(ii[k]) for k in ("IDTP", "IDFN", "IDFP")}}
                            for v, ci, ii in zip(data["videos"], per_seq["clear"], per_seq["identity"])]
    return out
