"""Agreement of two video results (a fast / half-precision run against the fp32 reference run)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Agreement", "compare_results"]

# --------------------------------------------------------------------------------------------------------------
@dataclass
class Agreement:
    """How far a result is from a reference result of the same video (instances keyed by (query, label)).

    ``mean_iou``: mean over the reference's instances of the mask IoU with the same (query, label) instance
    (0 where it is missing); ``min_iou``: the worst of them; ``matched``: how many reference instances are
    present; ``same_top``: whether the ``top`` best-scoring instances are the same set; ``max_score_diff``:
    largest score difference over matched instances.
    """

    mean_iou: float
    min_iou: float
    matched: int
    total: int
    same_top: bool
    max_score_diff: float


def compare_results(reference: Any, other: Any, top: int = 5) -> Agreement:
    """Compare two ``VISOutput``-like results (``scores``, ``labels``, ``ids``, ``masks`` (K, T, H, W))."""
    def keys(r: Any) -> list:
        return [(int(i), int(lab)) for i, lab in zip(r.ids, r.labels)]

    def arr(m: Any) -> "np.ndarray":
        return m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)

    ref_keys, oth_keys = keys(reference), keys(other)
    oth_index = {k: i for i, k in enumerate(oth_keys)}
    ious, diffs = [], []
    for i, k in enumerate(ref_keys):
        j = oth_index.get(k)
        if j is None:
            ious.append(0.0)
            continue
        a, b = arr(reference.masks[i]).astype(bool), arr(other.masks[j]).astype(bool)
        union = np.logical_or(a, b).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
        diffs.append(abs(float(reference.scores[i]) - float(other.scores[j])))

    def top_set(r: Any, ks: list) -> set:
        order = np.argsort(-arr(r.scores).astype(np.float64), kind="stable")[:top]
        return {ks[i] for i in order}

    return Agreement(mean_iou=float(np.mean(ious)) if ious else 1.0, min_iou=float(min(ious)) if ious else 1.0,
                     matched=len(diffs), total=len(ref_keys),
                     same_top=top_set(reference, ref_keys) == top_set(other, oth_keys),
                     max_score_diff=max(diffs) if diffs else 0.0)
