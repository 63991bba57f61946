"""What counts as running out of memory: :func:`is_oom`, shared by the inference back-off
(:mod:`dvis_sdk.inference.runner`) and the ``torch.compile`` fallback (:mod:`dvis_sdk.models.optimize`)."""
from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["is_oom", "InferenceOOMError", "free_memory"]

OOM_TYPES: Tuple[type, ...] = tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
                                     torch.cuda.OutOfMemoryError, MemoryError})

# CUDA libraries report a failed allocation as a RuntimeError of their own (cuBLAS when it creates a handle or
# its workspace, cuDNN / cuFFT / cuSOLVER / cuSPARSE likewise); the caching allocator and the CPU allocator in
# words. Matched lower-case.
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed",
                 "cufft_alloc_failed", "cusolver_status_alloc_failed", "cusparse_status_alloc_failed")


def is_oom(e: BaseException) -> bool:
    """True for CUDA / host out-of-memory errors, whatever type torch or a CUDA library raises them as."""
    if isinstance(e, OOM_TYPES):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and any(m in msg for m in _OOM_MESSAGES)


class InferenceOOMError(RuntimeError):
    """Out of memory even with the smallest window (or mask chunk). ``partial`` holds the result of the frames done
    before, when the caller could build one (``VideoSegmenter.predict`` does)."""

    def __init__(self, message: str, frames_done: int = 0):
        super().__init__(message)
        self.frames_done = frames_done
        self.partial = None


def free_memory(device: torch.device) -> None:
    """Hand cached blocks back after an out-of-memory error, so that the retry with less work can use them."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
