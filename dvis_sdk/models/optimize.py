"""Apply fast-path choices, channels-last and ``torch.compile`` to ONE model: :func:`optimize`.

Every module that can compute its function in more than one way owns its choice (:mod:`dvis_sdk.layers.impl`);
:func:`optimize` walks one model and sets them, so nothing else in the process changes. It works in place and
returns the model; :class:`dvis_sdk.VideoSegmenter` applies it to its own copy, never to a model it was given.
"""
from __future__ import annotations

import copy
import functools
import warnings
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ..layers.impl import DEFORM_ATTN_IMPLS, FAST_PATHS, REFERENCE_PATHS, ImplChoices, check_choice
from ..oom import is_oom
from .backbones.resnet import ResNet

__all__ = ["optimize", "compile_module", "copy_model", "FAST_PATHS", "REFERENCE_PATHS", "DEFORM_ATTN_IMPLS",
           "impl_choices"]

# where optimize keeps the channels-last input hook of the module it converted (so a second call can undo it)
_CHANNELS_LAST_HOOK = "_dvis_channels_last_hook"


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
                if is_oom(e):
                    # not a compilation problem: the caller's out-of-memory back-off retries with less work, and
                    # the compiled path must stay on for the calls that fit
                    raise
                state["failed"] = True
                msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
                warnings.warn(f"torch.compile failed for {type(module).__name__}.{method} ({type(e).__name__}: "
                              f"{msg[:200]}); falling back to eager", RuntimeWarning, stacklevel=2)
        return eager(*args, **kwargs)

    run._dvis_compiled = True  # type: ignore[attr-defined]
    run._dvis_compile_state = state  # type: ignore[attr-defined]
    setattr(module, method, run)
    return module


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` for a caller that must not touch the original. :func:`compile_module` wrappers
    are dropped from the copy (they would still run the ORIGINAL module's method): the copy runs eager until it
    is optimized with ``compile=True`` itself."""
    copied = copy.deepcopy(model)
    for m in copied.modules():
        for name, value in list(vars(m).items()):
            if getattr(value, "_dvis_compiled", False):
                del m.__dict__[name]
    return copied


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _channels_last_input_hook(module: nn.Module, args: tuple) -> tuple:
    return tuple(_to_channels_last(a) if isinstance(a, torch.Tensor) else a for a in args)


def impl_choices(model: nn.Module) -> dict:
    """``{module name: its choices}`` for every module of ``model`` that has implementation choices."""
    return {name: m.get_impl() for name, m in model.named_modules() if isinstance(m, ImplChoices)}


def optimize(model: nn.Module, *, sdpa: Optional[bool] = True, deform_attn: Optional[str] = "fast",
             fp32_sampling: Optional[bool] = True, pixel_decoder_fp32: Optional[bool] = True,
             stem_fp32: Optional[bool] = True, channels_last: Optional[bool] = None, compile: bool = False,
             compile_targets: Sequence[str] = ("backbone", "pixel_decoder", "decoder"),
             compile_kwargs: Optional[dict] = None) -> nn.Module:
    """Set ``model``'s fast paths in place and return it (a whole DVIS model or any sub-module); only this model
    changes.

    Args:
        sdpa, deform_attn, fp32_sampling, pixel_decoder_fp32, stem_fp32: the choices of :mod:`dvis_sdk.layers.impl`,
            set on every module that owns them (defaults: the fast paths; ``None`` leaves a choice as it is).
            ``optimize(model, **REFERENCE_PATHS)`` puts every choice on the official computation.
        channels_last: convert the backbone's convolutions to channels-last memory format and feed it
            channels-last input. None (default): on for ResNet backbones (oneDNN's and the tensor cores'
            native layout: measured 1.04x single-threaded and up to 1.3x with 2 threads on this project's CPU),
            off otherwise. ``state_dict`` values are the same numbers; saving makes them contiguous.
        compile: ``torch.compile`` the ``compile_targets`` sub-modules (``forward``; ``forward_features`` for the
            pixel decoder), each falling back to eager with one warning if compilation fails. Opt-in: the first
            call of every new input shape pays the compilation (tens of seconds to minutes).
        compile_kwargs: passed to ``torch.compile`` (e.g. ``{"mode": "max-autotune"}``).
    """
    choices = {k: v for k, v in dict(sdpa=sdpa, deform_attn=deform_attn, fp32_sampling=fp32_sampling,
                                     pixel_decoder_fp32=pixel_decoder_fp32, stem_fp32=stem_fp32).items()
               if v is not None}
    for name, value in choices.items():
        check_choice(name, value)
    for m in model.modules():
        if isinstance(m, ImplChoices):
            m.set_impl(**{k: v for k, v in choices.items() if k in m.impl_choices})

    target = getattr(model, "backbone", model)
    if channels_last is None:
        channels_last = isinstance(target, ResNet)
    # Only the backbone: its channels-last outputs already steer the pixel decoder's convolutions to the
    # channels-last kernels; converting the pixel decoder's own weights measured no faster.
    handle = target.__dict__.get(_CHANNELS_LAST_HOOK)
    if channels_last:
        target.to(memory_format=torch.channels_last)
        if handle is None:
            target.__dict__[_CHANNELS_LAST_HOOK] = target.register_forward_pre_hook(_channels_last_input_hook)
    elif handle is not None:
        target.to(memory_format=torch.contiguous_format)
        handle.remove()
        del target.__dict__[_CHANNELS_LAST_HOOK]

    if compile:
        for name in compile_targets:
            sub = getattr(model, name, None)
            if sub is None:
                continue
            compile_module(sub, "forward_features" if hasattr(sub, "forward_features") else "forward",
                           **(compile_kwargs or {}))
    return model


