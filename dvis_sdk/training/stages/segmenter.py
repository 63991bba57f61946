"""Segmenter stage: backbone + pixel decoder + decoder trained on frames (from scratch or fine-tuning)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ...models.dvis import OnlineDVIS
from ..config import TrainConfig
from ..criterion import frames_as_images
from ..datasets import Clip, VideoClipDataset
from ..loop import PathLike, Trainer, set_trainable
from ..reid import ReidItem, loss_reid
from ..utils import pad_clips, pad_masks, unfreeze_batchnorm

__all__ = ["SegmenterTrainer", "segmenter_items"]


def segmenter_items(embeds: Tensor, matching: Sequence[Tuple[Tensor, Tensor]],
                    track_ids: Sequence[Tensor]) -> List:
    """Contrastive items on the segmenter's per-frame embeddings ``embeds`` (T, Q, C), where every frame has its own
    matching (``matching[t]``, targets identified by ``track_ids[t]``): the items of the official ``loss_reid`` on
    the tracker's references (anchor in frame i, positive and negatives in frame i-1, and in frame i+1), the
    positive being the query matched to the same object in that frame (objects not matched there are skipped)."""
    per_frame = [{int(track_ids[t][g]): int(q) for q, g in zip(matching[t][0].tolist(), matching[t][1].tolist())}
                 for t in range(embeds.shape[0])]
    items = []
    for i in range(1, embeds.shape[0]):
        for tid, r in per_frame[i].items():
            for j in (i - 1, i + 1):
                if j >= embeds.shape[0] or tid not in per_frame[j]:
                    continue
                p = per_frame[j][tid]
                cand = torch.cat([embeds[j, p:p + 1], embeds[j, :p], embeds[j, p + 1:]], 0)
                items.append(ReidItem(embeds[i, r], cand, 1))
    return items


class SegmenterTrainer(Trainer):
    """Backbone + pixel decoder + decoder on frames: Mask2Former image losses on every frame of the clips (each
    frame matched to the objects visible in it), plus, for DVIS++, the contrastive loss of :func:`segmenter_items`
    (weight ``reid_weight``; use clips of >= 2 frames).

    Args:
        reid_weight: weight of the contrastive loss (0: off; default ``config.reid_weight``).
        train_batchnorm: replace the backbone's frozen batch norms by trainable ones (training from scratch);
            they are folded back into frozen ones when exporting.
        freeze_backbone_at: detectron2 ``FREEZE_AT`` for fine-tuning a pretrained ResNet (0: nothing frozen).
    """

    kind = "segmenter"

    def __init__(self, model: OnlineDVIS, dataset: VideoClipDataset, out_dir: PathLike,
                 config: Union[TrainConfig, Dict[str, Any], None] = None,
                 val: Optional[Tuple[PathLike, PathLike]] = None, *, reid_weight: Optional[float] = None,
                 train_batchnorm: bool = False, freeze_backbone_at: int = 0):
        self._reid_weight = reid_weight
        self.train_batchnorm = bool(train_batchnorm)
        self.freeze_backbone_at = int(freeze_backbone_at)
        super().__init__(model, dataset, out_dir, config, val)
        self.reid_weight = float(self.cfg.reid_weight if reid_weight is None else reid_weight)

    def _describe(self) -> Dict[str, Any]:
        return {"reid_weight": self.reid_weight, "train_batchnorm": self.train_batchnorm}

    def _segmenter_modules(self) -> List[nn.Module]:
        return [self.model.backbone, self.model.pixel_decoder, self.model.decoder]

    def _prepare_model(self) -> None:
        for m in self.model.children():
            set_trainable(m, False)
        for m in self._segmenter_modules():
            set_trainable(m, True)
        if self.train_batchnorm:
            unfreeze_batchnorm(self.model.backbone)
            set_trainable(self.model.backbone, True)
        if self.freeze_backbone_at and hasattr(self.model.backbone, "freeze"):
            self.model.backbone.freeze(self.freeze_backbone_at)

    def compute_losses(self, clips: List[Clip]) -> Dict[str, Tensor]:
        cfg = self.model.cfg
        t = clips[0].frames.shape[0]
        if any(c.frames.shape[0] != t for c in clips):
            raise ValueError("all clips of a batch need the same number of frames")
        images = pad_clips([c.frames for c in clips], cfg.input.pixel_mean, cfg.input.pixel_std,
                           cfg.input.size_divisibility).to(self.device)
        features = self.model.backbone(images)
        mask_features, _, multi_scale = self.model.pixel_decoder.forward_features(features)
        out = self.model.decoder(multi_scale, mask_features, num_frames=t)
        hp, wp = images.shape[-2:]
        targets, frame_ids = [], []
        for c in clips:
            present = c.present
            masks = pad_masks(c.masks.float(), (hp, wp))
            for f in range(t):
                keep = present[:, f]
                targets.append({"labels": c.labels[keep].to(self.device),
                                "masks": masks[keep, f:f + 1].to(self.device)})
                frame_ids.append(c.ids[keep])
        losses, indices = self.criterion(frames_as_images(out), targets)
        if self.reid_weight > 0 and "pred_reid_embed" in out and t > 1:
            reid = out["pred_reid_embed"].float()  # (B, C, T, Q)
            terms = []
            for b in range(len(clips)):
                sl = slice(b * t, (b + 1) * t)
                embeds = reid[b].permute(1, 2, 0)
                terms.append(loss_reid(segmenter_items(embeds, indices[sl], frame_ids[sl]), embeds)["loss_reid"])
            losses["loss_reid"] = torch.stack(terms).mean() * self.reid_weight
        return losses
