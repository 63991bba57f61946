"""Switchable fast paths and :func:`optimize_model`.

Every fast path computes the same function as the reference (fp32) path and is tested for agreement with it
(``tests/test_perf.py``). Two kinds of switches exist:

* process-wide defaults, read at call time by the layers: :func:`get_fast_paths` / :func:`set_fast_paths` and
  the :func:`fast_paths` context manager (``with fast_paths(sdpa=False, deform_attn="reference"): ...``);
* per-model overrides set by :func:`optimize_model` on the modules of one model, which win over the defaults.

Switches (defaults are the fast, parity-tested choice):

``sdpa``
    Decoder / tracker / refiner attention calls ``F.scaled_dot_product_attention`` directly with the checkpoint's
    packed projection, instead of going through ``nn.MultiheadAttention`` (which reaches the same kernel for
    ``need_weights=False`` but first repeats the decoder's boolean mask per head and converts it to a float mask,
    and spends ~100 us of Python per call in the per-frame tracker). Also selects SDPA in the DINOv2 ViT blocks.
``deform_attn``
    ``"fast"``: multi-scale deformable attention as ONE weighted gather over all levels, points and bilinear
    corners (``F.embedding_bag`` with per-sample weights, zero-bordered value maps instead of validity masks),
    about 3x faster than the reference ``grid_sample`` loop on CPU. ``"reference"``: the loop over levels.
``fp32_sampling``
    Under autocast, the deformable attention's sampling offsets, attention weights and sampling locations are
    computed in fp32 (in bf16 a location inside a 50-pixel-wide map is only good to ~0.2 pixel). No effect
    without autocast.
``pixel_decoder_fp32``
    The pixel decoder runs with autocast disabled, in fp32, as the official code does (default). ``False`` (opt-in)
    lets its convolutions and linear layers run in the autocast dtype too; with ``fp32_sampling`` the deformable
    sampling stays fp32. No effect without autocast.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from torch import nn

__all__ = ["FastPaths", "get_fast_paths", "set_fast_paths", "fast_paths", "reference_paths", "resolve",
           "optimize_model", "compile_module", "frames_to_device", "autocast_cast", "compare_results", "Agreement", "DEFORM_ATTN_IMPLS"]

DEFORM_ATTN_IMPLS = ("fast", "reference")


@dataclass(frozen=True)
class FastPaths:
    """Process-wide fast-path defaults (see the module docstring)."""

    sdpa: bool = True
    deform_attn: str = "fast"
    fp32_sampling: bool = True
    pixel_decoder_fp32: bool = True

    def __post_init__(self) -> None:
        if self.deform_attn not in DEFORM_ATTN_IMPLS:
            raise ValueError(f"deform_attn must be one of {DEFORM_ATTN_IMPLS}, got {self.deform_attn!r}")
        for name in ("sdpa", "fp32_sampling", "pixel_decoder_fp32"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")


_current = FastPaths()
_FIELDS = tuple(f.name for f in dataclasses.fields(FastPaths))
# Attribute a module carries when optimize_model overrides a switch for it: {switch name: value}.
_OVERRIDE_ATTR = "_dvis_fast_paths"


def get_fast_paths() -> FastPaths:
    """The current process-wide defaults."""
    return _current


def set_fast_paths(**changes: Any) -> FastPaths:
    """Change process-wide defaults (e.g. ``set_fast_paths(deform_attn="reference")``); returns the previous ones."""
    global _current
    unknown = set(changes) - set(_FIELDS)
    if unknown:
        raise ValueError(f"unknown fast-path switch(es) {sorted(unknown)}; expected {list(_FIELDS)}")
    previous = _current
    _current = dataclasses.replace(_current, **changes)
    return previous


@contextlib.contextmanager
def fast_paths(**changes: Any) -> Iterator[FastPaths]:
    """Temporarily change process-wide defaults: ``with fast_paths(sdpa=False): ...``."""
    global _current
    previous = set_fast_paths(**changes)
    try:
        yield _current
    finally:
        _current = previous


def reference_paths() -> "contextlib.AbstractContextManager[FastPaths]":
    """Every switch on its reference (official-code) implementation, for agreement checks."""
    return fast_paths(sdpa=False, deform_attn="reference", fp32_sampling=False, pixel_decoder_fp32=True)


def resolve(module: Optional[nn.Module], name: str) -> Any:
    """The value of switch ``name`` for ``module``: its :func:`optimize_model` override, else the default."""
    if module is not None:
        override = module.__dict__.get(_OVERRIDE_ATTR)
        if override is not None and name in override:
            return override[name]
    return getattr(_current, name)


def _set_override(module: nn.Module, name: str, value: Any) -> None:
    override = dict(module.__dict__.get(_OVERRIDE_ATTR) or {})
    override[name] = value
    module.__dict__[_OVERRIDE_ATTR] = override


def autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` on every supported torch (the argument exists since 2.4)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def autocast_cast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the autocast dtype when autocast is on for its device and it is a float tensor autocast would cast
    (fp32), else ``x`` itself: for tensors that many autocast ops would otherwise each cast again."""
    device_type = x.device.type
    if x.dtype != torch.float32 or not autocast_enabled(device_type):
        return x
    getter = getattr(torch, "get_autocast_dtype", None)  # torch >= 2.4
    if getter is not None:
        dtype = getter(device_type)
    else:
        dtype = torch.get_autocast_gpu_dtype() if device_type == "cuda" else torch.get_autocast_cpu_dtype()
    return x.to(dtype)


