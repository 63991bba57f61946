"""One VIPSeg frame reduced to what VPQ and STQ need: the (GT segment, predicted segment) pixel-count table.

Both official scripts only ever look at pixels through pairs (GT id, predicted id) and per-id facts from the
JSON, so a frame is read once and reduced here to a small table; the metrics never touch pixels again.

Rows (GT): 0 = every pixel whose id is neither 0 nor listed in the frame's ``segments_info`` ("other": the
official VPQ skips them in matching and does not treat them as void; STQ treats them as unlabelled), 1 = id 0
(VOID; also a segment if the JSON lists id 0), 2.. = the other listed ids in order of first appearance.
Columns (predictions): 0 = id 0, 1.. = the listed ids. A predicted id that is in the PNG and not in the JSON (other
than 0), or in the JSON and not in the PNG, is an error, as in ``eval_vpq_vspw.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Sequence, Tuple

import numpy as np

from .ytvis import EvaluationInputError

LUT_SIZE = 1 << 24          # ids are R + 256 G + 65536 B
_MAX_ROWS = 0xFFFF


@dataclass
class FrameTable:
    """Pair counts and per-segment facts of one frame (see the module docstring for the row/column layout)."""
    gt_ids: np.ndarray          # (G,) int64; row 0 = -1 ("other"), row 1 = 0
    gt_listed: np.ndarray       # (G,) bool: the id is in this frame's GT segments_info
    gt_cat_first: np.ndarray    # (G,) category of the id's first entry (VPQ keeps the first)
    gt_cat_last: np.ndarray     # (G,) category of its last entry (STQ paints entries in order: the last wins)
    gt_crowd: np.ndarray        # (G,) bool, iscrowd of the first entry
    gt_area: np.ndarray         # (G,) float64, sum of the JSON 'area' of its entries (VPQ's GT area)
    gt_rank: np.ndarray         # (G,) int64, place of the id's first entry among the frame's ids (-1: unlisted)
    pred_ids: np.ndarray        # (P,) int64; column 0 = 0
    pred_listed: np.ndarray     # (P,) bool
    pred_cat_first: np.ndarray  # (P,)
    pred_cat_last: np.ndarray   # (P,)
    counts: np.ndarray          # (G, P) int64 pixel counts

    @property
    def pred_area(self) -> np.ndarray:
        """Pixels of each predicted id in the PNG (VPQ uses these, not the JSON areas)."""
        return self.counts.sum(axis=0)


def _unique_segments(segs: Sequence[Mapping[str, Any]], where: str, need_area: bool
                     ) -> Tuple[List[int], dict]:
    """Ids in order of first appearance and, per id, (first category, last category, first iscrowd, area sum)."""
    order: List[int] = []
    info: dict = {}
    for i, el in enumerate(segs):
        try:
            sid, cat = int(el["id"]), int(el["category_id"])
        except (TypeError, ValueError):
            raise EvaluationInputError(f"{where}, segments_info[{i}]: 'id' and 'category_id' must be integers"
                                       ) from None
        if not 0 <= sid < LUT_SIZE:
            raise EvaluationInputError(f"{where}, segments_info[{i}]: id {sid} is not an RGB id (0 .. 2^24-1)")
        area = el.get("area")
        if need_area and area is not None and not isinstance(area, (int, float)):
            raise EvaluationInputError(f"{where}, segments_info[{i}]: 'area' must be a number")
        if sid in info:
            first, _, crowd, total = info[sid]
            info[sid] = (first, cat, crowd, None if total is None or area is None else total + area)
        else:
            order.append(sid)
            info[sid] = (cat, cat, int(el.get("iscrowd", 0)) == 1, area)
    return order, info


def frame_table(gt_pan: np.ndarray, pred_pan: np.ndarray, gt_segs: Sequence[Mapping[str, Any]],
                pred_segs: Sequence[Mapping[str, Any]], lut: np.ndarray, where: str) -> FrameTable:
    """Reduce one frame's GT and predicted id maps (uint32, (H, W)) and their ``segments_info`` to a table.

    ``lut`` is a scratch uint16 array of :data:`LUT_SIZE` zeros (:func:`new_lut`); it is zero again on return
    (one allocation per evaluation instead of one per frame).
    """
    if gt_pan.shape != pred_pan.shape:
        raise EvaluationInputError(f"{where}: prediction is {pred_pan.shape[1]}x{pred_pan.shape[0]}, ground truth "
                                   f"{gt_pan.shape[1]}x{gt_pan.shape[0]} (predictions must be at GT resolution)")
    g_order, g_info = _unique_segments(gt_segs, where + " (ground truth)", True)
    p_order, p_info = _unique_segments(pred_segs, where + " (prediction)", False)
    gt_ids = np.array([-1, 0] + [s for s in g_order if s != 0], np.int64)
    pred_ids = np.array([0] + [s for s in p_order if s != 0], np.int64)
    G, P = len(gt_ids), len(pred_ids)
    if max(G, P) > _MAX_ROWS:
        raise EvaluationInputError(f"{where}: more than 65534 segments in one frame")

    # the scratch table maps ids to rows / columns; everything else reads 0: GT "other", predicted id 0
    lut[gt_ids[1:]] = np.arange(1, G, dtype=np.uint16)
    g_idx = np.take(lut, gt_pan)
    lut[gt_ids[1:]] = 0
    lut[pred_ids[1:]] = np.arange(1, P, dtype=np.uint16)
    p_idx = np.take(lut, pred_pan)
    lut[pred_ids[1:]] = 0
    flat = g_idx.astype(np.int64 if G * P >= 1 << 31 else np.int32)
    flat *= P
    flat += p_idx
    if G * P <= 1 << 22:
        counts = np.bincount(flat.ravel(), minlength=G * P).reshape(G, P)
    else:  # many ids: a sparse count instead of a huge dense histogram
        keys, cnt = np.unique(flat, return_counts=True)
        counts = np.zeros((G, P), np.int64)
        counts[keys // P, keys % P] = cnt
    if counts[:, 0].sum() != np.count_nonzero(pred_pan == 0):   # unlisted predicted ids fell in column 0
        bad = np.unique(pred_pan[(p_idx == 0) & (pred_pan != 0)])[:5].tolist()
        raise EvaluationInputError(f"{where}: predicted segment id(s) {bad} are in the PNG and not in the frame's "
                                   f"segments_info")
    pred_area = counts.sum(axis=0)
    listed_p = np.array([s in p_info for s in pred_ids.tolist()])
    missing = pred_ids[listed_p & (pred_area == 0)]
    if len(missing):
        raise EvaluationInputError(f"{where}: predicted segment id(s) {missing[:5].tolist()} are in segments_info "
                                   f"and not in the PNG")

    def facts(ids: np.ndarray, info: dict) -> Tuple[np.ndarray, ...]:
        rows = [info.get(s) for s in ids.tolist()]
        first = np.array([r[0] if r else -1 for r in rows], np.int64)
        last = np.array([r[1] if r else -1 for r in rows], np.int64)
        crowd = np.array([bool(r and r[2]) for r in rows])
        area = np.array([(np.nan if r[3] is None else float(r[3])) if r else 0.0 for r in rows], np.float64)
        return np.array([r is not None for r in rows]), first, last, crowd, area

    g_listed, g_first, g_last, g_crowd, g_area = facts(gt_ids, g_info)
    if np.isnan(g_area).any():  # GT without 'area' (the official script needs it): the PNG's pixel count
        g_area = np.where(np.isnan(g_area), counts.sum(axis=1), g_area)
    p_listed, p_first, p_last, _, _ = facts(pred_ids, p_info)
    rank = {s: i for i, s in enumerate(g_order)}
    g_rank = np.array([rank.get(s, -1) for s in gt_ids.tolist()], np.int64)
    return FrameTable(gt_ids, g_listed, g_first, g_last, g_crowd, g_area, g_rank, pred_ids, p_listed, p_first,
                      p_last, counts)


def new_lut() -> np.ndarray:
    """The scratch id -> row table :func:`frame_table` needs (32 MiB, allocated once per evaluation)."""
    return np.zeros(LUT_SIZE, np.uint16)
