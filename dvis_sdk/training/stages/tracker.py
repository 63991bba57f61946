"""Tracker stage (official ``DVIS_Plus_online``): the referring tracker trained on a frozen segmenter, with query
noise, the consistent matcher and the contrastive loss on the tracker's references (``loss_reid``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ...models.dvis import OnlineDVIS
from ..config import TrainConfig
from ..criterion import SetCriterion, frames_as_images
from ..datasets import Clip, VideoClipDataset
from ..draws import Draws
from ..fingerprint import segmenter_fingerprint
from ..loop import PathLike, Trainer, set_trainable
from ..matcher import ConsistentMatcher
from ..noise import QueryNoiser, attach_noiser, canonical_mode
from ..reid import loss_reid, tracker_items
from ..utils import pad_clips, pad_masks

__all__ = ["DenoisingTrainer", "tracker_clip_losses", "frame_targets", "reorder_segmenter_outputs"]

_OFFICIAL_NOISE_NAMES = {"none": "none", "weighted_average": "wa", "crop_concat": "cc", "shuffle": "rs"}


def frame_targets(labels: Tensor, masks: Tensor, present: Tensor) -> List[Dict[str, Tensor]]:
    """One clip's targets as per-frame items (official ``prepare_targets`` + ``frame_decoder_loss_reshape``).

    ``labels`` (N,), ``masks`` (N, T, H, W) float (padded), ``present`` (N, T) bool. Objects visible in no frame are
    dropped; an object invisible in frame f is still a target there (its label, an empty mask)."""
    keep = present.any(1)
    labels, masks, present = labels[keep], masks[keep], present[keep]
    return [{"labels": labels, "masks": masks[:, f:f + 1], "present": present[:, f]} for f in range(masks.shape[1])]


def reorder_segmenter_outputs(pred_logits: Tensor, pred_masks: Tensor, indices: Tensor) -> Dict[str, Tensor]:
    """The segmenter's outputs (``pred_logits`` (1, T, Q, K+1), ``pred_masks`` (1, Q, T, h, w)) put into the tracker's
    slots: slot q of frame t gets segmenter query ``indices[t, q]`` (official ``reset_image_output_order``)."""
    t = indices.shape[0]
    frame = torch.arange(t, device=indices.device)[:, None]
    return {"pred_logits": pred_logits[0][frame, indices][None],
            "pred_masks": pred_masks[0][indices, frame].transpose(0, 1)[None]}


def tracker_clip_losses(outputs: Mapping[str, Any], segmenter_logits: Tensor, segmenter_masks: Tensor,
                        indices: Tensor, targets: Sequence[Dict[str, Tensor]], criterion: SetCriterion, *,
                        early: bool, reid_weight: float = 2.0,
                        num_masks: Optional[float] = None) -> Tuple[Dict[str, Tensor], Any]:
    """Weighted losses of one clip of the tracker stage.

    Args:
        outputs: the tracker's training outputs for the clip (batch 1): ``pred_logits`` (1, T, Q, K+1),
            ``pred_masks`` (1, Q, T, h, w), ``aux_outputs``, ``pred_references`` (1, C, T, Q).
        segmenter_logits, segmenter_masks: the frozen segmenter's outputs in its own query order.
        indices: (T, Q) the segmenter query each tracker slot was initialised from (noise indices included).
        targets: :func:`frame_targets` of the clip.
        criterion: a :class:`SetCriterion` with a :class:`ConsistentMatcher` (``frames = T``).
        early: first half of training: match once on the re-ordered segmenter outputs, for every layer;
            otherwise every layer on its own outputs and the contrastive loss uses the last auxiliary layer's.
        reid_weight: weight of ``loss_reid`` (0: off).
        num_masks: divisor of the mask / dice sums (default T * N; the mean over the clips of a batch).

    Returns:
        ``(losses, matching)``.
    """
    match_on = None
    if early:
        match_on = frames_as_images(reorder_segmenter_outputs(segmenter_logits, segmenter_masks, indices))
    losses, matching = criterion(frames_as_images(outputs), targets, matcher_outputs=match_on, num_masks=num_masks)
    if reid_weight > 0 and outputs.get("pred_references") is not None:
        refs = outputs["pred_references"][0].float().permute(1, 2, 0)  # (T, Q, C)
        losses["loss_reid"] = loss_reid(tracker_items(refs, matching), refs)["loss_reid"] * reid_weight
    return losses, matching


class DenoisingTrainer(Trainer):
    """Fine-tune the DVIS++ referring tracker with the segmenter frozen, feeding it noised queries.

    Follows the official ``DVIS_Plus_online`` training: the tracker runs on each clip from scratch (state=None) in
    training mode with the :class:`~dvis_sdk.training.noise.QueryNoiser` installed; every object is matched once,
    in the first frame where it is visible, for the whole clip (:class:`~dvis_sdk.training.matcher.ConsistentMatcher`)
    - on the segmenter's predictions re-ordered by the indices the tracker applied during the first
    ``segmenter_matching_fraction`` of the iterations, on the tracker's own predictions afterwards - and the
    contrastive loss ``loss_reid`` (weight ``config.reid_weight``) supervises the tracker's references.
    See :func:`tracker_clip_losses`.

    Args:
        noise: ``"none"``, ``"weighted_average"``, ``"crop_concat"`` or ``"shuffle"`` (or ``wa`` / ``cc`` / ``rs``);
            default: the model config's ``tracker.noise_mode`` (official online configs: ``wa``).
        noise_ratio: probability that a frame is noised; default: the model config's ``tracker.noise_ratio``
            (official: 0.5 for 40k iterations, 0.8 for 160k).
        cache: ``"memory"`` (default) keeps the frozen segmenter's per-frame outputs in RAM, a folder path keeps
            them on disk (in a sub-folder named by :func:`~dvis_sdk.training.fingerprint.segmenter_fingerprint`,
            so a folder reused with another segmenter is not read back), ``None`` recomputes them every time.
            Exact either way (frames are segmented one by one).
    """

    kind = "tracker"

    def __init__(self, model: OnlineDVIS, dataset: VideoClipDataset, out_dir: PathLike,
                 config: Union[TrainConfig, Dict[str, Any], None] = None,
                 val: Optional[Tuple[PathLike, PathLike]] = None, *, noise: Optional[str] = None,
                 noise_ratio: Optional[float] = None, segmenter_matching_fraction: float = 0.5,
                 cache: Union[str, Path, None] = "memory"):
        if model.cfg.variant != "dvis++":
            raise ValueError("denoising training needs a DVIS++ model (the original DVIS tracker has no noiser)")
        self.noise = canonical_mode(noise if noise is not None else model.cfg.tracker.noise_mode)
        self.noise_ratio = float(noise_ratio if noise_ratio is not None else model.cfg.tracker.noise_ratio)
        self.segmenter_matching_fraction = float(segmenter_matching_fraction)
        self.noise_generator = torch.Generator()
        self.noiser: Optional[QueryNoiser] = None
        self._cache: Dict[Tuple[int, int, int, int, int], Dict[str, Tensor]] = {}
        self.cache = cache
        self._fingerprint: Optional[str] = None
        super().__init__(model, dataset, out_dir, config, val)
        self.noise_generator.manual_seed(self.cfg.seed)
        model.cfg.tracker.noise_mode = _OFFICIAL_NOISE_NAMES[self.noise]
        model.cfg.tracker.noise_ratio = self.noise_ratio

    def _describe(self) -> Dict[str, Any]:
        return {"noise": self.noise, "noise_ratio": self.noise_ratio,
                "segmenter_matching_fraction": self.segmenter_matching_fraction}

    def _prepare_model(self) -> None:
        for m in self.model.children():
            set_trainable(m, False)
        set_trainable(self.model.tracker, True)
        # the noise has its own generator, so that arms differing only in noise see the same loss draws
        self.noiser = attach_noiser(self.model.tracker, self.noise, self.noise_ratio,
                                    draws=Draws(self.noise_generator))

    def _build_criterion(self, num_points=None, matcher=None) -> SetCriterion:
        c = self.cfg
        return super()._build_criterion(matcher=ConsistentMatcher(
            c.class_weight, c.mask_weight, c.dice_weight, c.num_points, frames=self.dataset.num_frames,
            draws=self.draws))

    def _extra_state(self) -> Dict[str, Any]:
        return {"noise_generator": self.noise_generator.get_state()}

    def _load_extra_state(self, state: Dict[str, Any]) -> None:
        if "noise_generator" in state:
            self.noise_generator.set_state(state["noise_generator"])

    @torch.no_grad()
    def segment_clip(self, clip: Clip) -> Dict[str, Tensor]:
        """Frozen segmenter outputs of a clip (per-frame, cached): ``pred_embds`` / ``pred_embds_without_norm``
        (1, E, T, Q), ``mask_features`` (T, D, h, w), ``pred_logits`` (1, T, Q, K+1), ``pred_masks`` (1, Q, T, h, w),
        ``padded`` (Hp, Wp)."""
        cfg = self.model.cfg
        h, w = clip.frames.shape[-2:]
        frames: List[Optional[Dict[str, Tensor]]] = []
        todo = []
        # a pseudo-video clip (an image rotated per frame) is a fresh random draw: never cached by frame
        use_cache = getattr(self.dataset, "cacheable", True)
        for t, f in enumerate(clip.frame_indices):
            hit = self._cache_get((clip.video_index, f, h, w, int(clip.flipped))) if use_cache else None
            frames.append(hit)
            if hit is None:
                todo.append(t)
        if todo:
            images = pad_clips([clip.frames[todo]], cfg.input.pixel_mean, cfg.input.pixel_std,
                               cfg.input.size_divisibility).to(self.device)
            seg = self.model.segment(images)  # per-frame computation: same result whichever frames are batched
            for j, t in enumerate(todo):
                item = {"pred_embds": seg["pred_embds"][0, :, j], "no_norm": seg["pred_embds_without_norm"][0, :, j],
                        "mask_features": seg["mask_features"][j], "pred_logits": seg["pred_logits"][0, j],
                        "pred_masks": seg["pred_masks"][0, :, j]}
                item = {k: v.detach().float().cpu().clone() for k, v in item.items()}
                if use_cache:
                    self._cache_put((clip.video_index, clip.frame_indices[t], h, w, int(clip.flipped)), item)
                frames[t] = item
        dev = self.device
        stack = lambda k, d: torch.stack([fr[k] for fr in frames], d).to(dev)  # type: ignore[index]  # noqa: E731
        div = cfg.input.size_divisibility
        hp, wp = -(-h // div) * div, -(-w // div) * div
        return {"pred_embds": stack("pred_embds", 1)[None], "pred_embds_without_norm": stack("no_norm", 1)[None],
                "mask_features": stack("mask_features", 0), "pred_logits": stack("pred_logits", 0)[None],
                "pred_masks": stack("pred_masks", 1)[None], "padded": torch.tensor([hp, wp])}

    def cache_folder(self) -> Path:
        """The disk cache's folder for THIS segmenter: ``cache / <segmenter fingerprint>`` (computed once: the
        segmenter is frozen while the tracker trains)."""
        if self._fingerprint is None:
            self._fingerprint = segmenter_fingerprint(self.model)
        return Path(self.cache) / self._fingerprint  # type: ignore[arg-type]

    def _cache_path(self, key) -> Path:
        return self.cache_folder() / ("_".join(str(k) for k in key) + ".pt")

    def _cache_get(self, key) -> Optional[Dict[str, Tensor]]:
        if self.cache is None:
            return None
        if self.cache == "memory":
            return self._cache.get(key)
        p = self._cache_path(key)
        return torch.load(p, weights_only=True) if p.is_file() else None

    def _cache_put(self, key, item: Dict[str, Tensor]) -> None:
        if self.cache is None:
            return
        if self.cache == "memory":
            self._cache[key] = item
            return
        p = self._cache_path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        # write + rename: a process sharing the folder (or a run killed mid-write) never reads a partial file
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        torch.save(item, tmp)
        os.replace(tmp, p)

    def compute_losses(self, clips: List[Clip]) -> Dict[str, Tensor]:
        early = self.iter < self.segmenter_matching_fraction * self.cfg.iters
        prepared = []
        for clip in clips:
            seg = self.segment_clip(clip)
            hp, wp = (int(v) for v in seg["padded"])
            masks = pad_masks(clip.masks.float(), (hp, wp)).to(self.device)
            prepared.append((seg, frame_targets(clip.labels.to(self.device), masks, clip.present.to(self.device))))
        # official DDP: every process divides by the MEAN mask count over processes, gradients are averaged
        num_masks = sum(sum(len(t["labels"]) for t in tg) for _, tg in prepared) / len(prepared)
        total: Dict[str, Tensor] = {}
        for seg, targets in prepared:
            out, _, indices = self.model.tracker(seg["pred_embds"], seg["mask_features"].unsqueeze(0), None,
                                                 frame_embeds_no_norm=seg["pred_embds_without_norm"],
                                                 return_aux=True)
            if indices.dim() == 3:
                indices = indices[:, 0]
            losses, _ = tracker_clip_losses(out, seg["pred_logits"], seg["pred_masks"], indices.to(self.device),
                                            targets, self.criterion, early=early, reid_weight=self.cfg.reid_weight,
                                            num_masks=num_masks)
            for k, v in losses.items():
                total[k] = total.get(k, 0.0) + v / len(prepared)
        return total