def frames_to_device(frames: torch.Tensor, device: Union[str, torch.device]) -> torch.Tensor:
    """Host -> device copy of a window of frames. On CUDA the host tensor is pinned and copied with
    ``non_blocking=True``, so the copy overlaps with the GPU work already queued (the previous window) instead
    of waiting for it; elsewhere it is a plain ``.to(device)`` (no copy on CPU)."""
    device = torch.device(device)
    if device.type == "cuda" and frames.device.type == "cpu":
        if not frames.is_pinned():
            frames = frames.pin_memory()
        return frames.to(device, non_blocking=True)
    return frames.to(device)


# --------------------------------------------------------------------------------------------------------------
# torch.compile with an eager fallback
# --------------------------------------------------------------------------------------------------------------
def compile_module(module: nn.Module, method: str = "forward", **compile_kwargs: Any) -> nn.Module:
    """Replace ``module.<method>`` (on this instance only) by a ``torch.compile``-d version that falls back to
    eager, with one warning, the first time compilation or the compiled call fails. Parameters and state-dict
    keys are untouched (the module is not wrapped). Returns ``module``."""
    eager: Callable[..., Any] = getattr(module, method)
    if getattr(eager, "_dvis_compiled", False):
        return module
    try:
        compiled = torch.compile(eager, **compile_kwargs)
    except Exception as e:  # e.g. torch.compile unsupported on this Python / platform
        warnings.warn(f"torch.compile unavailable for {type(module).__name__}.{method} ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); running eager", RuntimeWarning, stacklevel=2)
        return module
    state = {"failed": False}

    @functools.wraps(eager)
    def run(*args: Any, **kwargs: Any) -> Any:
        if not state["failed"]:
            try:
                return compiled(*args, **kwargs)
            except Exception as e:
                state["failed"] = True
                msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                warnings.warn(f"torch.compile failed for {type(module).__name__}.{method} ({type(e).__name__}: "
                              f"{msg[:200]}); falling back to eager", RuntimeWarning, stacklevel=2)
        return eager(*args, **kwargs)

    run._dvis_compiled = True  # type: ignore[attr-defined]
    run._dvis_compile_state = state  # type: ignore[attr-defined]
    setattr(module, method, run)
    return module


# --------------------------------------------------------------------------------------------------------------
# optimize_model
# --------------------------------------------------------------------------------------------------------------
def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _channels_last_input_hook(module: nn.Module, args: tuple) -> tuple:
    return tuple(_to_channels_last(a) if isinstance(a, torch.Tensor) else a for a in args)


def _has_conv_backbone(model: nn.Module) -> bool:
    from .models.backbones.resnet import ResNet

    return isinstance(getattr(model, "backbone", model), ResNet)


