"""Video panoptic quality (VPQ) exactly as VIPSeg's ``eval_vpq_vspw.py`` (DVIS, DVIS++) computes it.

For each window length ``n`` in 1, 2, 4, 6, 8 annotated frames (named ``k = 5 (n - 1)``: 0, 5, 15, 25, 35, the
span in video frames, annotations being every 5th frame), every run of ``n`` consecutive annotated frames of a
video (``range(0, T - n + 1)``; a video shorter than ``n`` adds nothing) is one "image" of COCO panoptic quality
whose segments are tubes: a GT id's pixels over the window against a predicted id's. Quirks kept:

- the GT area of a tube is the sum of the JSON ``area`` fields over the window (not the PNG's pixels), the
  predicted area the PNG's pixel count (the JSON's is overwritten);
- a tube's category and ``iscrowd`` are those of its first entry in the window (first frame, first entry);
- a GT id listed in the JSON but absent from the PNG is still a tube (a false negative if unmatched);
  PNG pixels of an unlisted GT id are neither matched nor void;
- IoU = inter / (pred + gt - inter - void-pixels-under-the-prediction); a match needs IoU > 0.5 and the same
  category; an unmatched prediction is no false positive when more than half of it lies on void (GT id 0) plus
  the window's last-listed crowd segment of its category;
- averages run over the GT ``categories`` with any TP/FP/FN in that window length; things are categories with
  ``isthing == 1``, stuff the others; VPQ = 100 * PQ. The official script then prints the mean over the 5 window
  lengths. A subset with no category to average makes the official script divide by zero; here it is NaN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .panoptic_frame import FrameTable
from .ytvis import EvaluationInputError

WINDOW_FRAMES = (1, 2, 4, 6, 8)
_CHUNK = 64   # window starts per block: bounds memory on long videos (T x distinct-pairs arrays)


def window_name(nframes: int) -> int:
    """The official name ``k`` of a window of ``nframes`` annotated frames (its file ``vpq-k.txt``)."""
    return (nframes - 1) * 5


@dataclass
class PQStats:
    """Per-category TP / FP / FN counts and summed IoU of one window length (category index space)."""
    size: int
    tp: np.ndarray = field(init=False)
    fp: np.ndarray = field(init=False)
    fn: np.ndarray = field(init=False)
    iou: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.tp, self.fp, self.fn = (np.zeros(self.size, np.int64) for _ in range(3))
        self.iou = np.zeros(self.size, np.float64)


class CategoryIndex:
    """GT categories -> 0..C-1 (their order in the JSON); any other GT category -> C (counted, never averaged)."""

    def __init__(self, categories: Sequence[Mapping[str, Any]]):
        self.index: Dict[int, int] = {}
        self.isthing: Dict[int, Any] = {}
        for i, c in enumerate(categories):
            if not isinstance(c, Mapping) or "id" not in c or "isthing" not in c:
                raise EvaluationInputError(f"ground truth: categories[{i}] needs 'id' and 'isthing'")
            cid = int(c["id"])
            self.index.setdefault(cid, len(self.index))   # a repeated id keeps its first place, as a dict does
            self.isthing[cid] = c["isthing"]              # ... and its last entry
        self.ids = list(self.index)
        self.unknown = len(self.ids)

    def map(self, cats: np.ndarray, pred: bool, where: str) -> np.ndarray:
        out = np.array([self.index.get(c, self.unknown) if c >= 0 else -1 for c in cats.tolist()], np.int64)
        if pred and (out == self.unknown).any():
            bad = cats[out == self.unknown][:3].tolist()
            raise EvaluationInputError(f"{where}: predicted category_id {bad} is not in the ground truth's "
                                       f"categories")
        return out


def _next_present(present: np.ndarray) -> np.ndarray:
    """For each frame f and id, the first frame >= f where the id is present (len(present) if none)."""
    L = len(present)
    out = np.full((L + 1,) + present.shape[1:], L, np.int64)
    for f in range(L - 1, -1, -1):
        out[f] = np.where(present[f], f, out[f + 1])
    return out[:L]


def _window_sum(x: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    c = np.concatenate([np.zeros((1,) + x.shape[1:], x.dtype), np.cumsum(x, axis=0)])
    return c[starts + n] - c[starts]


class _Block:
    """Frames of one block of a video, stacked on video-level id indices (GT row 0 = other, 1 = VOID)."""

    def __init__(self, frames: Sequence[FrameTable], cats: CategoryIndex, where: str):
        gmap: Dict[int, int] = {-1: 0, 0: 1}
        pmap: Dict[int, int] = {0: 0}
        for fr in frames:
            for s in fr.gt_ids[2:].tolist():
                gmap.setdefault(s, len(gmap))
            for s in fr.pred_ids[1:].tolist():
                pmap.setdefault(s, len(pmap))
        L, G, P = len(frames), len(gmap), len(pmap)
        self.g_keys = np.array(list(gmap), np.int64)
        self.g_present = np.zeros((L, G), bool)
        self.g_area = np.zeros((L, G))
        self.g_cat = np.full((L, G), -1, np.int64)
        self.g_crowd = np.zeros((L, G), bool)
        self.g_pos = np.zeros((L, G), np.int64)
        self.p_present = np.zeros((L, P), bool)
        self.p_area = np.zeros((L, P))
        self.p_cat = np.full((L, P), -1, np.int64)
        rows, cols, vals, fidx = [], [], [], []
        for f, fr in enumerate(frames):
            gi = np.array([gmap[s] for s in fr.gt_ids.tolist()], np.int64)
            pi = np.array([pmap[s] for s in fr.pred_ids.tolist()], np.int64)
            lg = fr.gt_listed
            self.g_present[f, gi[lg]] = True
            self.g_area[f, gi[lg]] = fr.gt_area[lg]
            self.g_cat[f, gi[lg]] = cats.map(fr.gt_cat_first[lg], False, where)
            self.g_crowd[f, gi[lg]] = fr.gt_crowd[lg]
            self.g_pos[f, gi[lg]] = fr.gt_rank[lg]     # insertion order of the official per-frame dict
            lp = fr.pred_listed
            self.p_present[f, pi[lp]] = True
            self.p_area[f, pi[lp]] = fr.pred_area[lp]
            self.p_cat[f, pi[lp]] = cats.map(fr.pred_cat_first[lp], True, where)
            r, c = np.nonzero(fr.counts)
            rows.append(gi[r])
            cols.append(pi[c])
            vals.append(fr.counts[r, c])
            fidx.append(np.full(len(r), f))
        key = np.concatenate(rows) * P + np.concatenate(cols)
        pairs, q = np.unique(key, return_inverse=True)
        self.q_g, self.q_p = pairs // P, pairs % P
        self.pairs = np.zeros((L, len(pairs)))
        np.add.at(self.pairs, (np.concatenate(fidx), q.ravel()), np.concatenate(vals))
        self.void_q = np.nonzero(self.q_g == 1)[0]
        self.g_next = _next_present(self.g_present)
        self.p_next = _next_present(self.p_present)
        self.P = P

    def first_facts(self, nxt: np.ndarray, facts: np.ndarray, starts: np.ndarray, n: int):
        first = nxt[starts]                                    # (W, ids)
        inside = first < (starts + n)[:, None]
        picked = np.take_along_axis(facts, np.minimum(first, len(facts) - 1), axis=0)
        return inside, first, picked


def _crowd_lookup(block: _Block, first_row: np.ndarray, present: np.ndarray, crowd: np.ndarray,
                  cat_row: np.ndarray) -> Dict[int, int]:
    """Category -> the crowd GT id the official dict keeps (the last inserted one) in one window."""
    out: Dict[int, int] = {}
    best: Dict[int, tuple] = {}
    for g in np.nonzero(present & crowd)[0].tolist():
        f = int(first_row[g])
        order = (f, int(block.g_pos[f, g]))
        c = int(cat_row[g])
        if c not in best or order > best[c]:
            best[c], out[c] = order, g
    return out


def _windows(block: _Block, starts: np.ndarray, n: int, stats: PQStats, where: str) -> None:
    g_in, g_first, g_cat = block.first_facts(block.g_next, block.g_cat, starts, n)
    _, _, g_crowd = block.first_facts(block.g_next, block.g_crowd, starts, n)
    p_in, _, p_cat = block.first_facts(block.p_next, block.p_cat, starts, n)
    g_cat, g_crowd, p_cat = np.where(g_in, g_cat, -1), g_crowd & g_in, np.where(p_in, p_cat, -2)
    g_area = _window_sum(block.g_area, starts, n)
    p_area = _window_sum(block.p_area, starts, n)
    inter = _window_sum(block.pairs, starts, n)                # (W, Q)
    W = len(starts)
    void = np.zeros((W, block.P))
    void[:, block.q_p[block.void_q]] = inter[:, block.void_q]
    qg, qp = block.q_g, block.q_p

    cand = (inter > 0) & g_in[:, qg] & p_in[:, qp] & ~g_crowd[:, qg] & (g_cat[:, qg] == p_cat[:, qp])
    union = p_area[:, qp] + g_area[:, qg] - inter - void[:, qp]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(cand, inter / np.where(cand, union, 1.0), 0.0)
    if (cand & ~(iou <= 1.0)).any():
        w, q = map(int, np.argwhere(cand & ~(iou <= 1.0))[0])
        raise EvaluationInputError(f"{where}: IoU > 1 for GT id {int(block.g_keys[qg[q]])} (its JSON 'area' is "
                                   f"smaller than its pixels; the official script stops on an assertion)")
    w_idx, q_idx = np.nonzero(cand & (iou > 0.5))
    cats = g_cat[w_idx, qg[q_idx]]
    np.add.at(stats.tp, cats, 1)
    np.add.at(stats.iou, cats, iou[w_idx, q_idx])
    g_matched = np.zeros_like(g_in)
    g_matched[w_idx, qg[q_idx]] = True
    p_matched = np.zeros_like(p_in)
    p_matched[w_idx, qp[q_idx]] = True

    fn = g_in & ~g_matched & ~g_crowd
    np.add.at(stats.fn, g_cat[fn], 1)

    ignored = void.copy()      # + the pixels on the crowd segment of the prediction's category, if any
    for w in np.nonzero(g_crowd.any(axis=1))[0].tolist():
        for c, g in _crowd_lookup(block, g_first[w], g_in[w], g_crowd[w], g_cat[w]).items():
            qs = np.nonzero((qg == g) & (p_cat[w, qp] == c))[0]
            ignored[w, qp[qs]] += inter[w, qs]
    fp_cand = p_in & ~p_matched
    with np.errstate(divide="ignore", invalid="ignore"):
        mostly_void = ignored / np.where(fp_cand, p_area, 1.0) > 0.5
    fp = fp_cand & ~mostly_void
    np.add.at(stats.fp, p_cat[fp], 1)


def add_video(frames: Sequence[FrameTable], cats: CategoryIndex, stats: Mapping[int, PQStats], where: str) -> None:
    """Accumulate every window of one video into ``stats`` (window length -> :class:`PQStats`)."""
    T = len(frames)
    longest = max(stats)
    for s in range(0, T, _CHUNK):
        block = _Block(frames[s:min(T, s + _CHUNK + longest - 1)], cats, where)
        for n, st in stats.items():
            starts = np.arange(s, min(s + _CHUNK, T - n + 1)) - s
            if len(starts):
                _windows(block, starts, n, st, where)


def pq_average(stats: PQStats, cats: CategoryIndex, isthing: Optional[bool]) -> Dict[str, float]:
    """``PQStat.pq_average``: mean PQ / SQ / RQ (fractions) over the categories with any TP, FP or FN."""
    pq = sq = rq = 0.0
    n = 0
    for cid, i in cats.index.items():
        if isthing is not None and (cats.isthing[cid] == 1) != isthing:
            continue
        tp, fp, fn, iou = int(stats.tp[i]), int(stats.fp[i]), int(stats.fn[i]), float(stats.iou[i])
        if tp + fp + fn == 0:
            continue
        n += 1
        pq += iou / (tp + 0.5 * fp + 0.5 * fn)
        sq += iou / tp if tp != 0 else 0
        rq += tp / (tp + 0.5 * fp + 0.5 * fn)
    if n == 0:
        return {"pq": float("nan"), "sq": float("nan"), "rq": float("nan"), "n": 0}
    return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}


def per_category(stats: PQStats, cats: CategoryIndex) -> Dict[int, Dict[str, float]]:
    """Per GT category: PQ / SQ / RQ (0-100), summed IoU, TP / FP / FN (the official ``vpq-k.txt`` rows)."""
    out = {}
    for cid, i in cats.index.items():
        tp, fp, fn, iou = int(stats.tp[i]), int(stats.fp[i]), int(stats.fn[i]), float(stats.iou[i])
        den = tp + 0.5 * fp + 0.5 * fn
        out[cid] = {"PQ": 100 * iou / den if den else 0.0, "SQ": 100 * iou / tp if tp else 0.0,
                    "RQ": 100 * tp / den if den else 0.0, "iou": iou, "tp": tp, "fp": fp, "fn": fn}
    return out


def new_stats(cats: CategoryIndex, windows: Sequence[int] = WINDOW_FRAMES) -> Dict[int, PQStats]:
    """Empty accumulators, one per window length."""
    return {n: PQStats(cats.unknown + 1) for n in windows}


def summarize(stats: Mapping[int, PQStats], cats: CategoryIndex) -> Dict[str, Any]:
    """VPQ, VPQ_thing, VPQ_stuff (0-100, mean over window lengths) and per window ``k`` the official numbers."""
    out: Dict[str, Any] = {}
    windows: Dict[int, Dict[str, Any]] = {}
    sums: Dict[str, List[float]] = {"VPQ": [], "VPQ_thing": [], "VPQ_stuff": []}
    for n, st in stats.items():
        k = window_name(n)
        row: Dict[str, Any] = {}
        for key, isthing in (("", None), ("_thing", True), ("_stuff", False)):
            r = pq_average(st, cats, isthing)
            row["VPQ" + key] = 100 * r["pq"]
            row["SQ" + key], row["RQ" + key], row["N" + key] = 100 * r["sq"], 100 * r["rq"], r["n"]
            sums["VPQ" + key].append(100 * r["pq"])
            out[f"VPQ{key}@{k}"] = 100 * r["pq"]
        windows[k] = row
    for key, vals in sums.items():
        out[key] = sum(vals) / len(vals) if vals else float("nan")
    out["windows"] = windows
    return out
