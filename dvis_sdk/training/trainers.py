"""Trainers: segmenter on frames (from scratch or fine-tuning), denoising tracker fine-tuning with the segmenter
frozen (:class:`DenoisingTrainer`), and the offline refiner with segmenter and tracker frozen.

Common machinery (:class:`Trainer`): AdamW with Mask2Former's parameter groups, linear warm-up + step decay,
full-model gradient-norm clipping, AMP (bf16 / fp16) on CUDA, gradient accumulation, checkpoints
(``model.safetensors`` + ``config.json`` + ``trainer_state.pt`` with optimizer, iteration and RNG states) with exact
resume, a JSONL metrics log, tqdm progress and periodic evaluation with ``dvis_sdk.evaluation.evaluate_ytvis``.
The data of iteration ``i`` is drawn from ``numpy.random.default_rng([seed, i, micro_batch])``, so a resumed run
sees exactly the batches the uninterrupted run would have seen.

At the end, :meth:`Trainer.train` writes the model in the ``save_pretrained`` layout into ``out_dir``, so
``VideoSegmenter.from_pretrained(out_dir)`` loads it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..models.dvis import OnlineDVIS
from .criterion import SetCriterion, frames_as_images, reid_contrastive_loss
from .datasets import Clip, VideoClipDataset
from .matcher import ConsistentMatcher, HungarianMatcher
from .noise import QueryNoiser, attach_noiser, canonical_mode
from .utils import export_state_dict, get_rng_state, pad_clips, pad_masks, param_groups, set_rng_state, \
    unfreeze_batchnorm

__all__ = ["TrainConfig", "Trainer", "SegmenterTrainer", "DenoisingTrainer", "RefinerTrainer"]

PathLike = Union[str, Path]
CHECKPOINT_DIR = "checkpoints"
STATE_NAME = "trainer_state.pt"

_OFFICIAL_NOISE_NAMES = {"none": "none", "weighted_average": "wa", "crop_concat": "cc", "shuffle": "rs"}


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: the official DVIS++ solver, ``Base-*.yaml``)."""

    iters: int = 1000
    batch_size: int = 1              # clips per micro-batch
    grad_accum: int = 1              # micro-batches per optimizer step
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_multiplier: float = 0.1
    warmup_iters: int = 10
    warmup_factor: float = 1.0
    steps: Optional[Tuple[int, ...]] = None   # LR *= gamma at these iterations; None: at 70% of iters
    gamma: float = 0.1
    clip_grad: float = 0.01          # full-model gradient L2 norm (0: off)
    amp: str = "auto"                # "auto" (bf16 if supported else fp16, on CUDA only), "bf16", "fp16", "none"
    device: str = "auto"
    seed: int = 0
    log_every: int = 20
    ckpt_every: int = 500            # 0: only at the end
    keep_checkpoints: int = 2
    eval_every: int = 0              # 0: no periodic evaluation
    progress: bool = True
    # losses (official MASK_FORMER weights)
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    deep_supervision: bool = True

    def __post_init__(self) -> None:
        if self.iters < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("iters, batch_size and grad_accum must be >= 1")
        if self.amp not in ("auto", "bf16", "fp16", "none"):
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'none', got {self.amp!r}")
        if self.steps is not None:
            self.steps = tuple(int(s) for s in self.steps)

    def milestones(self) -> Tuple[int, ...]:
        return self.steps if self.steps is not None else (int(0.7 * self.iters),)