def optimize_model(model: nn.Module, *, sdpa: Optional[bool] = None, deform_attn: Optional[str] = None,
                   fp32_sampling: Optional[bool] = None, pixel_decoder_fp32: Optional[bool] = None,
                   channels_last: Optional[bool] = None,
                   compile: bool = False, compile_targets: Sequence[str] = ("backbone", "pixel_decoder", "decoder"),
                   compile_kwargs: Optional[dict] = None) -> nn.Module:
    """Switch ``model``'s fast paths in place and return it (works on a whole DVIS model or any sub-module).

    Args:
        sdpa, deform_attn, fp32_sampling, pixel_decoder_fp32: per-model overrides of the process-wide switches
            (None: follow them; see the module docstring).
        channels_last: convert the backbone's convolutions to channels-last memory format and feed it
            channels-last input. None (default): on for ResNet backbones (oneDNN's and the tensor cores'
            native layout: measured 1.04x single-threaded and up to 1.3x with 2 threads on this project's CPU),
            off otherwise (the transformer backbones have a single stem conv). ``state_dict`` values are the same numbers; hub saving makes them contiguous.
        compile: ``torch.compile`` the ``compile_targets`` sub-modules (``forward``; ``forward_features`` for the
            pixel decoder), each falling back to eager with one warning if compilation fails. Opt-in: the first
            call of every new input shape pays the compilation (tens of seconds to minutes).
        compile_kwargs: passed to ``torch.compile`` (e.g. ``{"mode": "max-autotune"}``).
    """
    if deform_attn is not None and deform_attn not in DEFORM_ATTN_IMPLS:
        raise ValueError(f"deform_attn must be one of {DEFORM_ATTN_IMPLS}, got {deform_attn!r}")
    from .layers.attention import CrossAttentionLayer, ReferringCrossAttentionLayer, SelfAttentionLayer
    from .layers.ms_deform_attn import MSDeformAttn
    from .models.backbones.dinov2 import Attention as ViTAttention
    from .models.decoder import VideoMaskedAttentionDecoder
    from .models.pixel_decoder import MSDeformAttnPixelDecoder

    sdpa_types = (SelfAttentionLayer, CrossAttentionLayer, ReferringCrossAttentionLayer, ViTAttention,
                  VideoMaskedAttentionDecoder)
    for m in model.modules():
        if sdpa is not None and isinstance(m, sdpa_types):
            _set_override(m, "sdpa", bool(sdpa))
        if pixel_decoder_fp32 is not None and isinstance(m, MSDeformAttnPixelDecoder):
            _set_override(m, "pixel_decoder_fp32", bool(pixel_decoder_fp32))
        if isinstance(m, MSDeformAttn):
            if deform_attn is not None:
                _set_override(m, "deform_attn", deform_attn)
            if fp32_sampling is not None:
                _set_override(m, "fp32_sampling", bool(fp32_sampling))

    if channels_last is None:
        channels_last = _has_conv_backbone(model)
    # Only the backbone: its channels-last outputs already steer the pixel decoder's convolutions to the
    # channels-last kernels; converting the pixel decoder's own weights measured no faster.
    target = getattr(model, "backbone", model)
    handle = target.__dict__.get("_dvis_channels_last_hook")
    if channels_last:
        target.to(memory_format=torch.channels_last)
        if handle is None:
            target.__dict__["_dvis_channels_last_hook"] = target.register_forward_pre_hook(_channels_last_input_hook)
    elif handle is not None:
        target.to(memory_format=torch.contiguous_format)
        handle.remove()
        del target.__dict__["_dvis_channels_last_hook"]

    if compile:
        for name in compile_targets:
            sub = getattr(model, name, None)
            if sub is None:
                continue
            compile_module(sub, "forward_features" if hasattr(sub, "forward_features") else "forward",
                           **(compile_kwargs or {}))
    return model


# --------------------------------------------------------------------------------------------------------------
# agreement of two results (fast / half precision vs the fp32 reference)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Agreement:
    """How far a result is from a reference result of the same video (instances keyed by (query, label)).

    ``mean_iou``: mean over the reference's instances of the mask IoU with the same (query, label) instance
    (0 where it is missing); ``min_iou``: the worst of them; ``matched``: how many reference instances are
    present; ``same_top``: whether the ``top`` best-scoring instances are the same set; ``max_score_diff``:
    largest score difference over matched instances.
    """

    mean_iou: float
    min_iou: float
    matched: int
    total: int
    same_top: bool
    max_score_diff: float


def compare_results(reference: Any, other: Any, top: int = 5) -> Agreement:
    """Compare two ``VISOutput``-like results (``scores``, ``labels``, ``ids``, ``masks`` (K, T, H, W))."""
    import numpy as np

    def keys(r: Any) -> list:
        return [(int(i), int(lab)) for i, lab in zip(r.ids, r.labels)]

    def arr(m: Any) -> "np.ndarray":
        return m.detach().cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)

    ref_keys, oth_keys = keys(reference), keys(other)
    oth_index = {k: i for i, k in enumerate(oth_keys)}
    ious, diffs = [], []
    for i, k in enumerate(ref_keys):
        j = oth_index.get(k)
        if j is None:
            ious.append(0.0)
            continue
        a, b = arr(reference.masks[i]).astype(bool), arr(other.masks[j]).astype(bool)
        union = np.logical_or(a, b).sum()
        ious.append(1.0 if union == 0 else float(np.logical_and(a, b).sum() / union))
        diffs.append(abs(float(reference.scores[i]) - float(other.scores[j])))

    def top_set(r: Any, ks: list) -> set:
        order = np.argsort(-arr(r.scores).astype(np.float64), kind="stable")[:top]
        return {ks[i] for i in order}

    return Agreement(mean_iou=float(np.mean(ious)) if ious else 1.0, min_iou=float(min(ious)) if ious else 1.0,
                     matched=len(diffs), total=len(ref_keys),
                     same_top=top_set(reference, ref_keys) == top_set(other, oth_keys),
                     max_score_diff=max(diffs) if diffs else 0.0)
