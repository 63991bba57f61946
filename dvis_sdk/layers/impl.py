"""Per-module implementation choices (the "fast paths").

A module that can compute its function in more than one way lists the choices it owns in ``impl_choices``, takes
them as constructor arguments (the fast, parity-tested default) and changes them with :meth:`ImplChoices.set_impl`,
which touches that module only. Nothing here is global: two models in one process can run different paths.
:func:`dvis_sdk.models.optimize.optimize` applies choices to every module of one model.

Choices (defaults = :data:`FAST_PATHS`, the official computation = :data:`REFERENCE_PATHS`):

``sdpa``
    Attention calls ``F.scaled_dot_product_attention`` directly with the checkpoint's packed projection instead of
    going through ``nn.MultiheadAttention`` (same kernel for ``need_weights=False`` but without the per-head float
    mask and ~100 us of Python per call); also SDPA in the DINOv2 ViT blocks and one mask for all heads in the
    decoder.
``deform_attn``
    ``"fast"``: multi-scale deformable attention as ONE weighted gather over all levels, points and bilinear
    corners; ``"reference"``: the ``grid_sample`` loop over levels.
``fp32_sampling``
    Under autocast the deformable attention's sampling locations and weights are computed in fp32. No effect
    without autocast.
``pixel_decoder_fp32``
    The pixel decoder runs with autocast disabled, in fp32, as the official code does. No effect without autocast.
``stem_fp32``
    The backbone's first layer (ResNet stem, Swin / DINOv2 patch embedding, the ViT-Adapter's first spatial-prior
    convolution) runs with autocast disabled, in fp32. Rounding the normalised image to bf16 (8 mantissa bits:
    steps of up to 1/64 near |x| = 2, about one pixel level) is what costs bf16 most of its mask accuracy on the
    trained models; the first layer is a small share of the compute. No effect without autocast. The official code
    runs it under autocast (``False``).
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

DEFORM_ATTN_IMPLS = ("fast", "reference")

#: The default of every choice: the fast paths (each tested for agreement with the reference).
FAST_PATHS: Dict[str, Any] = {"sdpa": True, "deform_attn": "fast", "fp32_sampling": True, "pixel_decoder_fp32": True,
                               "stem_fp32": True}
#: Every choice on the official computation, for agreement checks.
REFERENCE_PATHS: Dict[str, Any] = {"sdpa": False, "deform_attn": "reference", "fp32_sampling": False,
                                   "pixel_decoder_fp32": True, "stem_fp32": False}


def check_choice(name: str, value: Any) -> Any:
    """``value`` if it is a valid value of choice ``name``, else a one-line error."""
    if name not in FAST_PATHS:
        raise ValueError(f"unknown fast-path choice {name!r}; expected one of {list(FAST_PATHS)}")
    if name == "deform_attn":
        if value not in DEFORM_ATTN_IMPLS:
            raise ValueError(f"deform_attn must be one of {DEFORM_ATTN_IMPLS}, got {value!r}")
    elif not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


class ImplChoices:
    """Mixin for modules with implementation choices; the choices are plain attributes named as the choice."""

    impl_choices: Tuple[str, ...] = ()

    def set_impl(self, **choices: Any) -> Any:
        """Set this module's choices (e.g. ``layer.set_impl(sdpa=False)``); returns the module."""
        for name, value in choices.items():
            if name not in self.impl_choices:
                raise ValueError(f"{type(self).__name__} has no implementation choice {name!r}; "
                                 f"it has {list(self.impl_choices)}")
            setattr(self, name, check_choice(name, value))
        return self

    def get_impl(self) -> Dict[str, Any]:
        """This module's current choices."""
        return {name: getattr(self, name) for name in self.impl_choices}
