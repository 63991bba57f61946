"""YouTube-VIS / OVIS video instance segmentation AP, as the official YouTube-VIS API (``ytvoseval.py``) computes it.

The metric is COCO's mask AP with one change: a detection and a ground-truth object are whole tracks, and their IoU
is spatio-temporal, ``sum_t |D_t & G_t| / sum_t |D_t | G_t|`` over the frames of the video (a frame where one side
has no mask adds that side's area to the union only). Everything after the IoU (greedy matching at IoU
.50:.05:.95, 101-point interpolated precision, maxDets 1/10/100, area ranges, crowd handling, averaging over
categories that have ground truth) is pycocotools' ``COCOeval``, reused here unchanged: ``ytvoseval.py`` is a copy
of it with ``image`` renamed to ``video``. Area ranges use the mean mask area over the frames where an object has
a non-empty mask, with the YouTube-VIS bounds (small < 128², medium 128²..256², large > 256²).

IoUs are computed per video with one pycocotools ``iou`` call per frame over all its detections x objects; the
per-frame intersections are recovered from the IoU and the two areas and summed (exact: they are integers).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..masks import polygons_to_rle, to_compressed
from .rle import rle_string_totals

__all__ = ["evaluate_ytvis", "format_table", "EvaluationInputError", "STAT_KEYS", "AREA_RANGES", "MAX_DETS"]

PathOrData = Union[str, Path, Mapping[str, Any], Sequence[Any]]

# as ytvoseval.Params.setDetParams
AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 128.0 ** 2), "medium": (128.0 ** 2, 256.0 ** 2),
               "large": (256.0 ** 2, 1e5 ** 2)}
MAX_DETS = (1, 10, 100)

# (key, is AP, IoU threshold or None for .50:.95, area range, maxDets): the 12 lines of the official summary
_SUMMARY = [("AP", True, None, "all", 100), ("AP50", True, .5, "all", 100), ("AP75", True, .75, "all", 100),
            ("APs", True, None, "small", 100), ("APm", True, None, "medium", 100), ("APl", True, None, "large", 100),
            ("AR1", False, None, "all", 1), ("AR10", False, None, "all", 10), ("AR100", False, None, "all", 100),
            ("ARs", False, None, "small", 100), ("ARm", False, None, "medium", 100),
            ("ARl", False, None, "large", 100)]
STAT_KEYS = tuple(s[0] for s in _SUMMARY)


class EvaluationInputError(ValueError):
    """The ground truth or the results are malformed; the message names the offending entry."""


# ---- input parsing ---------------------------------------------------------------------------------------------
@dataclass
class _Video:
    id: Any
    length: int
    height: int
    width: int

    size: List[int] = field(init=False)  # [height, width], as RLEs give it

    def __post_init__(self) -> None:
        self.size = [self.height, self.width]


@dataclass
class _Track:
    """One ground-truth object or one detection: a mask (RLE, counts as bytes) or None per frame."""

    video_id: Any
    category_id: Any
    rles: List[Optional[dict]]
    score: float = 1.0
    iscrowd: int = 0
    file_areas: Optional[Sequence[Any]] = None   # ground truth: the annotation's 'areas' (used for area ranges)
    areas: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # mask area per frame

    @property
    def avg_area(self) -> float:
        # ytvoseval: mean of the truthy entries of 'areas' (None and 0 left out), 0 when there are none
        src = self.file_areas if self.file_areas is not None else self.areas.tolist()
        vals = [a for a in src if a]
        return float(np.array(vals).mean()) if vals else 0.0


def _load_json(obj: PathOrData, what: str) -> Any:
    if isinstance(obj, (str, Path)):
        path = Path(obj).expanduser()
        if path.is_dir() and (path / "results.json").is_file():
            path = path / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{what}: {path}: no such file")
        try:
            with open(path) as f:
                return json.load(f)
        except json.JSONDecodeError as e:
            raise EvaluationInputError(f"{what}: {path} is not valid JSON ({e})") from None
    return obj


def _as_int(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise EvaluationInputError(f"{where}: {name} must be a non-negative integer, got {value!r}")
    return int(value)


class _RLEChecker:
    """Converts segmentations to compressed RLEs; the compressed strings are checked together in :meth:`check`."""

    def __init__(self) -> None:
        self.pending: List[bytes] = []
        self.origin: List[Tuple[int, str, int]] = []  # (pixels expected, entry, frame) of each pending string

    def convert(self, seg: Any, video: _Video, where: str, t: int) -> Optional[dict]:
        if not seg:
            return None  # ytvoseval skips falsy frames (None, {}, []): the object is absent there
        if type(seg) is dict:
            counts, size = seg.get("counts"), seg.get("size")
            if type(counts) is str and size == video.size:  # the common case, kept lean: ~1e6 masks per file
                try:
                    counts = counts.encode("ascii")
                except UnicodeEncodeError:
                    raise EvaluationInputError(f"{where}, frame {t}: malformed RLE: counts string is not "
                                               "ASCII") from None
                self.pending.append(counts)
                self.origin.append((video.height * video.width, where, t))
                return {"size": video.size, "counts": counts}
        return self._convert_other(seg, video, f"{where}, frame {t}", where, t)

    def _convert_other(self, seg: Any, video: _Video, label: str, where: str, t: int) -> Optional[dict]:
        h, w = video.height, video.width
        if isinstance(seg, Mapping):
            size, counts = seg.get("size"), seg.get("counts")
            if size is None or counts is None:
                raise EvaluationInputError(f"{label}: not an RLE (a dict needs 'size' and 'counts'), got keys "
                                           f"{sorted(seg)}")
            if not isinstance(size, (list, tuple)) or list(size) != [h, w]:
                raise EvaluationInputError(f"{label}: RLE size {size!r} but video {video.id} is {h}x{w} "
                                           "(size is [height, width])")
            if isinstance(counts, str):
                return self.convert({"size": video.size, "counts": counts}, video, where, t)
            if isinstance(counts, bytes):
                self.pending.append(counts)
                self.origin.append((h * w, where, t))
                return {"size": video.size, "counts": counts}
            if isinstance(counts, list):  # uncompressed RLE
                if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0 for c in counts):
                    raise EvaluationInputError(f"{label}: malformed RLE: uncompressed counts must be non-negative "
                                               "integers")
                if sum(counts) != h * w:
                    raise EvaluationInputError(f"{label}: malformed RLE: counts cover {sum(counts)} pixels, "
                                               f"expected {h}x{w}={h * w}")
                return to_compressed({"size": [h, w], "counts": [int(c) for c in counts]})
            raise EvaluationInputError(f"{label}: malformed RLE: counts is {type(counts).__name__}, expected a "
                                       "string (compressed) or a list of integers")
        if isinstance(seg, list):  # polygons (annotation files may use them)
            polys = seg if isinstance(seg[0], list) else [seg]
            if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                       and all(isinstance(c, (int, float)) for c in p) for p in polys):
                raise EvaluationInputError(f"{label}: malformed polygon (lists of x, y coordinates, >= 3 points)")
            return polygons_to_rle(polys, h, w)
        raise EvaluationInputError(f"{label}: segmentation is {type(seg).__name__}; expected an RLE dict, a "
                                   "polygon list or null")

    def check(self) -> None:
        if not self.pending:
            return
        totals = rle_string_totals(self.pending)
        expected = np.fromiter((o[0] for o in self.origin), np.int64, len(self.origin))
        wrong = np.flatnonzero(totals != expected)
        if wrong.size:
            i = int(wrong[0])
            n, where, t = self.origin[i]
            detail = (f"counts cover {totals[i]} pixels, expected {n}" if totals[i] >= 0
                      else "counts string is not a valid compressed RLE")
            raise EvaluationInputError(f"{where}, frame {t}: malformed RLE ({detail})")
        self.pending, self.origin = [], []


def _parse_segmentations(entry: Mapping[str, Any], video: _Video, where: str, checker: _RLEChecker
                         ) -> List[Optional[dict]]:
    segs = entry.get("segmentations")
    if not isinstance(segs, (list, tuple)):
        raise EvaluationInputError(f"{where}: 'segmentations' must be a list with one mask (or null) per frame, "
                                   f"got {type(segs).__name__}")
    if len(segs) != video.length:
        raise EvaluationInputError(f"{where}: 'segmentations' has {len(segs)} frames but video {video.id} has "
                                   f"{video.length}")
    convert = checker.convert
    return [convert(s, video, where, t) for t, s in enumerate(segs)]


def _parse_gt(data: Any) -> Tuple[Dict[Any, _Video], Dict[Any, str], List[_Track]]:
    if not isinstance(data, Mapping) or not {"videos", "annotations", "categories"} <= set(data):
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise EvaluationInputError(f"ground truth: expected a YouTube-VIS annotation file (a JSON object with "
                                   f"'videos', 'annotations' and 'categories'), got {keys}")
    cats: Dict[Any, str] = {}
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, Mapping) or "id" not in c:
            raise EvaluationInputError(f"ground truth categories[{i}]: needs an 'id'")
        cats[c["id"]] = str(c.get("name", c["id"]))
    anns = data["annotations"] or []
    videos: Dict[Any, _Video] = {}
    for i, v in enumerate(data["videos"]):
        where = f"ground truth videos[{i}]"
        if not isinstance(v, Mapping) or not {"id", "height", "width"} <= set(v):
            raise EvaluationInputError(f"{where}: needs 'id', 'height' and 'width'")
        if "length" in v:
            length = _as_int(v["length"], where, "length")
        elif "file_names" in v:
            length = len(v["file_names"])
        else:  # no frame count given: take it from the video's annotations
            lengths = {len(a.get("segmentations") or []) for a in anns
                       if isinstance(a, Mapping) and a.get("video_id") == v["id"]}
            if len(lengths) > 1:
                raise EvaluationInputError(f"{where} (id {v['id']}): no 'length' and its annotations have "
                                           f"{sorted(lengths)} frames")
            length = lengths.pop() if lengths else 0
        videos[v["id"]] = _Video(v["id"], length, _as_int(v["height"], where, "height"),
                                 _as_int(v["width"], where, "width"))
    checker = _RLEChecker()
    tracks = []
    for i, a in enumerate(anns):
        where = f"ground truth annotations[{i}]" + (f" (id {a['id']})" if isinstance(a, Mapping) and "id" in a
                                                     else "")
        if not isinstance(a, Mapping):
            raise EvaluationInputError(f"{where}: expected an object, got {type(a).__name__}")
        video = videos.get(a.get("video_id")) if isinstance(a.get("video_id"), Hashable) else None
        if video is None:
            raise EvaluationInputError(f"{where}: video_id {a.get('video_id')!r} is not in 'videos'")
        if not isinstance(a.get("category_id"), Hashable) or a.get("category_id") not in cats:
            raise EvaluationInputError(f"{where}: category_id {a.get('category_id')!r} is not in 'categories'")
        rles = _parse_segmentations(a, video, where, checker)
        file_areas = a.get("areas")
        if file_areas is not None and (not isinstance(file_areas, list) or len(file_areas) != video.length):
            raise EvaluationInputError(f"{where}: 'areas' must be a list with one value per frame")
        tracks.append(_Track(video.id, a["category_id"], rles, iscrowd=int(bool(a.get("iscrowd", 0))),
                             file_areas=file_areas))
    checker.check()
    return videos, cats, tracks


def _result_entries(data: Any, what: str) -> List[Tuple[str, Mapping[str, Any], Optional[Mapping[str, Any]]]]:
    """(label, entry, per-video header) for every result entry of the accepted layouts."""
    if isinstance(data, Mapping):
        if "instances" not in data:
            raise EvaluationInputError(f"{what}: a JSON object must be a saved result with 'instances' "
                                       f"(VideoResult.save), got keys {sorted(data)}")
        return [(f"{what} instances[{i}]", e, data) for i, e in enumerate(data["instances"])]
    if not isinstance(data, (list, tuple)):
        raise EvaluationInputError(f"{what}: expected a list of YouTube-VIS results or a saved result, got "
                                   f"{type(data).__name__}")
    if data and all(isinstance(d, (str, Path)) or (isinstance(d, Mapping) and "instances" in d) for d in data):
        out = []  # several per-video results
        for j, d in enumerate(data):
            label = f"results file {d}" if isinstance(d, (str, Path)) else f"{what}[{j}]"
            out += _result_entries(_load_json(d, label), label)
        return out
    return [(f"{what}[{i}]", e, None) for i, e in enumerate(data)]


def _parse_results(data: Any, videos: Mapping[Any, _Video], cats: Mapping[Any, str]) -> List[_Track]:
    tracks, checker = [], _RLEChecker()
    extra: Dict[Any, int] = Counter()
    for where, e, header in _result_entries(data, "results"):
        if not isinstance(e, Mapping):
            hint = " (pass VideoResult.to_ytvis(video_id) or the saved results.json)" if hasattr(e, "to_ytvis") else ""
            raise EvaluationInputError(f"{where}: expected an object, got {type(e).__name__}{hint}")
        missing = [k for k in ("video_id", "category_id", "score", "segmentations") if k not in e]
        if missing:
            raise EvaluationInputError(f"{where}: missing {', '.join(missing)}")
        video = videos.get(e["video_id"]) if isinstance(e["video_id"], Hashable) else None
        if video is None:
            raise EvaluationInputError(f"{where}: video_id {e['video_id']!r} is not in the ground truth")
        if header is not None and header.get("height") is not None and (
                (header.get("height"), header.get("width")) != (video.height, video.width)):
            raise EvaluationInputError(f"{where}: the result is {header.get('height')}x{header.get('width')} but "
                                       f"video {video.id} is {video.height}x{video.width}")
        if not isinstance(e["category_id"], Hashable):
            raise EvaluationInputError(f"{where}: category_id {e['category_id']!r} is not a category id "
                                       f"(ground truth: {_describe_ids(cats)})")
        score = e["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float, np.number)) or not math.isfinite(score):
            raise EvaluationInputError(f"{where}: score must be a finite number, got {score!r}")
        segs = _parse_segmentations(e, video, where, checker)
        if e["category_id"] not in cats:
            # the official API evaluates the ground truth's categories only (params.catIds): others are ignored
            extra[e["category_id"]] += 1
            continue
        tracks.append(_Track(video.id, e["category_id"], segs, score=float(score)))
        if len(checker.pending) > 100_000:  # check in batches: bounded memory for the numpy decode
            checker.check()
    checker.check()
    if extra:
        warnings.warn(f"ignored {sum(extra.values())} result(s) whose category_id is not a ground-truth category "
                      f"({_describe_ids(extra)}; ground truth: {_describe_ids(cats)}), as the official YouTube-VIS "
                      "API does", stacklevel=3)
    return tracks


def _describe_ids(ids: Iterable[Any]) -> str:
    ids = sorted(ids, key=lambda x: (str(type(x)), x))
    if len(ids) > 6:
        return f"ids {ids[0]}..{ids[-1]}, {len(ids)} in all"
    return "ids " + ", ".join(map(str, ids))


# ---- spatio-temporal IoU ---------------------------------------------------------------------------------------
def _frame_areas(tracks: Sequence[_Track], length: int) -> None:
    from pycocotools import mask as mask_util

    for tr in tracks:
        areas = np.zeros(length, np.int64)
        present = [t for t, r in enumerate(tr.rles) if r is not None]
        if present:
            areas[present] = mask_util.area([tr.rles[t] for t in present])
        tr.areas = areas


def _video_ious(dts: Sequence[_Track], gts: Sequence[_Track], length: int) -> np.ndarray:
    """(D, G) spatio-temporal IoU: intersections and unions summed over the frames."""
    from pycocotools import mask as mask_util

    inter = np.zeros((len(dts), len(gts)), np.int64)
    if not dts or not gts:
        return inter.astype(np.float64)
    for t in range(length):
        di = [i for i, d in enumerate(dts) if d.rles[t] is not None]
        if not di:
            continue
        gi = [j for j, g in enumerate(gts) if g.rles[t] is not None]
        if not gi:
            continue
        iou = np.asarray(mask_util.iou([dts[i].rles[t] for i in di], [gts[j].rles[t] for j in gi],
                                       [0] * len(gi)), np.float64).reshape(len(di), len(gi))
        # iou = I / (a + b - I)  =>  I = iou (a + b) / (1 + iou); I is an integer, so rounding makes it exact
        a = np.array([dts[i].areas[t] for i in di], np.float64)[:, None]
        b = np.array([gts[j].areas[t] for j in gi], np.float64)[None, :]
        inter[np.ix_(di, gi)] += np.rint(iou * (a + b) / (1.0 + iou)).astype(np.int64)
    union = (np.array([d.areas.sum() for d in dts])[:, None] + np.array([g.areas.sum() for g in gts])[None, :]
             - inter)
    # ytvoseval sums intersections and unions as floats and gives 0 for an empty union
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


# ---- COCOeval, video flavoured ---------------------------------------------------------------------------------
def _video_cocoeval(gts: Dict[Tuple[Any, Any], List[dict]], dts: Dict[Tuple[Any, Any], List[dict]],
                    ious: Dict[Tuple[Any, Any], np.ndarray], video_ids: Sequence[Any], cat_ids: Sequence[Any]):
    from pycocotools.cocoeval import COCOeval

    class VideoCOCOeval(COCOeval):
        """COCOeval with videos as its images: prepared tracks and precomputed spatio-temporal IoUs."""

        def _prepare(self) -> None:
            self._gts, self._dts = defaultdict(list, gts), defaultdict(list, dts)
            self.evalImgs, self.eval = defaultdict(list), {}

        def computeIoU(self, imgId: Any, catId: Any):  # noqa: N802 - pycocotools' name
            return ious.get((imgId, catId), [])

    ev = VideoCOCOeval(iouType="segm")
    p = ev.params
    p.imgIds, p.catIds = list(video_ids), list(cat_ids)
    p.areaRng = [list(r) for r in AREA_RANGES.values()]
    p.areaRngLbl = list(AREA_RANGES)
    p.maxDets = list(MAX_DETS)
    return ev


def _summary_value(ev: Any, is_ap: bool, iou_thr: Optional[float], area: str, max_det: int,
                   cat_index: Optional[int] = None) -> float:
    """One summary number on the official 0..1 scale, -1 when undefined (as COCOeval.summarize)."""
    p = ev.params
    a = [i for i, lbl in enumerate(p.areaRngLbl) if lbl == area]
    m = [i for i, d in enumerate(p.maxDets) if d == max_det]
    s = ev.eval["precision"] if is_ap else ev.eval["recall"]
    if iou_thr is not None:
        s = s[np.where(iou_thr == p.iouThrs)[0]]
    s = s[:, :, :, a, m] if is_ap else s[:, :, a, m]
    if cat_index is not None:
        s = s[:, :, cat_index] if is_ap else s[:, cat_index]
    s = s[s > -1]
    return float(np.mean(s)) if s.size else -1.0


def evaluate_ytvis(gt: PathOrData, results: PathOrData, *, per_category: bool = False) -> Dict[str, Any]:
    """YouTube-VIS / OVIS video AP of ``results`` against the ground truth ``gt``, as the official API computes it.

    Args:
        gt: a YouTube-VIS annotation file (path) or its loaded dict (``videos``, ``annotations``, ``categories``;
            masks as RLE, compressed or not, or polygons; ``areas`` per frame is used for the area ranges when
            present, as the official API does, else the mask areas).
        results: the results as a path or as Python objects: the official submission list (``video_id``,
            ``category_id``, ``score``, ``segmentations``: one compressed RLE or ``null`` per frame), a
            ``results.json`` written by :meth:`dvis_sdk.VideoResult.save` (or its folder, or its loaded dict),
            or a list of such per-video files / dicts.
        per_category: also return ``per_category``: ``{category name: AP}`` over the categories of ``gt``.

    Results whose ``category_id`` is not a category of ``gt`` are ignored, as the official API does (it evaluates
    the ground truth's categories only), with one warning saying how many.

    Returns:
        ``{'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs', 'ARm', 'ARl'}`` on a 0-100
        scale (the official API's numbers x 100). A number with nothing to average (e.g. ``APl`` when no object
        is large; the official API prints -1) is NaN.

    Raises:
        EvaluationInputError (a ValueError): malformed input, naming the entry (a result for a video not in
        ``gt``, a segmentation list with the wrong number of frames, a malformed RLE, ...).
        FileNotFoundError: a path that does not exist.
    """
    videos, cats, gt_tracks = _parse_gt(_load_json(gt, "ground truth"))
    dt_tracks = _parse_results(_load_json(results, "results"), videos, cats)

    by_video: Dict[Any, Tuple[List[_Track], List[_Track]]] = defaultdict(lambda: ([], []))
    for tr in gt_tracks:
        by_video[tr.video_id][1].append(tr)
    for tr in dt_tracks:
        by_video[tr.video_id][0].append(tr)

    gts: Dict[Tuple[Any, Any], List[dict]] = defaultdict(list)
    dts: Dict[Tuple[Any, Any], List[dict]] = defaultdict(list)
    ious: Dict[Tuple[Any, Any], np.ndarray] = {}
    next_id = 1  # our own ids (1-based: COCOeval takes a match id of 0 for "unmatched")
    for vid, (vdts, vgts) in by_video.items():
        length = videos[vid].length
        # per category, highest score first (stable, as ytvoseval's mergesort), at most maxDets[-1] kept
        per_cat: Dict[Any, List[_Track]] = defaultdict(list)
        for d in vdts:
            per_cat[d.category_id].append(d)
        kept = []
        for cid, lst in per_cat.items():
            order = np.argsort([-d.score for d in lst], kind="mergesort")[:MAX_DETS[-1]]
            per_cat[cid] = [lst[i] for i in order]
            kept += per_cat[cid]
        _frame_areas(kept + vgts, length)
        all_ious = _video_ious(kept, vgts, length)
        drow = {id(d): i for i, d in enumerate(kept)}
        gcol = {id(g): j for j, g in enumerate(vgts)}
        gt_cat: Dict[Any, List[_Track]] = defaultdict(list)
        for g in vgts:
            gt_cat[g.category_id].append(g)
        for cid in set(per_cat) | set(gt_cat):
            cd, cg = per_cat.get(cid, []), gt_cat.get(cid, [])
            ious[vid, cid] = all_ious[np.ix_([drow[id(d)] for d in cd], [gcol[id(g)] for g in cg])]
            for g in cg:
                gts[vid, cid].append({"id": next_id, "area": g.avg_area, "iscrowd": g.iscrowd,
                                      "ignore": g.iscrowd})
                next_id += 1
            for d in cd:
                dts[vid, cid].append({"id": next_id, "area": d.avg_area, "score": d.score, "iscrowd": 0})
                next_id += 1

    ev = _video_cocoeval(gts, dts, ious, sorted(videos, key=_sort_key), sorted(cats, key=_sort_key))
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress
        ev.evaluate()
        ev.accumulate()

    stats: Dict[str, Any] = {}
    for key, is_ap, thr, area, md in _SUMMARY:
        v = _summary_value(ev, is_ap, thr, area, md)
        stats[key] = v * 100.0 if v >= 0 else float("nan")
    if per_category:
        names = [cats[c] for c in ev.params.catIds]
        stats["per_category"] = {}
        for k, cid in enumerate(ev.params.catIds):
            v = _summary_value(ev, True, None, "all", 100, cat_index=k)
            name = cats[cid] if names.count(cats[cid]) == 1 else f"{cats[cid]} (id {cid})"
            stats["per_category"][name] = v * 100.0 if v >= 0 else float("nan")
    return stats


def _sort_key(x: Any) -> Tuple[str, Any]:
    return (type(x).__name__, x)


def format_table(stats: Mapping[str, float]) -> str:
    """The official 12-line summary (values on the 0..1 scale, -1.000 where undefined) for ``stats`` as returned
    by :func:`evaluate_ytvis`."""
    lines = []
    for key, is_ap, thr, area, md in _SUMMARY:
        v = stats[key]
        v = -1.0 if v is None or (isinstance(v, float) and math.isnan(v)) else v / 100.0
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        iou = "0.50:0.95" if thr is None else f"{thr:0.2f}"
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={md:>3d} ] = {v:0.3f}")
    return "\n".join(lines)
