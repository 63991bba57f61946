"""Deprecated: the fast paths are per-model choices now. Use :func:`dvis_sdk.models.optimize.optimize` (was
``optimize_model``), :mod:`dvis_sdk.layers.impl` (the choices), :mod:`dvis_sdk.runtime` (``frames_to_device``,
``autocast_cast``) and :mod:`dvis_sdk.evaluation.agreement` (``compare_results``). This module only re-exports
them, with a DeprecationWarning; the process-wide switches (``set_fast_paths``, ``fast_paths``,
``reference_paths``, ``resolve``) are gone: pass the choices to ``optimize(model, ...)``."""
from __future__ import annotations

import warnings
from typing import Any

from .evaluation import agreement as _agreement
from .layers import impl as _impl
from .models import optimize as _optimize
from . import runtime as _runtime

_MOVED = {
    "optimize_model": (_optimize, "optimize"),
    "compile_module": (_optimize, "compile_module"),
    "DEFORM_ATTN_IMPLS": (_impl, "DEFORM_ATTN_IMPLS"),
    "FAST_PATHS": (_impl, "FAST_PATHS"),
    "REFERENCE_PATHS": (_impl, "REFERENCE_PATHS"),
    "frames_to_device": (_runtime, "frames_to_device"),
    "autocast_cast": (_runtime, "autocast_cast"),
    "compare_results": (_agreement, "compare_results"),
    "Agreement": (_agreement, "Agreement"),
}
_REMOVED = ("FastPaths", "get_fast_paths", "set_fast_paths", "fast_paths", "reference_paths", "resolve")

__all__ = list(_MOVED)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module, attr = _MOVED[name]
        warnings.warn(f"dvis_sdk.perf.{name} is deprecated; use {module.__name__}.{attr}", DeprecationWarning,
                      stacklevel=2)
        return getattr(module, attr)
    if name in _REMOVED:
        raise AttributeError(f"dvis_sdk.perf.{name} was removed: fast paths are per-model choices now; use "
                             "dvis_sdk.models.optimize.optimize(model, sdpa=..., deform_attn=...) or "
                             "optimize(model, **REFERENCE_PATHS)")
    raise AttributeError(f"module 'dvis_sdk.perf' has no attribute {name!r}")
