"""Segmentation and Tracking Quality (STQ) exactly as VIPSeg's ``eval_stq_vspw.py`` computes it with deeplab2's
numpy ``segmentation_and_tracking_quality.py`` (124 classes, ignore label 255, label bit shift 16, offset 2^24).

The script turns each frame into ``(semantic << 16) + instance`` maps and feeds them to ``STQuality``, one
sequence per video. Quirks kept:

- instance numbers are the index of each id's first appearance in the video's ``segments_info`` lists (GT and
  prediction separately), counting from 0. STQ reads GT instance 0 of a thing class as *crowd*: the first GT
  segment listed in a video, when it is a thing, is left out of the association term, and so are the predicted
  pixels on it;
- a pixel whose id is not listed in its frame's ``segments_info`` (void 0 included) is semantic 255 / instance
  255; 255 is mapped to class 124 (= num_classes) in the confusion matrix, whose row (GT ignore) is dropped
  but whose column is kept, so a GT pixel predicted as unlisted/void counts against its class and, when any
  exists, the extra class 124 (IoU 0) enters the mean;
- a GT id listed twice in one frame takes the category of its last entry (entries are painted in order);
- things are categories with a truthy ``isthing``; AQ = sum over GT tubes of
  ``1/|g| * sum_p TPA^2 / (|p| + |g| - TPA)`` divided by the number of GT tubes over all videos; a video's tubes
  are its distinct (class, instance) values;
- SQ is the mean IoU over the classes (0..124) with a non-empty union; STQ = sqrt(AQ * SQ); all on 0..1, as
  printed (``STQ``, ``AQ``, ``IoU``).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .panoptic_frame import FrameTable
from .ytvis import EvaluationInputError

BIT_SHIFT = 16
IGNORE = 255
_EPS = 1e-15


def instance_numbers(annotations: Sequence[Sequence[Mapping[str, Any]]]) -> Dict[int, int]:
    """Id -> index of its first appearance over a video's ``segments_info`` lists (the official numbering)."""
    out: Dict[int, int] = {}
    for segs in annotations:
        for el in segs:
            out.setdefault(int(el["id"]), len(out))
    return out


def _labels(ids: np.ndarray, listed: np.ndarray, cat_last: np.ndarray, numbers: Mapping[int, int]) -> np.ndarray:
    sem = np.where(listed, cat_last, IGNORE)
    ins = np.array([numbers.get(s, IGNORE) if ok else IGNORE for s, ok in zip(ids.tolist(), listed.tolist())],
                   np.int64)
    # the official maps are uint32 cast to int32: keep that wrap for the (absurd) overflowing cases
    return (((sem << BIT_SHIFT) + ins) & 0xFFFFFFFF).astype(np.uint32).astype(np.int32).astype(np.int64)