class Trainer:
    """Training loop shared by the trainers; subclasses define what is trained and the losses.

    Args:
        model: an :class:`~dvis_sdk.models.dvis.OnlineDVIS` / ``OfflineDVIS`` (e.g. ``VideoSegmenter.model``).
        dataset: a :class:`~dvis_sdk.training.datasets.VideoClipDataset`.
        out_dir: where checkpoints, ``metrics.jsonl`` and the final model go.
        config: :class:`TrainConfig` (or a dict of its fields).
        val: optional ``(annotation json, frames folder)`` evaluated every ``eval_every`` iterations and at the end.
    """

    kind = "base"

    def __init__(self, model: OnlineDVIS, dataset: VideoClipDataset, out_dir: PathLike,
                 config: Union[TrainConfig, Dict[str, Any], None] = None,
                 val: Optional[Tuple[PathLike, PathLike]] = None):
        from ..inference.predictor import resolve_device

        self.cfg = config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))
        self.model = model
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.val = val
        self.device = resolve_device(self.cfg.device)
        self.iter = 0
        if dataset.num_classes != model.cfg.segmenter.num_classes:
            raise ValueError(f"the model predicts {model.cfg.segmenter.num_classes} classes but the dataset has "
                             f"{dataset.num_classes}; train a segmenter for these classes first (SegmenterTrainer)")
        if model.cfg.class_names is None:
            model.cfg.class_names = list(dataset.class_names)
        torch.manual_seed(self.cfg.seed)
        self._prepare_model()
        self.model.to(self.device)
        groups = param_groups(self.model, self.cfg.lr, self.cfg.weight_decay, self.cfg.backbone_multiplier)
        if not groups:
            raise ValueError(f"{type(self).__name__}: the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.criterion = self._build_criterion().to(self.device)
        self._eval_warned = False
        self.last_eval: Optional[Dict[str, float]] = None

    # ------------------------------------------------------------------ to override
    def _prepare_model(self) -> None:
        """Freeze / unfreeze modules and set train / eval modes."""
        raise NotImplementedError

    def _build_criterion(self) -> SetCriterion:
        c = self.cfg
        return SetCriterion(self.model.num_classes, HungarianMatcher(c.class_weight, c.mask_weight, c.dice_weight,
                                                                     c.num_points),
                            class_weight=c.class_weight, mask_weight=c.mask_weight, dice_weight=c.dice_weight,
                            no_object_weight=c.no_object_weight, num_points=c.num_points,
                            oversample_ratio=c.oversample_ratio, importance_sample_ratio=c.importance_sample_ratio,
                            deep_supervision=c.deep_supervision)

    def compute_losses(self, clips: List[Clip]) -> Dict[str, Tensor]:
        """Weighted losses of one micro-batch (their sum is minimised)."""
        raise NotImplementedError

    def _extra_state(self) -> Dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ pieces
    def _amp_dtype(self) -> Optional[torch.dtype]:
        if self.device.type != "cuda" or self.cfg.amp == "none":
            return None
        if self.cfg.amp == "fp16":
            return torch.float16
        if self.cfg.amp == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def lr_factor(self, it: int) -> float:
        """LR multiplier at iteration ``it`` (0-based): linear warm-up, then ``gamma`` per milestone passed."""
        f = self.cfg.gamma ** sum(it >= s for s in self.cfg.milestones())
        if it < self.cfg.warmup_iters:
            a = it / max(self.cfg.warmup_iters, 1)
            f *= self.cfg.warmup_factor * (1 - a) + a
        return f

    def _micro_batch(self, it: int, m: int) -> List[Clip]:
        rng = np.random.default_rng([self.cfg.seed, it, m])
        idx = rng.integers(len(self.dataset), size=self.cfg.batch_size)
        return [self.dataset.sample(int(i), rng) for i in idx]

    def _batches(self, start: int) -> Iterator[Tuple[int, List[List[Clip]]]]:
        from ..inference.video_io import prefetch

        gen = ((it, [self._micro_batch(it, m) for m in range(self.cfg.grad_accum)])
               for it in range(start, self.cfg.iters))
        return prefetch(gen, depth=2)

    def train_step(self, micro_batches: List[List[Clip]]) -> Dict[str, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns the (unweighted-sum) loss components."""
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * self.lr_factor(self.iter)
        self.optimizer.zero_grad(set_to_none=True)
        totals: Dict[str, float] = {}
        n = len(micro_batches)
        for clips in micro_batches:
            with self._autocast():
                losses = self.compute_losses(clips)
            loss = sum(losses.values()) / n
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at iteration {self.iter}: "
                                         f"{ {k: float(v) for k, v in losses.items()} }")
            (self.scaler.scale(loss) if self.scaler else loss).backward()
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + float(v.detach()) / n
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.cfg.clip_grad > 0:
            totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad))
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        totals["loss"] = sum(v for k, v in totals.items() if k.startswith("loss_"))
        self.iter += 1
        return totals

    def train(self, resume: Union[bool, PathLike] = False) -> Path:
        """Train up to ``config.iters`` (continuing from a checkpoint with ``resume=True`` (latest in ``out_dir``) or a
        checkpoint path), then export the model into ``out_dir``. Returns ``out_dir``."""
        if resume:
            self.resume(None if resume is True else resume)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "train_config.json").write_text(json.dumps(
            {"trainer": self.kind, "config": _jsonable(dataclasses.asdict(self.cfg)), **self._describe()}, indent=2))
        bar = None
        if self.cfg.progress:
            from tqdm import tqdm
            bar = tqdm(total=self.cfg.iters, initial=self.iter, desc=self.kind, unit="it", dynamic_ncols=True)
        window: Dict[str, List[float]] = {}
        t0 = time.perf_counter()
        for it, micro in self._batches(self.iter):
            assert it == self.iter
            stats = self.train_step(micro)
            for k, v in stats.items():
                window.setdefault(k, []).append(v)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.3f}")
            last = self.iter == self.cfg.iters
            if self.iter % max(self.cfg.log_every, 1) == 0 or last:
                rec = {"iter": self.iter, "lr": self.optimizer.param_groups[0]["lr"],
                       **{k: float(np.mean(v)) for k, v in window.items()},
                       "sec_per_iter": (time.perf_counter() - t0) / max(len(window.get("loss", [1])), 1)}
                self.log(rec)
                window, t0 = {}, time.perf_counter()
            if (self.cfg.ckpt_every and self.iter % self.cfg.ckpt_every == 0) or last:
                self.save_checkpoint()
            if self.val is not None and ((self.cfg.eval_every and self.iter % self.cfg.eval_every == 0) or last):
                self._periodic_eval()
        if bar is not None:
            bar.close()
        self.export(self.out_dir)
        return self.out_dir

    def log(self, record: Dict[str, Any]) -> None:
        """Append one JSON line to ``out_dir/metrics.jsonl``."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(_jsonable(record)) + "\n")

    def _describe(self) -> Dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, max_videos: Optional[int] = None) -> Dict[str, float]:
        """AP etc. (``evaluate_ytvis``) of the current model on ``val``, plus identity switches."""
        from .validation import evaluate_model

        if self.val is None:
            raise ValueError("no validation set given (val=(annotations, frames))")
        was = {n: m.training for n, m in self.model.named_modules()}
        try:
            self.model.eval()
            return evaluate_model(self.inference_model(), self.val[0], self.val[1], device=self.device,
                                  max_videos=max_videos)
        finally:
            for n, m in self.model.named_modules():
                m.training = was[n]

    def _periodic_eval(self) -> None:
        try:
            metrics = self.evaluate()
        except ImportError as e:
            if not self._eval_warned:
                warnings.warn(f"periodic evaluation skipped: {e}", stacklevel=2)
                self._eval_warned = True
            return
        self.last_eval = metrics
        self.log({"iter": self.iter, "eval": metrics})

    def inference_model(self) -> OnlineDVIS:
        """The model for inference (the training model itself, unless its layout differs, e.g. trainable BN)."""
        if any(isinstance(m, nn.BatchNorm2d) for m in self.model.modules()):
            from ..models.dvis import build_model
            m = build_model(self.model.cfg).to(self.device)
            m.load_state_dict(export_state_dict(self.model), strict=True)
            return m.eval()
        return self.model

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Write ``out_dir/checkpoints/iter_XXXXXXX`` (model, config, optimizer / RNG state); keeps the newest
        ``keep_checkpoints``. Returns the folder."""
        from safetensors.torch import save_file

        from ..hub import _tensors_for_saving

        root = self.out_dir / CHECKPOINT_DIR
        d = root / f"iter_{self.iter:07d}"
        tmp = root / f".tmp_{d.name}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        save_file(_tensors_for_saving(self.model.state_dict()), str(tmp / "model.safetensors"))
        self.model.cfg.to_json(tmp / "config.json")
        state = {"iter": self.iter, "kind": self.kind, "optimizer": self.optimizer.state_dict(),
                 "rng": get_rng_state(), "extra": self._extra_state()}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        torch.save(state, tmp / STATE_NAME)
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
        (root / "last").write_text(d.name)
        ckpts = sorted(p for p in root.glob("iter_*") if p.is_dir())
        for old in ckpts[: max(len(ckpts) - max(self.cfg.keep_checkpoints, 1), 0)]:
            shutil.rmtree(old, ignore_errors=True)
        return d

    def resume(self, path: Optional[PathLike] = None) -> int:
        """Restore model, optimizer, iteration and RNG states from a checkpoint folder (default: the latest in
        ``out_dir``). Returns the iteration reached."""
        from safetensors.torch import load_file

        if path is None:
            root = self.out_dir / CHECKPOINT_DIR
            if not (root / "last").is_file():
                raise FileNotFoundError(f"no checkpoint to resume from in {root}")
            path = root / (root / "last").read_text().strip()
        path = Path(path)
        if (path / CHECKPOINT_DIR / "last").is_file():
            path = path / CHECKPOINT_DIR / (path / CHECKPOINT_DIR / "last").read_text().strip()
        if not (path / STATE_NAME).is_file():
            raise FileNotFoundError(f"{path} is not a training checkpoint (no {STATE_NAME})")
        state = torch.load(path / STATE_NAME, map_location="cpu", weights_only=True)
        if state.get("kind") != self.kind:
            raise ValueError(f"checkpoint {path} was written by a {state.get('kind')!r} trainer, not {self.kind!r}")
        sd = load_file(str(path / "model.safetensors"))
        self.model.load_state_dict(sd, strict=True)
        self.model.to(self.device)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self._load_extra_state(state.get("extra", {}))
        self.iter = int(state["iter"])
        return self.iter

    def export(self, directory: Optional[PathLike] = None) -> Path:
        """Write the model (inference layout) as ``config.json`` + ``model.safetensors``; returns the folder."""
        from ..hub import _write_pretrained

        directory = Path(directory or self.out_dir)
        cfg = self.model.cfg
        _write_pretrained(directory, cfg, export_state_dict(self.model))
        return directory


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def _set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)
    module.train(trainable)


def _segmenter_modules(model: OnlineDVIS) -> List[nn.Module]:
    return [model.backbone, model.pixel_decoder, model.decoder]


# ============================================================================================ segmenter
class SegmenterTrainer(Trainer):
    """Backbone + pixel decoder + decoder on frames: Mask2Former image losses on every frame of the clips (each
    frame matched to the objects visible in it), plus, for DVIS++, the re-identification contrastive loss between
    consecutive frames of a clip (use clips of >= 2 frames).

    Args:
        reid_weight: weight of the re-id loss (0: off).
        train_batchnorm: replace the backbone's frozen batch norms by trainable ones (training from scratch);
            they are folded back into frozen ones when exporting.
        freeze_backbone_at: detectron2 ``FREEZE_AT`` for fine-tuning a pretrained ResNet (0: nothing frozen).
    """

    kind = "segmenter"

    def __init__(self, model: OnlineDVIS, dataset: VideoClipDataset, out_dir: PathLike,
                 config: Union[TrainConfig, Dict[str, Any], None] = None,
                 val: Optional[Tuple[PathLike, PathLike]] = None, *, reid_weight: float = 2.0,
                 train_batchnorm: bool = False, freeze_backbone_at: int = 0):
        self.reid_weight = float(reid_weight)
        self.train_batchnorm = bool(train_batchnorm)
        self.freeze_backbone_at = int(freeze_backbone_at)
        super().__init__(model, dataset, out_dir, config, val)

    def _describe(self) -> Dict[str, Any]:
        return {"reid_weight": self.reid_weight, "train_batchnorm": self.train_batchnorm}

    def _prepare_model(self) -> None:
        for m in self.model.children():
            _set_trainable(m, False)
        for m in _segmenter_modules(self.model):
            _set_trainable(m, True)
        if self.train_batchnorm:
            unfreeze_batchnorm(self.model.backbone)
            _set_trainable(self.model.backbone, True)
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
                term = reid_contrastive_loss(reid[b].permute(1, 2, 0), indices[sl], frame_ids[sl])
                if term is not None:
                    terms.append(term)
            losses["loss_reid"] = (torch.stack(terms).mean() if terms else reid.sum() * 0.0) * self.reid_weight
        return losses


# ============================================================================================ tracker
class DenoisingTrainer(Trainer):
    """Fine-tune the DVIS++ referring tracker with the segmenter frozen, feeding it noised queries.

    Follows the official ``DVIS_Plus_online`` training: the tracker runs on each clip from scratch (state=None) in
    training mode with the :class:`~dvis_sdk.training.noise.QueryNoiser` installed; the segmenter's per-frame
    predictions are re-ordered by the indices the tracker applied (the noise targets on noised frames); every
    object is matched once, in the first frame where it is visible, for the whole clip
    (:class:`~dvis_sdk.training.matcher.ConsistentMatcher`) - on those re-ordered segmenter predictions during
    the first ``segmenter_matching_fraction`` of the iterations, on the tracker's own predictions afterwards.

    Args:
        noise: ``"none"``, ``"weighted_average"``, ``"crop_concat"`` or ``"shuffle"`` (or ``wa`` / ``cc`` / ``rs``);
            default: the model config's ``tracker.noise_mode``.
        noise_ratio: probability that a frame is noised; default: the model config's ``tracker.noise_ratio``.
        cache: ``"memory"`` (default) keeps the frozen segmenter's per-frame outputs in RAM, a folder path keeps
            them on disk, ``None`` recomputes them every time. Exact either way (frames are segmented one by one).
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
        super().__init__(model, dataset, out_dir, config, val)
        self.noise_generator.manual_seed(self.cfg.seed)
        model.cfg.tracker.noise_mode = _OFFICIAL_NOISE_NAMES[self.noise]
        model.cfg.tracker.noise_ratio = self.noise_ratio

    def _describe(self) -> Dict[str, Any]:
        return {"noise": self.noise, "noise_ratio": self.noise_ratio,
                "segmenter_matching_fraction": self.segmenter_matching_fraction}

    def _prepare_model(self) -> None:
        for m in self.model.children():
            _set_trainable(m, False)
        _set_trainable(self.model.tracker, True)
        self.noiser = attach_noiser(self.model.tracker, self.noise, self.noise_ratio, self.noise_generator)

    def _build_criterion(self) -> SetCriterion:
        crit = super()._build_criterion()
        c = self.cfg
        crit.matcher = ConsistentMatcher(c.class_weight, c.mask_weight, c.dice_weight, c.num_points,
                                         frames=self.dataset.num_frames)
        return crit

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
        frames: List[Dict[str, Tensor]] = []
        todo = []
        for t, f in enumerate(clip.frame_indices):
            key = (clip.video_index, f, h, w, int(clip.flipped))
            hit = self._cache_get(key)
            frames.append(hit)  # type: ignore[arg-type]
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
                self._cache_put((clip.video_index, clip.frame_indices[t], h, w, int(clip.flipped)), item)
                frames[t] = item
        dev = self.device
        stack = lambda k, d: torch.stack([fr[k] for fr in frames], d).to(dev)  # noqa: E731
        hp, wp = -(-h // cfg.input.size_divisibility) * cfg.input.size_divisibility, \
            -(-w // cfg.input.size_divisibility) * cfg.input.size_divisibility
        return {"pred_embds": stack("pred_embds", 1)[None], "pred_embds_without_norm": stack("no_norm", 1)[None],
                "mask_features": stack("mask_features", 0), "pred_logits": stack("pred_logits", 0)[None],
                "pred_masks": stack("pred_masks", 1)[None], "padded": torch.tensor([hp, wp])}

    def _cache_get(self, key) -> Optional[Dict[str, Tensor]]:
        if self.cache is None:
            return None
        if self.cache == "memory":
            return self._cache.get(key)
        p = Path(self.cache) / ("_".join(str(k) for k in key) + ".pt")
        return torch.load(p, weights_only=True) if p.is_file() else None

    def _cache_put(self, key, item: Dict[str, Tensor]) -> None:
        if self.cache is None:
            return
        if self.cache == "memory":
            self._cache[key] = item
            return
        d = Path(self.cache)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(item, d / ("_".join(str(k) for k in key) + ".pt"))

    def compute_losses(self, clips: List[Clip]) -> Dict[str, Tensor]:
        total: Dict[str, Tensor] = {}
        use_segmenter = self.iter < self.segmenter_matching_fraction * self.cfg.iters
        for clip in clips:
            seg = self.segment_clip(clip)
            t = seg["mask_features"].shape[0]
            out, _, indices = self.model.tracker(seg["pred_embds"], seg["mask_features"].unsqueeze(0), None,
                                                 frame_embeds_no_norm=seg["pred_embds_without_norm"],
                                                 return_aux=True)
            if indices.dim() == 3:
                indices = indices[:, 0]
            idx = indices.to(self.device)  # (T, Q): segmenter query put into tracker slot k at frame t
            frame_ar = torch.arange(t, device=self.device)[:, None]
            reordered = {"pred_logits": seg["pred_logits"][0][frame_ar, idx][None],
                         "pred_masks": seg["pred_masks"][0][idx, frame_ar].transpose(0, 1)[None]}
            hp, wp = (int(v) for v in seg["padded"])
            masks = pad_masks(clip.masks.float(), (hp, wp)).to(self.device)
            present = clip.present
            targets = [{"labels": clip.labels.to(self.device), "masks": masks[:, f:f + 1], "present": present[:, f]}
                       for f in range(t)]
            match_on = frames_as_images(reordered) if use_segmenter else None
            losses, _ = self.criterion(frames_as_images(out), targets, matcher_outputs=match_on)
            for k, v in losses.items():
                total[k] = total.get(k, 0.0) + v / len(clips)
        return total


# ============================================================================================ refiner
class RefinerTrainer(Trainer):
    """Offline stage: train the temporal refiner of an ``OfflineDVIS`` with segmenter and tracker frozen.

    Each clip (use ``reverse_prob=0.5`` and long clips as the official offline configs, e.g. 15 frames) runs through
    the frozen segmenter and tracker (eval mode, no noise); the refiner's outputs over the whole clip are matched
    to the ground-truth tracks as video masks (one matching per clip) with deep supervision.
    """

    kind = "refiner"

    def __init__(self, model: OnlineDVIS, dataset: VideoClipDataset, out_dir: PathLike,
                 config: Union[TrainConfig, Dict[str, Any], None] = None,
                 val: Optional[Tuple[PathLike, PathLike]] = None):
        if getattr(model, "refiner", None) is None:
            raise ValueError("refiner training needs an offline model (mode='offline', with a refiner)")
        super().__init__(model, dataset, out_dir, config, val)

    def _prepare_model(self) -> None:
        for m in self.model.children():
            _set_trainable(m, False)
        _set_trainable(self.model.refiner, True)

    def compute_losses(self, clips: List[Clip]) -> Dict[str, Tensor]:
        cfg = self.model.cfg
        total: Dict[str, Tensor] = {}
        for clip in clips:
            images = pad_clips([clip.frames], cfg.input.pixel_mean, cfg.input.pixel_std,
                               cfg.input.size_divisibility).to(self.device)
            with torch.no_grad():
                windows = [self.model.track_clip(images)]
                inputs = self.model.refiner_inputs(windows)
            out = self.model.refiner(**{k: v.detach() for k, v in inputs.items()}, return_aux=True)
            # one class score per query for the whole clip: use frame 0's (they are identical over time)
            video_out = {"pred_logits": out["pred_logits"][:, 0], "pred_masks": out["pred_masks"],
                         "aux_outputs": [{"pred_logits": a["pred_logits"][:, 0], "pred_masks": a["pred_masks"]}
                                         for a in out["aux_outputs"]]}
            hp, wp = images.shape[-2:]
            target = {"labels": clip.labels.to(self.device),
                      "masks": pad_masks(clip.masks.float(), (hp, wp)).to(self.device)}
            losses, _ = self.criterion(video_out, [target])
            for k, v in losses.items():
                total[k] = total.get(k, 0.0) + v / len(clips)
        return total
