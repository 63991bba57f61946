"""The official DVIS / DVIS++ world, read without detectron2: default cfg tables, yaml reading, key maps and
checkpoint reading.

Layout (one direction: tables -> yaml -> config; key maps and checkpoints stand alone):
``merge`` (the one nested-dict merge), ``defaults_detectron2`` + ``defaults`` (per-family default tables and the
META_ARCHITECTURE -> family table), ``vit_presets``, ``yacs`` (value decoding), ``yaml_config`` (``_BASE_``
chains, shipped yamls), ``config`` (:func:`load_official_config`), ``keymap`` (:func:`convert_official_state_dict`),
``safe_pickle`` + ``checkpoint`` (:func:`load_official_checkpoint`).

Adding a family (as DVIS-DAQ was; ``daq`` reads its MODEL.VIDEO_HEAD): its default table in
``defaults.DEFAULTS_BY_FAMILY``, its META_ARCHITECTURE names in ``defaults.META_ARCHS``, and any extra key
prefixes in ``keymap.KEY_PREFIXES`` / ``keymap.TRAINING_ONLY_PREFIXES``.
"""
from .checkpoint import load_official_checkpoint
from .config import load_official_config
from .defaults import (
    DEFAULTS_BY_FAMILY,
    META_ARCHS,
    OFFICIAL_DEFAULTS,
    OFFICIAL_DEFAULTS_DAQ,
    OFFICIAL_DEFAULTS_DVIS,
    official_defaults,
)
from .errors import ConversionError
from .keymap import CONSTANT_KEYS, KEY_PREFIXES, TRAINING_ONLY_PREFIXES, convert_official_state_dict
from .merge import deep_merge
from .safe_pickle import UnsafePickleError
from .vit_presets import DINOV2_VIT_ARCHS, DINOV2_VIT_COMMON_KWARGS, VIT_ADAPTER_PRESETS
from .yacs import decode_cfg_tree, decode_cfg_value
from .yaml_config import OFFICIAL_CONFIG_DIR, find_official_yaml, official_cfg_tree

__all__ = [
    "CONSTANT_KEYS", "ConversionError", "DEFAULTS_BY_FAMILY", "DINOV2_VIT_ARCHS", "DINOV2_VIT_COMMON_KWARGS",
    "KEY_PREFIXES", "META_ARCHS", "OFFICIAL_CONFIG_DIR", "OFFICIAL_DEFAULTS", "OFFICIAL_DEFAULTS_DAQ",
    "OFFICIAL_DEFAULTS_DVIS",
    "TRAINING_ONLY_PREFIXES", "UnsafePickleError", "VIT_ADAPTER_PRESETS", "convert_official_state_dict",
    "decode_cfg_tree", "decode_cfg_value", "deep_merge", "find_official_yaml", "load_official_checkpoint",
    "load_official_config", "official_cfg_tree", "official_defaults",
]
