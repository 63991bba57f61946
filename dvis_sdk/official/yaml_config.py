"""Reading official yaml configs: shipped-config lookup, ``_BASE_`` chains, yacs decoding, official defaults."""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Mapping, Optional, Union

from .defaults import DEFAULTS_BY_FAMILY, META_ARCHS
from .errors import ConversionError
from .merge import deep_merge
from .yacs import decode_cfg_tree

# the official yamls ship as package data in dvis_sdk/configs/official (see pyproject's package-data)
OFFICIAL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "official"


def _shipped_configs() -> list:
    return sorted(OFFICIAL_CONFIG_DIR.rglob("*.yaml")) if OFFICIAL_CONFIG_DIR.is_dir() else []


def find_official_yaml(name: Union[str, Path]) -> Path:
    """Resolve an official yaml: an existing path, or a (suffix of a) path inside the shipped official configs.

    ``"ovis/DVIS_Plus_Offline_R50.yaml"`` or ``"DVIS_Online_SwinL.yaml"`` work when unambiguous, and so do the
    official repo's paths (``"DVIS_DAQ/configs/dvis_daq/ovis/DAQ_Online_R50.yaml"``) when no such file exists here.
    """
    p = Path(name).expanduser()
    if p.is_file():
        return p
    want = Path(str(name).replace("\\", "/")).parts
    if "configs" in want:  # a path of the official repo (e.g. DVIS_DAQ/configs/dvis_daq/...): match below configs/
        want = want[len(want) - want[::-1].index("configs"):]
    candidates = [c for c in _shipped_configs() if c.parts[-len(want):] == want]
    if len(candidates) == 1:
        return candidates[0]
    rel = [str(c.relative_to(OFFICIAL_CONFIG_DIR)) for c in candidates]
    if len(candidates) > 1:
        raise FileNotFoundError(f"official config {str(name)!r} is ambiguous; candidates: {rel}. "
                                "Give a longer path, e.g. one of these.")
    names = [str(c.relative_to(OFFICIAL_CONFIG_DIR)) for c in _shipped_configs()]
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.3)
    hint = f" Did you mean: {close}?" if close else ""
    raise FileNotFoundError(f"official config {str(name)!r} not found (not a file, not a shipped config).{hint}")


def _read_yaml_chain(path: Path, _seen: Optional[set] = None) -> dict:
    import yaml

    _seen = set() if _seen is None else _seen
    path = path.resolve()
    if path in _seen:
        raise ConversionError(f"_BASE_ cycle at {path}")
    _seen.add(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConversionError(f"cannot parse yaml {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} does not hold a yaml mapping")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not base_path.is_file():
        raise ConversionError(f"{path}: _BASE_ {base!r} not found at {base_path}")
    tree = _read_yaml_chain(base_path, _seen)
    return deep_merge(tree, data)


def official_cfg_tree(cfg: Union[str, Path, Mapping]) -> dict:
    """The official cfg as a nested dict: yaml chain (or given dict) merged over the official defaults."""
    if isinstance(cfg, Mapping):
        tree = copy.deepcopy(dict(cfg))
        if "_BASE_" in tree:
            raise ConversionError("a config dict cannot use _BASE_; pass the yaml path instead")
    else:
        tree = _read_yaml_chain(find_official_yaml(cfg))
    # yacs literal-evaluates yaml strings on merge: '("ovis_val",)' is a tuple, "1e-5" a float
    tree = decode_cfg_tree(tree)
    arch = tree.get("MODEL", {}).get("META_ARCHITECTURE", "")
    family = META_ARCHS.get(arch, ("dvis++", None))[0]
    decoder = tree.get("MODEL", {}).get("MASK_FORMER", {}).get("TRANSFORMER_DECODER_NAME", "")
    if arch == "MinVIS" and str(decoder).endswith("_dvisPlus"):  # that decoder exists only in the DVIS++ code
        family = "dvis++"
    return deep_merge(DEFAULTS_BY_FAMILY[family], tree)


