"""Video panoptic segmentation metrics on VIPSeg: :func:`evaluate_vps` = the official ``eval_vpq_vspw.py`` (VPQ)
and ``eval_stq_vspw.py`` (STQ) numbers, from one pass over the frames.

Every frame pair is read once and reduced to a (GT id x predicted id) pixel-count table
(:mod:`.panoptic_frame`); VPQ's windows (:mod:`.vpq`) and STQ's sums (:mod:`.stq`) are computed from those
tables. The official scripts decode each frame 21 times for VPQ (once per window it belongs to, for each of the
five window lengths) and once more for STQ.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Optional, Union

from . import vpq
from .panoptic_frame import frame_table, new_lut
from .segmentation_io import PathOrData, default_pred_dir, load_json, prefetch, read_panoptic_png, vipseg_videos
from .stq import STQAccumulator, instance_numbers
from .ytvis import EvaluationInputError

__all__ = ["evaluate_vps", "format_vps"]


def evaluate_vps(gt_json: PathOrData, gt_dir: Union[str, Path], pred_json: PathOrData,
                 pred_dir: Optional[Union[str, Path]] = None, *, num_classes: int = 124, workers: int = 1
                 ) -> Dict[str, Any]:
    """VPQ and STQ of VIPSeg-format predictions, equal to the official scripts' printed numbers.

    Args:
        gt_json: ``panoptic_gt_VIPSeg_val.json`` (path or loaded dict): ``videos`` (``video_id``, ``images`` with
            ``file_name``), ``annotations`` (per video, per frame ``segments_info`` with ``id``, ``category_id``,
            ``iscrowd``, ``area``), ``categories`` (``id``, ``isthing``).
        gt_dir: the GT panoptic PNGs, ``<gt_dir>/<video_id>/<file_name>`` (``panomasksRGB``).
        pred_json: the predictions' ``pred.json`` (path, its folder, or loaded dict): ``{"annotations": [{"video_id",
            "annotations": [{"segments_info": [...]}, ...]}]}``, one entry per GT frame, in GT order.
        pred_dir: the predicted PNGs, ``<pred_dir>/<video_id>/<GT file_name>`` (RGB ids, as the GT), or the
            submission folder holding them in ``pan_pred/``. Default: next to ``pred.json`` (its ``pan_pred/``
            when present, the official submission layout).
        num_classes: STQ's class count (the official script: 124).
        workers: threads decoding PNGs ahead (1: none).

    Returns:
        ``VPQ``, ``VPQ_thing``, ``VPQ_stuff``: 0-100, the mean over the window lengths 1, 2, 4, 6, 8 (what the
        official script writes to ``vpq-final.txt``, unrounded); ``VPQ@k``, ``VPQ_thing@k``, ``VPQ_stuff@k`` for
        ``k`` = 0, 5, 15, 25, 35 (the numbers it prints per window); ``windows``: per ``k`` also SQ / RQ / N;
        ``STQ``, ``AQ``, ``SQ``: 0-1 as printed (``SQ`` is the printed ``IoU``); ``per_video``: STQ / AQ / SQ of
        each video. A value with nothing to average is NaN (the official script divides by zero there).
    """
    gt = load_json(gt_json, "ground truth")
    pred = load_json(pred_json, "predictions")
    pred_dir = default_pred_dir(pred_json, pred_dir)
    if not Path(gt_dir).is_dir():
        raise EvaluationInputError(f"{gt_dir} is not a folder (the GT panoptic PNGs, <gt_dir>/<video>/<file>)")
    videos = vipseg_videos(gt, pred, gt_dir, pred_dir)
    if (videos and videos[0].pred_paths and not videos[0].pred_paths[0].parent.is_dir()
            and (Path(pred_dir) / "pan_pred").is_dir()):
        videos = vipseg_videos(gt, pred, gt_dir, Path(pred_dir) / "pan_pred")   # given the submission folder
    cats = vpq.CategoryIndex(gt["categories"])
    stats = vpq.new_stats(cats)
    stq = STQAccumulator(num_classes, [int(c["id"]) for c in gt["categories"] if c["isthing"]])
    lut = new_lut()

    def read(paths):
        return read_panoptic_png(paths[0]), read_panoptic_png(paths[1])

    for video in videos:
        stq.start(video.video_id, instance_numbers(video.gt_all_segments), instance_numbers(video.pred_all_segments))
        tables = []
        pairs = list(zip(video.gt_paths, video.pred_paths))
        for i, (g, p) in enumerate(prefetch(read, pairs, workers)):
            where = f"video {video.video_id!r}, frame {i} ({video.gt_paths[i].name})"
            table = frame_table(g, p, video.gt_segments[i], video.pred_segments[i], lut, where)
            stq.add(table, where)
            tables.append(table)
        stq.finish()
        vpq.add_video(tables, cats, stats, f"video {video.video_id!r}")
    out = vpq.summarize(stats, cats)
    out.update(stq.result())
    return out


def format_vps(stats: Dict[str, Any]) -> str:
    """A short table of :func:`evaluate_vps`'s numbers (VPQ per window, then STQ)."""
    def f(x: float, nd: int) -> str:
        return "-" if isinstance(x, float) and math.isnan(x) else f"{x:.{nd}f}"

    lines = [f"{'window k':>9} | {'VPQ':>6} {'thing':>6} {'stuff':>6}"]
    for k, row in stats["windows"].items():
        lines.append(f"{k:>9} | {f(row['VPQ'], 2):>6} {f(row['VPQ_thing'], 2):>6} {f(row['VPQ_stuff'], 2):>6}")
    lines.append(f"{'mean':>9} | {f(stats['VPQ'], 2):>6} {f(stats['VPQ_thing'], 2):>6} {f(stats['VPQ_stuff'], 2):>6}")
    lines.append(f"STQ {f(stats['STQ'], 4)}  AQ {f(stats['AQ'], 4)}  SQ {f(stats['SQ'], 4)}")
    return "\n".join(lines)
