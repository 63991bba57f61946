"""Identity of a segmenter: a hash of what decides its per-frame outputs (weights + the config of the segmenter and
its input pre-processing). Caches of segmenter outputs are keyed by it, so that a cache folder reused after the
segmenter changed (another fine-tune, another model) is not silently read back."""
from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

__all__ = ["SEGMENTER_PARTS", "segmenter_fingerprint"]

# the modules that compute ``segment``'s outputs; the tracker / refiner read them and do not change them
SEGMENTER_PARTS = ("backbone", "pixel_decoder", "decoder")


def segmenter_fingerprint(model: nn.Module, length: int = 16) -> str:
    """Hex sha256 (first ``length`` characters) of the segmenter's parameters and buffers (names, dtypes, shapes,
    values) and of ``cfg.backbone`` / ``cfg.segmenter`` / ``cfg.input`` when the model has a ``cfg``."""
    h = hashlib.sha256()
    state = model.state_dict()
    names = sorted(k for k in state if k.split(".", 1)[0] in SEGMENTER_PARTS)
    if not names:
        raise ValueError(f"{type(model).__name__} has no segmenter parameters ({', '.join(SEGMENTER_PARTS)}) to hash")
    for k in names:
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        d = cfg.to_dict()
        h.update(json.dumps({k: d.get(k) for k in ("backbone", "segmenter", "input")}, sort_keys=True,
                            default=str).encode())
    return h.hexdigest()[:length]
