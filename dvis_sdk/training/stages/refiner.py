"""Refiner stage (official ``DVIS_Plus_offline``): the temporal refiner trained on a frozen segmenter and tracker.

The clip is one (T*h) x w image per object: the refiner's masks and the targets are flattened over time and
``num_points * T`` points are sampled on them, normalised by the number of objects, so the mask and dice losses do
not grow with the clip length. In the first half of training the matching is done once on the tracker's outputs
(time-averaged class logits, flattened masks), afterwards on each layer's own outputs. The contrastive loss on the
refiner's embeddings uses a per-class memory of embeddings of earlier clips
(:class:`~dvis_sdk.training.reid.ClassMemory`).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor

from ...models.dvis import OnlineDVIS
from ..config import TrainConfig
from ..criterion import SetCriterion
from ..datasets import Clip, VideoClipDataset
from ..loop import PathLike, Trainer, set_trainable
from ..reid import ClassMemory, loss_reid, refiner_items
from ..utils import pad_clips, pad_masks

__all__ = ["RefinerTrainer", "refiner_clip_losses", "flatten_clip"]


def flatten_clip(outputs: Mapping[str, Any]) -> Dict[str, Any]:
    """``pred_masks`` (b, Q, T, h, w) -> (b, Q, 1, T*h, w) and ``pred_logits`` (b, T, Q, K+1) -> frame 0's
    (b, Q, K+1) (the refiner's are the same for every frame), for the last layer and ``aux_outputs``
    (official ``frame_decoder_loss_reshape``)."""
    def conv(o: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        m = o["pred_masks"]
        return {"pred_logits": o["pred_logits"][:, 0], "pred_masks": m.reshape(m.shape[0], m.shape[1], 1, -1,
                                                                                m.shape[-1])}
    out = conv(outputs)
    if outputs.get("aux_outputs"):
        out["aux_outputs"] = [conv(a) for a in outputs["aux_outputs"]]
    return out


def refiner_clip_losses(outputs: Mapping[str, Any], tracker_logits: Tensor, tracker_masks: Tensor, labels: Tensor,
                        masks: Tensor, present: Tensor, criterion: SetCriterion, memory: Optional[ClassMemory], *,
                        early: bool, reid_weight: float = 2.0,
                        num_masks: Optional[float] = None) -> Tuple[Dict[str, Tensor], Any]:
    """Weighted losses of one clip of the refiner stage; pushes the clip into ``memory`` (when ``reid_weight > 0``).

    Args:
        outputs: the refiner's outputs (batch 1, ``return_aux=True``): ``pred_logits`` (1, T, Q, K+1),
            ``pred_masks`` (1, Q, T, h, w), ``aux_outputs``, ``pred_embds`` (1, C, T, Q).
        tracker_logits, tracker_masks: the frozen tracker's ``pred_logits`` / ``pred_masks`` (early matching).
        labels (N,), masks (N, T, H, W) float (padded), present (N, T): the clip's objects (those visible in no
            frame are dropped).
        criterion: a :class:`SetCriterion` with a :class:`~dvis_sdk.training.matcher.HungarianMatcher`, both with
            ``num_points`` = points per frame * T.
        memory: the refiner's class memory (read, then pushed); None: no memory negatives.
        early: match once on the tracker's outputs (first half of training).
        num_masks: divisor of the mask / dice sums (default N; the mean over the clips of a batch).

    Returns:
        ``(losses, matching)``.
    """
    keep = present.any(1)
    labels, masks = labels[keep], masks[keep]
    n, t, h, w = masks.shape
    target = {"labels": labels, "masks": masks.reshape(n, 1, t * h, w)}
    match_on = None
    if early:
        match_on = {"pred_logits": tracker_logits.float().mean(1),
                    "pred_masks": tracker_masks.reshape(tracker_masks.shape[0], tracker_masks.shape[1], 1, -1,
                                                        tracker_masks.shape[-1])}
    losses, matching = criterion(flatten_clip(outputs), [target], matcher_outputs=match_on, num_masks=num_masks)
    if reid_weight > 0 and outputs.get("pred_embds") is not None:
        embeds = outputs["pred_embds"][0].float().permute(1, 2, 0)  # (T, Q, C)
        items = refiner_items(embeds, matching[0], labels, memory)
        if memory is not None:
            memory.push(embeds, labels, matching[0])
        losses["loss_reid"] = loss_reid(items, embeds)["loss_reid"] * reid_weight
    return losses, matching


class RefinerTrainer(Trainer):
    """Offline stage: train the temporal refiner of an ``OfflineDVIS`` with segmenter and tracker frozen.

    Each clip (use ``reverse_prob=0.5`` and long clips as the official offline configs, e.g. 15 frames, and
    ``TrainConfig.reid_weight`` 2 as the YTVIS / VSPW offline configs or 0 as the OVIS / VIPSeg ones) runs through
    the frozen segmenter and tracker (eval mode, no noise); see :func:`refiner_clip_losses`.

    Args:
        tracker_matching_fraction: the share of the iterations matched on the tracker's outputs (official 0.5).
        memory_size: rows per class of the contrastive memory (official 20).
    """

    kind = "refiner"

    def __init__(self, model: OnlineDVIS, dataset: VideoClipDataset, out_dir: PathLike,
                 config: Union[TrainConfig, Dict[str, Any], None] = None,
                 val: Optional[Tuple[PathLike, PathLike]] = None, *, tracker_matching_fraction: float = 0.5,
                 memory_size: int = 20):
        if getattr(model, "refiner", None) is None:
            raise ValueError("refiner training needs an offline model (mode='offline', with a refiner)")
        self.tracker_matching_fraction = float(tracker_matching_fraction)
        super().__init__(model, dataset, out_dir, config, val)
        self.memory = ClassMemory(memory_size, self.draws)

    def _describe(self) -> Dict[str, Any]:
        return {"tracker_matching_fraction": self.tracker_matching_fraction, "memory_size": self.memory.max_len}

    def _prepare_model(self) -> None:
        for m in self.model.children():
            set_trainable(m, False)
        set_trainable(self.model.refiner, True)

    def _build_criterion(self, num_points=None, matcher=None) -> SetCriterion:
        # official: TRAIN_NUM_POINTS * SAMPLING_FRAME_NUM points on the flattened clip, for matcher and criterion
        return super()._build_criterion(num_points=self.cfg.num_points * self.dataset.num_frames)

    def _extra_state(self) -> Dict[str, Any]:
        return {"memory": self.memory.state_dict()}

    def _load_extra_state(self, state: Dict[str, Any]) -> None:
        self.memory.load_state_dict(state.get("memory", {}))

    def compute_losses(self, clips: List[Clip]) -> Dict[str, Tensor]:
        cfg = self.model.cfg
        early = self.iter < self.tracker_matching_fraction * self.cfg.iters
        num_masks = sum(int(c.present.any(1).sum()) for c in clips) / len(clips)
        total: Dict[str, Tensor] = {}
        for clip in clips:
            images = pad_clips([clip.frames], cfg.input.pixel_mean, cfg.input.pixel_std,
                               cfg.input.size_divisibility).to(self.device)
            with torch.no_grad():
                windows = [self.model.track_clip(images)]
                inputs = self.model.refiner_inputs(windows)
                trk_logits = torch.cat([w.tracker["pred_logits"] for w in windows], 1)
                trk_masks = torch.cat([w.tracker["pred_masks"] for w in windows], 2)
            out = self.model.refiner(**{k: v.detach() for k, v in inputs.items()}, return_aux=True)
            hp, wp = images.shape[-2:]
            masks = pad_masks(clip.masks.float(), (hp, wp)).to(self.device)
            losses, _ = refiner_clip_losses(out, trk_logits, trk_masks, clip.labels.to(self.device), masks,
                                            clip.present.to(self.device), self.criterion, self.memory, early=early,
                                            reid_weight=self.cfg.reid_weight, num_masks=num_masks)
            for k, v in losses.items():
                total[k] = total.get(k, 0.0) + v / len(clips)
        return total
