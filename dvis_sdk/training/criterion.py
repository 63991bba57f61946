"""Set criterion of Mask2Former / DVIS: matched class cross-entropy (no-object weight), point-sampled mask BCE + dice,
deep supervision over the decoder layers (the DVIS++ contrastive loss is in :mod:`.reid`).

Official weights (``MASK_FORMER.{CLASS,MASK,DICE}_WEIGHT``, ``NO_OBJECT_WEIGHT``, ``TRAIN_NUM_POINTS``,
``OVERSAMPLE_RATIO``, ``IMPORTANCE_SAMPLE_RATIO``): 2, 5, 5, 0.1, 12544, 3.0, 0.75; every decoder layer is
weighted the same.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .draws import Draws
from .matcher import HungarianMatcher, Indices, point_sample

__all__ = ["SetCriterion", "uncertain_point_coords", "dice_loss", "sigmoid_ce_loss", "frames_as_images"]


def dice_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Sum over masks of ``1 - (2|XY| + 1) / (|X| + |Y| + 1)``, divided by ``num_masks``. inputs: logits (n, P)."""
    s = inputs.sigmoid().flatten(1)
    num = 2 * (s * targets).sum(-1)
    den = s.sum(-1) + targets.sum(-1)
    return (1 - (num + 1) / (den + 1)).sum() / num_masks


