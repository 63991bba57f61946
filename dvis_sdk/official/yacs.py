"""yacs value decoding: official yaml strings such as ``"(28000,)"`` become python values."""
from __future__ import annotations

import ast
from typing import Any, Mapping


def decode_cfg_value(value: Any) -> Any:
    """Decode one yaml value the way yacs' ``CfgNode._decode_cfg_value`` does during ``merge_from_file``.

    Strings are passed through ``ast.literal_eval`` and kept as they are when that fails, so
    ``"(28000,)"`` -> ``(28000,)``, ``'("ovis_val",)'`` -> ``("ovis_val",)``, ``"1e-5"`` -> ``1e-05``
    (PyYAML reads a float without a dot as a string), while ``"vis"`` / ``"RGB"`` stay strings.
    Non-strings are returned unchanged. (yacs then coerces tuple <-> list to the default's type.)
    """
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def decode_cfg_tree(tree: Any) -> Any:
    """Apply :func:`decode_cfg_value` to every leaf of a nested dict (returns a new tree)."""
    if isinstance(tree, Mapping):
        return {k: decode_cfg_tree(v) for k, v in tree.items()}
    return decode_cfg_value(tree)
