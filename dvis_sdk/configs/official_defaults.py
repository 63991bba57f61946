"""Deprecated location (never documented): the official default tables moved to :mod:`dvis_sdk.official`
(``defaults``, ``vit_presets``, ``yacs``); this re-export keeps old imports working and warns once, on import."""
from ..runtime import warn_moved_module

warn_moved_module("dvis_sdk.configs.official_defaults", "dvis_sdk.official")
from ..official.defaults import OFFICIAL_DEFAULTS, OFFICIAL_DEFAULTS_DVIS, official_defaults  # noqa: F401
from ..official.vit_presets import DINOV2_VIT_ARCHS, DINOV2_VIT_COMMON_KWARGS, VIT_ADAPTER_PRESETS  # noqa: F401
from ..official.yacs import decode_cfg_tree, decode_cfg_value  # noqa: F401

__all__ = [
    "OFFICIAL_DEFAULTS", "OFFICIAL_DEFAULTS_DVIS", "VIT_ADAPTER_PRESETS", "DINOV2_VIT_ARCHS",
    "DINOV2_VIT_COMMON_KWARGS", "official_defaults", "decode_cfg_value", "decode_cfg_tree",
]
