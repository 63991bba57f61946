"""Association metrics at a sweep of score thresholds, and the three ways of turning a frozen segmenter's outputs
into tracks that the tracker study compares (used by ``tracker_curve.py``).

Sides:

- ``tracker``: the trained tracker's class logits and re-predicted masks (what the model outputs);
- ``cosine``: plain cosine-similarity association of the segmenter's embeddings (the tracker's Hungarian
  re-ordering of the segmenter queries, no tracker layers): segmenter logits and masks, i.e. a segmenter-only model;
- ``swap``: the tracker's class logits with the segmenter's masks (slot q of frame t: segmenter query
  ``indices[t, q]``), to tell whether a gap comes from the tracker's scores or from its re-predicted masks.

:func:`sweep_metrics` gives, for every threshold, what ``dvis_sdk.evaluation.tracking.tracking_metrics`` gives at
that ``score_threshold`` (IDF1, HOTA / DetA / AssA, IDTP / IDFN / IDFP, ID switches, matched object-frames) with the
per-video additive counts, decoding every mask once (a track's masks do not depend on the threshold, only whether
it is kept).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import torch

from dvis_sdk.evaluation import evaluate_ytvis
from dvis_sdk.evaluation.tracking import _metrics, sequence_data
from dvis_sdk.training.noise import attach_noiser
from dvis_sdk.training.stages.tracker import reorder_segmenter_outputs

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
COUNTS = ("IDTP", "IDFN", "IDFP", "IDSW", "CLR_TP")  # per video, additive
SIDES = ("tracker", "swap", "cosine")


def _subset(seq: Dict[str, Any], keep: np.ndarray) -> Dict[str, Any]:
    """trackeval input restricted to the predicted tracks ``keep`` (sorted indices), re-numbered 0..len-1."""
    new_id = -np.ones(seq["num_tracker_ids"], dtype=int)
    new_id[keep] = np.arange(len(keep))
    tr_ids, sims = [], []
    for ids, sim in zip(seq["tracker_ids"], seq["similarity_scores"]):
        cols = np.flatnonzero(np.isin(ids, keep))
        tr_ids.append(new_id[ids[cols]])
        sims.append(sim[:, cols])
    return {**seq, "num_tracker_ids": len(keep), "tracker_ids": tr_ids, "similarity_scores": sims,
            "num_tracker_dets": int(sum(len(x) for x in tr_ids))}


def sweep_metrics(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                  thresholds: Sequence[float] = THRESHOLDS, per_video: bool = True) -> Dict[str, Dict[str, Any]]:
    """``{str(threshold): metrics}``; as ``tracking_metrics(gt, results, score_threshold=t)`` for every ``t``
    (a track is its best-scoring result; it is kept when that score >= t), plus IDTP / IDFN / IDFP totals and,
    with ``per_video``, ``per_video``: one ``[IDTP, IDFN, IDFP, IDSW, CLR_TP]`` row per video of ``gt``."""
    hota, clear, identity = _metrics()
    best: Dict[Any, Dict[Any, Mapping[str, Any]]] = {}
    for k, r in enumerate(results):
        cur = best.setdefault(r["video_id"], {}).get(r.get("track_id", ("result", k)))
        if cur is None or r["score"] > cur["score"]:
            best[r["video_id"]][r.get("track_id", ("result", k))] = r
    anns: Dict[Any, List[Mapping[str, Any]]] = {}
    for a in gt.get("annotations", []):
        if not a.get("iscrowd", 0):
            anns.setdefault(a["video_id"], []).append(a)
    seqs, scores = [], []
    for v in gt["videos"]:
        tracks = list(best.get(v["id"], {}).values())
        seqs.append(sequence_data(v, anns.get(v["id"], []), tracks))
        scores.append(np.array([float(t["score"]) for t in tracks]))
    out: Dict[str, Dict[str, Any]] = {}
    for thr in thresholds:
        per = {"hota": [], "clear": [], "identity": []}
        for seq, sc in zip(seqs, scores):
            s = _subset(seq, np.flatnonzero(sc >= thr))
            per["hota"].append(hota.eval_sequence(s))
            per["clear"].append(clear.eval_sequence(s))
            per["identity"].append(identity.eval_sequence(s))
        h = hota.combine_sequences(dict(enumerate(per["hota"])))
        c = clear.combine_sequences(dict(enumerate(per["clear"])))
        i = identity.combine_sequences(dict(enumerate(per["identity"])))
        m = {"IDF1": 100 * float(i["IDF1"]), "HOTA": 100 * float(np.mean(h["HOTA"])),
             "DetA": 100 * float(np.mean(h["DetA"])), "AssA": 100 * float(np.mean(h["AssA"])),
             **{k: int(i[k]) for k in ("IDTP", "IDFN", "IDFP")}, "IDSW": int(c["IDSW"]),
             "matched": int(c["CLR_TP"])}
        if per_video:
            m["per_video"] = [[int(ii["IDTP"]), int(ii["IDFN"]), int(ii["IDFP"]), int(ci["IDSW"]), int(ci["CLR_TP"])]
                              for ci, ii in zip(per["clear"], per["identity"])]
        out[f"{thr:g}"] = m
    return out


def best_threshold(sweep: Mapping[str, Mapping[str, Any]], metric: str = "IDF1") -> str:
    """The threshold (key) with the highest pooled ``metric`` (ties: the lowest threshold)."""
    return max(sorted(sweep, key=float), key=lambda t: (sweep[t][metric], -float(t)))


def pooled_idf1(rows: Sequence[Sequence[int]]) -> float:
    """IDF1 (0-100) of per-video ``[IDTP, IDFN, IDFP, ...]`` rows pooled."""
    tp, fn, fp = (float(sum(r[j] for r in rows)) for j in range(3))
    return 100 * 2 * tp / max(2 * tp + fn + fp, 1.0)


@torch.no_grad()
def side_results(model, ann, seg_paths, to_results, sides: Sequence[str] = SIDES) -> Dict[str, List[dict]]:
    """YouTube-VIS results of every side in ``sides`` on the validation videos. ``model`` is evaluated as it is
    (call on a copy: it is put in eval mode and its noiser removed); ``to_results(logits, masks, hw, video_id)`` is
    the study's post-processing."""
    model.eval()
    attach_noiser(model.tracker, "none", 0.0)
    out: Dict[str, List[dict]] = {s: [] for s in sides}
    for v, p in zip(ann.videos, seg_paths):
        seg = torch.load(p, weights_only=True)
        trk, _, idx = model.tracker(seg["pred_embds"], seg["mask_features"][None], None,
                                    frame_embeds_no_norm=seg["pred_embds_without_norm"])
        re = reorder_segmenter_outputs(seg["pred_logits"], seg["pred_masks"], idx if idx.dim() == 2 else idx[:, 0])
        pick = {"tracker": (trk["pred_logits"], trk["pred_masks"]), "cosine": (re["pred_logits"], re["pred_masks"]),
                "swap": (trk["pred_logits"], re["pred_masks"])}
        for s in sides:
            logits, masks = pick[s]
            out[s] += to_results(logits[0], masks[0], (v.height, v.width), v.id)
    return out


def score_side(gt: Mapping[str, Any], results: List[dict], thresholds: Sequence[float] = THRESHOLDS
               ) -> Dict[str, Any]:
    """AP / AP50 / AP75 (all videos), per-video AP (for bootstrap intervals) and the threshold sweep."""
    m: Dict[str, Any] = {k: float(evaluate_ytvis(gt, results)[k]) for k in ("AP", "AP50", "AP75")}
    by_video: Dict[Any, List[dict]] = {}
    for r in results:
        by_video.setdefault(r["video_id"], []).append(r)
    anns: Dict[Any, List[dict]] = {}
    for a in gt["annotations"]:
        anns.setdefault(a["video_id"], []).append(a)
    m["per_video_AP"] = [float(evaluate_ytvis({**gt, "videos": [v], "annotations": anns.get(v["id"], [])},
                                              by_video.get(v["id"], []))["AP"]) for v in gt["videos"]]
    m["sweep"] = sweep_metrics(gt, results, thresholds)
    return m
