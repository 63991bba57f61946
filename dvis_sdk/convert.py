"""Official DVIS / DVIS++ configs and checkpoints -> :class:`DVISConfig` and a state dict for our modules.

The code lives in :mod:`dvis_sdk.official`; this module keeps the documented names importable from
``dvis_sdk.convert`` (``load_official_config``, ``convert_official_state_dict``, ``load_official_checkpoint``, ...).
"""
from .official import (  # noqa: F401
    CONSTANT_KEYS, KEY_PREFIXES, OFFICIAL_CONFIG_DIR, TRAINING_ONLY_PREFIXES, ConversionError, UnsafePickleError,
    convert_official_state_dict, find_official_yaml, load_official_checkpoint, load_official_config,
    official_cfg_tree,
)

__all__ = [
    "CONSTANT_KEYS", "ConversionError", "KEY_PREFIXES", "OFFICIAL_CONFIG_DIR", "TRAINING_ONLY_PREFIXES",
    "UnsafePickleError", "convert_official_state_dict", "find_official_yaml", "load_official_checkpoint",
    "load_official_config", "official_cfg_tree",
]