def sigmoid_ce_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Per-mask mean BCE, summed and divided by ``num_masks``."""
    return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none").mean(1).sum() / num_masks


def uncertain_point_coords(logits: Tensor, num_points: int, oversample_ratio: float,
                           importance_sample_ratio: float,
                           uncertainty: Optional[Callable[[Tensor], Tensor]] = None,
                           draws: Optional[Draws] = None) -> Tensor:
    """PointRend training points for (R, 1, h, w) mask logits (detectron2
    ``get_uncertain_point_coords_with_randomness``): ``importance_sample_ratio * num_points`` of the most uncertain
    (``-|logit|``, in ``topk`` order) among ``oversample_ratio * num_points`` candidates, then the uniformly random
    rest. ``draws`` serves the candidates and the rest (default: fresh draws). Returns (R, num_points, 2) in [0, 1]."""
    draws = draws if draws is not None else Draws()
    r = logits.shape[0]
    n_sampled = max(int(num_points * oversample_ratio), num_points)
    coords = draws.point_candidates(r, n_sampled).to(logits.device)
    point_logits = point_sample(logits, coords)
    u = uncertainty(point_logits) if uncertainty is not None else -point_logits.abs()
    n_uncertain = int(importance_sample_ratio * num_points)
    n_random = num_points - n_uncertain
    idx = torch.topk(u[:, 0, :], k=n_uncertain, dim=1)[1]
    idx = idx + n_sampled * torch.arange(r, device=logits.device)[:, None]
    coords = coords.view(-1, 2)[idx.view(-1)].view(r, n_uncertain, 2)
    if n_random > 0:
        coords = torch.cat([coords, draws.point_random(r, n_random).to(logits.device)], dim=1)
    return coords


def frames_as_images(outputs: Mapping[str, object]) -> Dict[str, object]:
    """Decoder / tracker outputs in the video layout (``pred_logits`` (B, T, Q, K+1), ``pred_masks``
    (B, Q, T, h, w), same for ``aux_outputs``) -> B*T per-frame items (``pred_logits`` (B*T, Q, K+1),
    ``pred_masks`` (B*T, Q, 1, h, w)), frame-major within each video (official ``frame_decoder_loss_reshape``)."""
    def conv(o: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        lg, mk = o["pred_logits"], o["pred_masks"]
        return {"pred_logits": lg.flatten(0, 1),
                "pred_masks": mk.transpose(1, 2).flatten(0, 1).unsqueeze(2)}
    out = conv(outputs)  # type: ignore[arg-type]
    if "aux_outputs" in outputs:
        out["aux_outputs"] = [conv(a) for a in outputs["aux_outputs"]]  # type: ignore[union-attr]
    return out


class SetCriterion(nn.Module):
    """Matching-based losses (official ``VideoSetCriterion``).

    ``forward(outputs, targets, matcher_outputs=None)``: ``outputs`` as the matcher's (``pred_logits`` (N, Q, K+1),
    ``pred_masks`` (N, Q, T, h, w), optional ``aux_outputs``), ``targets`` N dicts (``labels``, ``masks``, and
    whatever the matcher needs). With ``matcher_outputs`` (e.g. the segmenter's predictions re-ordered as the
    tracker's queries), the matching is computed once on them and used for every layer; otherwise every layer is
    matched on its own. ``num_masks`` (default: the number of targets) divides the mask and dice sums; several
    clips of one batch pass the mean over clips, as the official all-reduce over processes does.
    Returns ``(losses, indices)``: weighted losses ``loss_ce``, ``loss_mask``, ``loss_dice`` (last layer) and
    ``..._{i}`` for the auxiliary layers; ``indices`` is the matching computed last (official
    ``ret_match_result``): the shared one with ``matcher_outputs``, else the last auxiliary layer's.
    ``draws`` (:class:`~dvis_sdk.training.draws.Draws`) serves the point sampler's random points and, when no
    ``matcher`` is given, the matcher's.
    """

    def __init__(self, num_classes: int, matcher: Optional[HungarianMatcher] = None, *, class_weight: float = 2.0,
                 mask_weight: float = 5.0, dice_weight: float = 5.0, no_object_weight: float = 0.1,
                 num_points: int = 12544, oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                 deep_supervision: bool = True, draws: Optional[Draws] = None):
        super().__init__()
        self.num_classes = num_classes
        self.draws = draws if draws is not None else Draws()
        self.matcher = matcher or HungarianMatcher(class_weight, mask_weight, dice_weight, num_points, self.draws)
        self.weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.deep_supervision = deep_supervision
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    @staticmethod
    def _src_idx(indices: Indices) -> Tuple[Tensor, Tensor]:
        batch = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        return batch, torch.cat([src for src, _ in indices])

    def loss_labels(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]],
                    indices: Indices) -> Tensor:
        logits = outputs["pred_logits"].float()
        b_idx, q_idx = self._src_idx(indices)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        matched = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)]).to(logits.device)
        target_classes[b_idx.to(logits.device), q_idx.to(logits.device)] = matched
        return F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight.to(logits))

    def loss_masks(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]], indices: Indices,
                   num_masks: float) -> Tuple[Tensor, Tensor]:
        b_idx, q_idx = self._src_idx(indices)
        src = outputs["pred_masks"]
        if len(b_idx) == 0:
            zero = src.sum() * 0.0
            return zero, zero
        src = src[b_idx.to(src.device), q_idx.to(src.device)]  # (n, T, h, w)
        tgt = torch.cat([t["masks"][j] for t, (_, j) in zip(targets, indices)]).to(src.device)
        src = src.flatten(0, 1)[:, None].float()  # (n*T, 1, h, w)
        tgt = tgt.flatten(0, 1)[:, None].float()
        with torch.no_grad():
            coords = uncertain_point_coords(src, self.num_points, self.oversample_ratio, self.importance_sample_ratio,
                                            draws=self.draws)
            labels = point_sample(tgt, coords).squeeze(1)
        logits = point_sample(src, coords).squeeze(1)
        return sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)

    def _layer_losses(self, outputs: Mapping[str, Tensor], targets: Sequence[Mapping[str, Tensor]], indices: Indices,
                      num_masks: float, suffix: str) -> Dict[str, Tensor]:
        ce = self.loss_labels(outputs, targets, indices)
        bce, dice = self.loss_masks(outputs, targets, indices, num_masks)
        return {f"loss_ce{suffix}": ce * self.weights["loss_ce"], f"loss_mask{suffix}": bce * self.weights["loss_mask"],
                f"loss_dice{suffix}": dice * self.weights["loss_dice"]}

    def forward(self, outputs: Mapping[str, object], targets: Sequence[Mapping[str, Tensor]],
                matcher_outputs: Optional[Mapping[str, Tensor]] = None,
                num_masks: Optional[float] = None) -> Tuple[Dict[str, Tensor], Indices]:
        match_on = matcher_outputs if matcher_outputs is not None else outputs
        indices = self.matcher(match_on, targets)  # type: ignore[arg-type]
        if num_masks is None:
            num_masks = float(sum(len(t["labels"]) for t in targets))
        num_masks = max(float(num_masks), 1.0)
        losses = self._layer_losses(outputs, targets, indices, num_masks, "")  # type: ignore[arg-type]
        if self.deep_supervision:
            for i, aux in enumerate(outputs.get("aux_outputs") or []):  # type: ignore[union-attr]
                if matcher_outputs is None:
                    indices = self.matcher(aux, targets)
                losses.update(self._layer_losses(aux, targets, indices, num_masks, f"_{i}"))
        return losses, indices
