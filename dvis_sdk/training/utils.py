"""Training helpers: trainable batch norm for from-scratch backbones, parameter groups, padding, RNG state."""
from __future__ import annotations

import random
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.backbones.resnet import FrozenBatchNorm2d
from ..ops.preprocess import pad_clips  # noqa: F401 - re-exported: the one normalise-and-pad

__all__ = ["unfreeze_batchnorm", "freeze_batchnorm", "export_state_dict", "param_groups", "pad_clips",
           "get_rng_state", "set_rng_state"]


def _swap(module: nn.Module, cond, make) -> int:
    n = 0
    for name, child in list(module.named_children()):
        if cond(child):
            setattr(module, name, make(child))
            n += 1
        else:
            n += _swap(child, cond, make)
    return n


def unfreeze_batchnorm(module: nn.Module) -> int:
    """Replace every ``FrozenBatchNorm2d`` by a trainable ``BatchNorm2d`` holding the same statistics and affine
    parameters (training a backbone from scratch needs real batch norm). Returns how many were replaced."""
    def make(fb: FrozenBatchNorm2d) -> nn.BatchNorm2d:
        bn = nn.BatchNorm2d(fb.num_features, eps=fb.eps).to(fb.weight.device)
        with torch.no_grad():
            bn.weight.copy_(fb.weight)
            bn.bias.copy_(fb.bias)
            bn.running_mean.copy_(fb.running_mean)
            bn.running_var.copy_(fb.running_var)
        return bn
    return _swap(module, lambda m: isinstance(m, FrozenBatchNorm2d), make)


def freeze_batchnorm(module: nn.Module) -> int:
    """Inverse of :func:`unfreeze_batchnorm`: every ``BatchNorm2d`` becomes a ``FrozenBatchNorm2d`` computing exactly
    what the batch norm computes in eval mode. Returns how many were replaced."""
    def make(bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        fb = FrozenBatchNorm2d(bn.num_features, eps=bn.eps).to(bn.weight.device)
        with torch.no_grad():
            fb.weight.copy_(bn.weight)
            fb.bias.copy_(bn.bias)
            fb.running_mean.copy_(bn.running_mean)
            fb.running_var.copy_(bn.running_var)
        return fb
    return _swap(module, lambda m: isinstance(m, nn.BatchNorm2d), make)


def export_state_dict(model: nn.Module) -> Dict[str, Tensor]:
    """The model's state dict in the inference layout (trainable batch norms folded back into FrozenBN)."""
    import copy

    if not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    clone = copy.deepcopy(model)
    freeze_batchnorm(clone)
    return {k: v.detach() for k, v in clone.state_dict().items()}


_NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.SyncBatchNorm, nn.InstanceNorm2d)


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_multiplier: float = 0.1,
                 weight_decay_norm: float = 0.0, weight_decay_embed: float = 0.0) -> List[Dict[str, Any]]:
    """AdamW parameter groups as Mask2Former builds them: no decay on norms and embeddings, the backbone at
    ``backbone_multiplier * lr``. Only parameters with ``requires_grad``."""
    groups: Dict[Tuple[float, float], List[nn.Parameter]] = {}
    seen = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            p_lr, p_wd = lr, weight_decay
            if mod_name.startswith("backbone") or ".backbone" in mod_name:
                p_lr = lr * backbone_multiplier
            if isinstance(module, _NORM_TYPES):
                p_wd = weight_decay_norm
            elif isinstance(module, nn.Embedding) or "relative_position_bias_table" in p_name or \
                    "absolute_pos_embed" in p_name or p_name in ("level_embed", "query_embed", "query_feat"):
                p_wd = weight_decay_embed
            groups.setdefault((p_lr, p_wd), []).append(p)
    return [{"params": ps, "lr": lr_, "initial_lr": lr_, "weight_decay": wd} for (lr_, wd), ps in groups.items()]


def pad_masks(masks: Tensor, size: Tuple[int, int]) -> Tensor:
    """(..., h, w) masks zero-padded bottom/right to ``size``."""
    h, w = masks.shape[-2:]
    return F.pad(masks, (0, size[1] - w, 0, size[0] - h))


def get_rng_state() -> Dict[str, Any]:
    """Every global RNG's state (torch CPU / CUDA, numpy, python), for exact resume."""
    state: Dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": _np_state_to_tensor(),
                             "python": _py_state_to_tensor()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        np.random.set_state(_tensor_to_np_state(state["numpy"]))
    if "python" in state:
        random.setstate(_tensor_to_py_state(state["python"]))


# RNG states as tensors, so that checkpoints load with torch.load(weights_only=True)
def _np_state_to_tensor() -> Tensor:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return torch.cat([torch.from_numpy(keys.astype(np.int64)),
                      torch.tensor([pos, has_gauss], dtype=torch.int64),
                      torch.tensor([cached], dtype=torch.float64).view(torch.int64)])


def _tensor_to_np_state(t: Tensor) -> tuple:
    t = t.to(torch.int64)
    keys = t[:624].numpy().astype(np.uint32)
    pos, has_gauss = int(t[624]), int(t[625])
    cached = float(t[626:627].view(torch.float64))
    return ("MT19937", keys, pos, has_gauss, cached)


def _py_state_to_tensor() -> Tensor:
    version, internal, gauss = random.getstate()
    return torch.tensor([version, *internal, 0 if gauss is None else 1], dtype=torch.int64)


def _tensor_to_py_state(t: Tensor) -> tuple:
    vals = t.tolist()
    return (vals[0], tuple(vals[1:-1]), None)
