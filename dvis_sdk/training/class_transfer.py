"""Where a new class's head row starts: from the starting model's own class that it already gives those objects.

Fine-tuning for class names the starting model does not know gives those classes fresh class-head rows, which a
short run must learn from nothing. Often the model already recognises the objects under another name (a COCO model
and your "vehicle" / its "car"; synthetic shapes renamed). :func:`vote_classes` runs the unchanged starting model on
a few training clips and counts, for every labelled object it segments (best query, mask IoU >= 0.5), the class it
predicts; :func:`class_init_from_votes` lets a new class start from the old class most of its objects get (at
least ``min_share`` of at least ``min_votes`` objects). Only the starting rows change: every class is still
trained, and the choice is reported in one line.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .utils import pad_clips, pad_masks

__all__ = ["vote_classes", "class_init_from_votes"]


@torch.no_grad()
def vote_classes(model: Any, dataset: Any, num_samples: int = 24, seed: int = 0,
                 iou_threshold: float = 0.5) -> np.ndarray:
    """``votes[new label, old class]``: how many labelled objects of ``dataset`` (combined labels) the unchanged
    starting ``model`` segments (IoU >= ``iou_threshold``) and calls each of its classes, over the first frames of
    ``num_samples`` clips drawn with ``seed``. The model is only read (eval mode, no gradients)."""
    cfg = model.cfg
    old_k = cfg.segmenter.num_classes
    votes = np.zeros((dataset.num_classes, old_k), np.int64)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for i in rng.permutation(len(dataset))[:num_samples]:
            clip = dataset.sample(int(i), rng)
            if not len(clip.labels):
                continue
            images = pad_clips([clip.frames[:1]], cfg.input.pixel_mean, cfg.input.pixel_std,
                               cfg.input.size_divisibility).to(device)
            out = model.segment(images)
            probs = out["pred_logits"][0, 0].float().softmax(-1)[:, :old_k]  # (Q, K): no-object dropped
            pred = out["pred_masks"][0, :, 0].float()  # (Q, h, w) logits at 1/4 of the padded size
            gt = pad_masks(clip.masks[:, 0].float(), tuple(images.shape[-2:]))
            gt = F.interpolate(gt[None], size=pred.shape[-2:], mode="bilinear", align_corners=False)[0] > 0.5
            p = (pred > 0).flatten(1).float().cpu()
            g = gt.flatten(1).float().cpu()
            inter = g @ p.T
            iou = inter / (g.sum(1, keepdim=True) + p.sum(1)[None] - inter).clamp(min=1)
            best = iou.argmax(1)
            for n, q in enumerate(best.tolist()):
                if iou[n, q] >= iou_threshold:
                    votes[int(clip.labels[n]), int(probs[q].argmax())] += 1
    finally:
        model.train(was_training)
    return votes


def class_init_from_votes(votes: np.ndarray, new_names: Sequence[str], old_names: Sequence[str],
                          min_share: float = 0.5, min_votes: int = 3) -> Dict[str, str]:
    """``{new class: old class}`` for the new classes (names the start does not have) whose objects the starting
    model mostly calls one of its classes: at least ``min_share`` of at least ``min_votes`` segmented objects."""
    out: Dict[str, str] = {}
    for c, name in enumerate(new_names):
        if name in old_names:
            continue
        total = int(votes[c].sum())
        top = int(votes[c].argmax()) if total else -1
        if total >= min_votes and votes[c, top] >= min_share * total:
            out[name] = str(old_names[top])
    return out
