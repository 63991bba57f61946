"""The training loop shared by the stages (:class:`Trainer`).

AdamW with Mask2Former's parameter groups, linear warm-up + step decay, full-model gradient-norm clipping, AMP
(bf16 / fp16) on CUDA, gradient accumulation, checkpoints with exact resume (:mod:`.checkpoint`), a JSONL metrics
log, tqdm progress and periodic evaluation with ``dvis_sdk.evaluation.evaluate_ytvis``. The data of iteration
``i`` is drawn from ``numpy.random.default_rng([seed, i, micro_batch])``, so a resumed run sees exactly the batches
the uninterrupted run would have seen. At the end, :meth:`Trainer.train` writes the model in the
``save_pretrained`` layout into ``out_dir``, so ``VideoSegmenter.from_pretrained(out_dir)`` loads it.

The stages (:mod:`.stages`) define what is trained and the losses.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..models.dvis import OnlineDVIS
from ..runtime import native_bf16
from . import checkpoint as ckpt
from .config import TrainConfig
from .criterion import SetCriterion
from .datasets import Clip, VideoClipDataset
from .draws import Draws
from .matcher import HungarianMatcher
from .utils import export_state_dict, param_groups

__all__ = ["Trainer", "set_trainable", "grad_scaler", "BEST_DIR"]

PathLike = Union[str, Path]
#: sub-folder of ``out_dir`` holding the model of the best validation AP so far (``best.json``: its metrics)
BEST_DIR = "best"


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
        # the losses' random draws (points, noise, memory shuffles): own generator, saved in checkpoints
        self.draws_generator = torch.Generator().manual_seed(self.cfg.seed)
        self.draws = Draws(self.draws_generator)
        self._prepare_model()
        self.model.to(self.device)
        groups = param_groups(self.model, self.cfg.lr, self.cfg.weight_decay, self.cfg.backbone_multiplier)
        if not groups:
            raise ValueError(f"{type(self).__name__}: the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.amp_dtype = self._amp_dtype()
        self.scaler = grad_scaler() if self.amp_dtype == torch.float16 else None
        self.criterion = self._build_criterion().to(self.device)
        self._eval_warned = False
        self.last_eval: Optional[Dict[str, float]] = None
        #: the best periodic validation so far (``iter`` + metrics); its model is in ``out_dir/best``
        self.best_eval: Optional[Dict[str, float]] = None

    # ------------------------------------------------------------------ to override
    def _prepare_model(self) -> None:
        """Freeze / unfreeze modules and set train / eval modes."""
        raise NotImplementedError

    def _build_criterion(self, num_points: Optional[int] = None,
                         matcher: Optional[HungarianMatcher] = None) -> SetCriterion:
        c = self.cfg
        p = int(num_points or c.num_points)
        matcher = matcher or HungarianMatcher(c.class_weight, c.mask_weight, c.dice_weight, p, self.draws)
        return SetCriterion(self.model.num_classes, matcher, class_weight=c.class_weight, mask_weight=c.mask_weight,
                            dice_weight=c.dice_weight, no_object_weight=c.no_object_weight, num_points=p,
                            oversample_ratio=c.oversample_ratio, importance_sample_ratio=c.importance_sample_ratio,
                            deep_supervision=c.deep_supervision, draws=self.draws)

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
        # "auto": bf16 only where it is native (compute capability >= 8.0); torch.cuda.is_bf16_supported() also
        # says True on older GPUs, which emulate it several times slower than fp16
        if self.cfg.amp == "bf16" or native_bf16(self.device):
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
        from ..io import prefetch

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
            {"trainer": self.kind, "config": ckpt.jsonable(dataclasses.asdict(self.cfg)), **self._describe()},
            indent=2))
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
            f.write(json.dumps(ckpt.jsonable(record)) + "\n")

    def _describe(self) -> Dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, max_videos: Optional[int] = None) -> Dict[str, float]:
        """AP etc. (``evaluate_ytvis``) of the current model on ``val``, plus identity switches."""
        from .validation import evaluate_model

        if self.val is None:
            raise ValueError("no validation set given (val=(annotations, frames))")
        model = self.inference_model()
        if model is self.model:
            # inference may install fast paths / hooks on the model it is given: evaluate a copy, so the model
            # being trained (and its noiser, train modes, parameters) is exactly as it was
            model = copy.deepcopy(model)
        model.eval()
        if getattr(model, "tracker", None) is not None and hasattr(model.tracker, "noiser"):
            model.tracker.noiser = None
        return evaluate_model(model, self.val[0], self.val[1], device=self.device, max_videos=max_videos)

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
        self._keep_best(metrics)
        if self.cfg.progress:
            from tqdm import tqdm

            shown = " ".join(f"{k} {metrics[k]:.1f}" for k in ("AP", "AP50", "IDF1", "HOTA") if k in metrics)
            tqdm.write(f"[{self.kind} {self.iter}/{self.cfg.iters}] validation: {shown}")

    def _keep_best(self, metrics: Dict[str, float]) -> None:
        """Export the model into ``out_dir/best`` when its validation AP beats every earlier one (ties: the earlier
        model stays), so a run can keep its best iteration rather than its last."""
        ap = metrics.get("AP")
        if ap is None or not np.isfinite(ap) or (self.best_eval is not None and ap <= self.best_eval["AP"]):
            return
        self.best_eval = {"iter": self.iter, **metrics}
        best = self.out_dir / BEST_DIR
        self.export(best)
        (best / "best.json").write_text(json.dumps(ckpt.jsonable(self.best_eval)))

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
        """Write ``out_dir/checkpoints/iter_XXXXXXX``; see :func:`.checkpoint.save_checkpoint`."""
        return ckpt.save_checkpoint(self)

    def resume(self, path: Optional[PathLike] = None) -> int:
        """Restore model, optimizer, iteration and RNG states from a checkpoint folder (default: the latest in
        ``out_dir``). Returns the iteration reached."""
        it = ckpt.resume(self, path)
        best = self.out_dir / BEST_DIR / "best.json"
        if best.is_file():  # a best model written after this checkpoint belongs to the lost part of the run
            rec = json.loads(best.read_text())
            self.best_eval = rec if int(rec.get("iter", it + 1)) <= it else None
        return it

    def export(self, directory: Optional[PathLike] = None) -> Path:
        """Write the model (inference layout) as ``config.json`` + ``model.safetensors``; returns the folder."""
        return ckpt.export(self, directory)


def grad_scaler() -> Any:
    """A CUDA loss scaler for fp16 training on every supported torch: ``torch.amp.GradScaler("cuda")`` exists from
    torch 2.3, ``torch.cuda.amp.GradScaler()`` before (deprecated, with a FutureWarning, from 2.4)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Set ``requires_grad`` of every parameter and the train / eval mode of ``module``."""
    for p in module.parameters():
        p.requires_grad_(trainable)
    module.train(trainable)
