"""Video semantic segmentation metrics on VSPW: :func:`evaluate_vss` = the official ``eval_miou_vspw.py`` (mIoU) and
``eval_vc_vspw.py`` (video consistency VC8 / VC16) numbers, from one pass over the frames.

mIoU (``Evaluator(124)``) quirks kept:

- GT 0 and 255 are ignored and the GT is shifted by -1 (PNG value ``c`` is class ``c - 1``, values above
  ``num_classes`` are ignored too); predictions are read as stored (class index ``c - 1``: a prediction PNG holds
  0-based classes) and are *not* checked: the cell is ``num_classes * gt + pred``, so a predicted value
  ``>= num_classes`` lands in a later GT row (e.g. 255 on GT class g counts as class 7 on GT row g + 2). Where
  that runs past the matrix the official script crashes; here it is an error naming the frame;
- mIoU = mean IoU over the classes present in the GT (row sum > 0); predicted-only classes are left out; also
  returned: pixel accuracy ``Acc``, ``Acc_class`` (nan-mean of per-class recall), ``fwIoU`` (as printed);
- every file in ``data/<video>/mask/`` is a frame, and the prediction is ``<pred_dir>/<video>/<same name>``.

VC quirks kept:

- raw PNG values are compared (void 0 and 255 included, no shift): for a clip of ``c`` frames starting at ``i``,
  the pixels whose GT stays the same over the clip and, of those, the ones whose prediction stays the same too:
  ``acc = |both| / |GT constant|`` (NaN when no GT pixel is constant); frames are the sorted file names;
- only videos with more than ``c`` frames count, and the clips start at ``0 .. T - c - 1`` (the last possible
  clip, ending on the last frame, is left out);
- VC = nan-mean of all clips' acc over all videos. The official loop never clears its list between ``c`` = 8 and
  16, so its printed VC16 is the nan-mean over the 8-frame *and* 16-frame clips together: ``VC16`` here is that
  printed number, ``VC16_only`` the mean over 16-frame clips alone. All on 0..1, as printed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np

from .segmentation_io import frame_pairs, prefetch, read_label_png, vspw_videos
from .ytvis import EvaluationInputError

__all__ = ["evaluate_vss", "format_vss", "confusion_update", "ClipConsistency", "miou_from_confusion"]

CLIP_LENGTHS = (8, 16)


def confusion_update(conf: np.ndarray, gt: np.ndarray, pred: np.ndarray, where: str) -> None:
    """Add one frame to the flat ``num_classes**2`` count vector ``conf`` (``Evaluator._generate_matrix``)."""
    n = int(round(math.sqrt(conf.size)))
    if gt.shape != pred.shape:
        raise EvaluationInputError(f"{where}: prediction is {pred.shape[1]}x{pred.shape[0]}, ground truth "
                                   f"{gt.shape[1]}x{gt.shape[0]}")
    g = gt.astype(np.int64)
    valid = (g >= 1) & (g <= n)                # 0 -> 255, then -1: 0 and 255 (and > n) fall outside [0, n)
    flat = n * (g[valid] - 1) + pred[valid].astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= n * n):
        bad = pred[valid][(flat < 0) | (flat >= n * n)][:3].tolist()
        raise EvaluationInputError(f"{where}: predicted value(s) {bad} overflow the {n}-class confusion matrix "
                                   f"(predictions are 0-based class indices 0..{n - 1})")
    conf += np.bincount(flat, minlength=n * n)


def miou_from_confusion(conf: np.ndarray) -> Dict[str, float]:
    """mIoU, Acc, Acc_class, fwIoU from the (n, n) matrix (rows GT, columns prediction), as the Evaluator does."""
    cm = conf.astype(np.float64)
    diag, rows, cols = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = diag / (rows + cols - diag)
        present = rows > 0
        miou = np.nansum(iou * present) / present.sum()
        acc = diag.sum() / cm.sum()
        recall = diag / rows
        acc_class = float(np.nanmean(recall)) if (~np.isnan(recall)).any() else float("nan")
        freq = rows / cm.sum()
        fwiou = (freq[freq > 0] * iou[freq > 0]).sum()
    return {"mIoU": float(miou), "Acc": float(acc), "Acc_class": acc_class, "fwIoU": float(fwiou)}


class ClipConsistency:
    """Video consistency of one video, streamed frame by frame.

    "Constant over frames i..e" is tracked as the start of the current run of equal values at each pixel (for GT
    and prediction), so each clip costs one comparison instead of ``c - 1`` frame comparisons.
    """

    def __init__(self, num_frames: int, clip_lengths: Sequence[int] = CLIP_LENGTHS):
        self.T = num_frames
        self.clips = [c for c in clip_lengths]
        self.accs: Dict[int, List[float]] = {c: [] for c in self.clips}
        self._prev = None
        self._start_g = self._start_p = None
        self._t = 0

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        t = self._t
        if self._prev is None:
            self._start_g = np.zeros(gt.shape, np.int32)
            self._start_p = np.zeros(pred.shape, np.int32)
        else:
            pg, pp = self._prev
            if gt.shape != pg.shape or pred.shape != pp.shape or gt.shape != pred.shape:
                raise EvaluationInputError(f"frame {t}: frames of one video must share one size")
            self._start_g[gt != pg] = t
            self._start_p[pred != pp] = t
        self._prev = (gt, pred)
        for c in self.clips:
            i = t - c + 1                        # the clip that ends on this frame
            if self.T > c and 0 <= i < self.T - c:
                g_const = self._start_g <= i
                total = int(np.count_nonzero(g_const))
                both = int(np.count_nonzero(g_const & (self._start_p <= i)))
                self.accs[c].append(both / total if total else float("nan"))
        self._t += 1


def _nanmean(values: List[float]) -> float:
    a = np.asarray(values, np.float64)
    return float(np.nanmean(a)) if a.size and (~np.isnan(a)).any() else float("nan")


def evaluate_vss(gt_dir: Union[str, Path], pred_dir: Union[str, Path], num_classes: int = 124, *,
                 split: str = "val.txt", workers: int = 1) -> Dict[str, Any]:
    """mIoU and video consistency of VSPW-format predictions, equal to the official scripts' printed numbers.

    Args:
        gt_dir: the VSPW root: ``<gt_dir>/<split>`` lists the videos, ``<gt_dir>/data/<video>/mask/<frame>.png``
            are the GT label PNGs (0 void, 1..124 = class 0..123, 255 ignore).
        pred_dir: ``<pred_dir>/<video>/<frame>.png``, 0-based class indices, for every GT frame.
        num_classes: classes of the confusion matrix (the official script: 124).
        split: the video list file in ``gt_dir``.
        workers: threads decoding PNGs ahead (1: none).

    Returns:
        ``mIoU``, ``Acc``, ``Acc_class``, ``fwIoU`` (0..1), ``VC8``, ``VC16`` (0..1, as printed: ``VC16`` mixes the
        8- and 16-frame clips, see the module docstring), ``VC16_only``, ``per_video`` (VC8 / VC16 means of
        each video long enough, as the official script prints them), ``frames``.
    """
    videos = vspw_videos(gt_dir, split)
    conf = np.zeros(num_classes * num_classes, np.int64)
    accs: Dict[int, List[float]] = {c: [] for c in CLIP_LENGTHS}
    per_video: Dict[str, Dict[str, float]] = {}
    frames = 0

    def read(paths: Tuple[Path, Path]) -> Tuple[np.ndarray, np.ndarray]:
        return read_label_png(paths[0]), read_label_png(paths[1])

    for name, files in videos:
        vc = ClipConsistency(len(files))
        for i, (g, p) in enumerate(prefetch(read, frame_pairs(gt_dir, pred_dir, name, files), workers)):
            where = f"video {name!r}, frame {files[i]}"
            confusion_update(conf, g, p, where)
            vc.add(g, p)
            frames += 1
        row = {}
        for c in CLIP_LENGTHS:
            accs[c].extend(vc.accs[c])
            if vc.accs[c]:
                row[f"VC{c}"] = float(sum(vc.accs[c]) / len(vc.accs[c]))
        per_video[name] = row
    out = miou_from_confusion(conf.reshape(num_classes, num_classes))
    out["VC8"] = _nanmean(accs[8])
    out["VC16"] = _nanmean(accs[8] + accs[16])      # the official list is never cleared between 8 and 16
    out["VC16_only"] = _nanmean(accs[16])
    out["per_video"] = per_video
    out["frames"] = frames
    return out


def format_vss(stats: Dict[str, Any]) -> str:
    """One line per number of :func:`evaluate_vss` (0..1)."""
    keys = ("mIoU", "Acc", "Acc_class", "fwIoU", "VC8", "VC16", "VC16_only")
    return "\n".join(f"{k:<10} {'-' if math.isnan(stats[k]) else format(stats[k], '.4f')}" for k in keys)