class STQAccumulator:
    """``STQuality`` fed with :class:`FrameTable` s instead of pixel maps (same sums, one video at a time)."""

    def __init__(self, num_classes: int, thing_ids: Sequence[int]):
        self.num_classes = num_classes
        self.size = num_classes + 1             # ignore 255 >= num_classes: one extra row/column
        self.thing = np.zeros(self.size, bool)
        for c in thing_ids:
            if 0 <= c < self.size:
                self.thing[c] = True
        self.videos: List[str] = []
        self.aq: List[float] = []
        self.tubes: List[int] = []
        self.lengths: List[int] = []
        self.confusions: List[np.ndarray] = []
        self._open: Optional[dict] = None

    def start(self, video_id: str, gt_numbers: Mapping[int, int], pred_numbers: Mapping[int, int]) -> None:
        self._open = {"id": video_id, "gt_num": gt_numbers, "pred_num": pred_numbers, "n": 0,
                      "conf": np.zeros((self.size, self.size), np.int64), "gt": [], "pred": [], "inter": []}

    def _semantic(self, y: np.ndarray, where: str) -> np.ndarray:
        sem = y >> BIT_SHIFT
        sem = np.where(sem != IGNORE, sem, self.num_classes)
        if ((sem < 0) | (sem > self.num_classes)).any():
            bad = sorted(set((y >> BIT_SHIFT)[(sem < 0) | (sem > self.num_classes)].tolist()))[:3]
            raise EvaluationInputError(f"{where}: category_id {bad} outside 0..{self.num_classes - 1} (STQ's "
                                       f"confusion matrix has {self.num_classes} classes + ignore 255)")
        return sem

    def add(self, fr: FrameTable, where: str) -> None:
        """One frame of the open video."""
        st = self._open
        y_true = _labels(fr.gt_ids, fr.gt_listed, fr.gt_cat_last, st["gt_num"])
        y_pred = _labels(fr.pred_ids, fr.pred_listed, fr.pred_cat_last, st["pred_num"])
        sem_t, sem_p = self._semantic(y_true, where), self._semantic(y_pred, where)
        counts = fr.counts
        st["conf"] += np.bincount((sem_t[:, None] * self.size + sem_p[None, :]).ravel(), weights=counts.ravel(),
                                  minlength=self.size * self.size).astype(np.int64).reshape(self.size, self.size)
        st["n"] += 1
        thing_t = self.thing[sem_t]
        crowd = thing_t & ((y_true & 0xFFFF) == 0)
        gt_ok = thing_t & ~crowd
        pred_ok = self.thing[sem_p][None, :] & ~crowd[:, None]
        g_size = counts.sum(axis=1)
        keep = gt_ok & (g_size > 0)
        st["gt"].append((y_true[keep], g_size[keep]))
        p_size = (counts * pred_ok).sum(axis=0)
        keep = p_size > 0
        st["pred"].append((y_pred[keep], p_size[keep]))
        r, c = np.nonzero(counts * (gt_ok[:, None] & pred_ok))
        st["inter"].append((y_true[r], y_pred[c], counts[r, c]))

    def finish(self) -> None:
        """Close the open video: its association term and its confusion matrix."""
        st, self._open = self._open, None
        if st is None or st["n"] == 0:      # a video without frames never reaches STQuality
            return
        g_keys, g_sizes = _merge([k for k, _ in st["gt"]], [v for _, v in st["gt"]])
        p_keys, p_sizes = _merge([k for k, _ in st["pred"]], [v for _, v in st["pred"]])
        it = st["inter"]
        pair = np.concatenate([a for a, _, _ in it]) * (1 << 32) + np.concatenate([b for _, b, _ in it])
        pair_keys, tpa = _merge([pair], [np.concatenate([v for _, _, v in it])])
        gk, pk = pair_keys >> 32, pair_keys & 0xFFFFFFFF
        gs = g_sizes[np.searchsorted(g_keys, gk)].astype(np.float64)
        ps = p_sizes[np.searchsorted(p_keys, pk)].astype(np.float64)      # labels are >= 0 (checked)
        tpa = tpa.astype(np.float64)
        inner = tpa * (tpa / (ps + gs - tpa))
        self.aq.append(float(np.sum(inner / gs)))
        self.tubes.append(len(g_keys))
        self.videos.append(st["id"])
        self.lengths.append(st["n"])
        conf = st["conf"].copy()
        conf[self.num_classes, :] = 0          # the GT-ignore row is removed, its column is not
        self.confusions.append(conf)

    @staticmethod
    def _mean_iou(conf: np.ndarray) -> float:
        inter = conf.diagonal()
        union = conf.sum(axis=0) + conf.sum(axis=1) - inter
        n = np.count_nonzero(union)
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(np.sum(inter / np.maximum(union, _EPS)) / n) if n else float("nan")

    def result(self) -> Dict[str, Any]:
        """STQ, AQ, SQ (the printed ``IoU``), all 0..1, and per video."""
        aq = float(np.sum(self.aq) / max(sum(self.tubes), _EPS)) if self.aq else 0.0
        total = sum(self.confusions) if self.confusions else np.zeros((self.size, self.size), np.int64)
        sq = self._mean_iou(total)
        per_video = {}
        for vid, a, n, conf, length in zip(self.videos, self.aq, self.tubes, self.confusions, self.lengths):
            a = a / max(n, _EPS)
            s = self._mean_iou(conf)
            per_video[vid] = {"STQ": float(np.sqrt(a * s)), "AQ": a, "SQ": s, "frames": length}
        return {"STQ": float(np.sqrt(aq * sq)), "AQ": aq, "SQ": sq, "per_video": per_video}


def _merge(keys: List[np.ndarray], values: List[np.ndarray]):
    k = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    v = np.concatenate(values) if values else np.zeros(0, np.int64)
    uk, inv = np.unique(k, return_inverse=True)
    return uk, np.bincount(inv.ravel(), weights=v, minlength=len(uk))
