"""Training configuration: optimisation and loss settings, with presets.

Defaults follow the official DVIS++ configs (``Base-*.yaml`` solver, ``MASK_FORMER`` loss weights, ``loss_reid``
weight 2). :func:`preset` returns scaled-down variants for small custom datasets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

__all__ = ["TrainConfig", "PRESETS", "preset"]


@dataclass
class TrainConfig:
    """Optimisation settings (defaults: the official DVIS++ solver, ``Base-*.yaml``)."""

    iters: int = 1000
    batch_size: int = 1              # clips per micro-batch (num_masks is averaged over them, as official DDP)
    grad_accum: int = 1              # micro-batches per optimizer step
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_multiplier: float = 0.1
    warmup_iters: int = 10
    warmup_factor: float = 1.0
    steps: Optional[Tuple[int, ...]] = None   # LR *= gamma at these iterations; None: at 70% of iters
    gamma: float = 0.1
    clip_grad: float = 0.01          # full-model gradient L2 norm (0: off)
    amp: str = "auto"                # "auto" (CUDA: bf16 if capability >= 8.0 else fp16), "bf16", "fp16", "none"
    device: str = "auto"
    seed: int = 0
    log_every: int = 20
    ckpt_every: int = 500            # 0: only at the end
    keep_checkpoints: int = 2
    eval_every: int = 0              # 0: no periodic evaluation
    progress: bool = True
    # losses (official MASK_FORMER weights; reid_weight: loss_reid of TRACKER/REFINER.USE_CL, 0 = off)
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    reid_weight: float = 2.0
    num_points: int = 12544          # per frame; the refiner samples num_points * T on the flattened clip
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

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


# Official: OVIS online 40k iterations (noise ratio 0.5), 160k (ratio 0.8); 12544 points. The small presets keep
# the official recipe (weights, lr, schedule shape) and scale iterations and points to a few hundred clips.
PRESETS: Dict[str, Dict[str, Any]] = {
    "official": {"iters": 40000, "num_points": 12544, "warmup_iters": 10, "steps": (28000,)},
    "small": {"iters": 4000, "num_points": 3136, "warmup_iters": 10, "ckpt_every": 500},
    "tiny": {"iters": 1000, "num_points": 1024, "warmup_iters": 10, "ckpt_every": 250},
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """``TrainConfig`` of a preset (``official``, ``small`` (hundreds of clips), ``tiny`` (tens)) with overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return TrainConfig(**{**PRESETS[name], **overrides})
