"""The one nested-dict merge used for official default tables and ``_BASE_`` yaml chains."""
from __future__ import annotations

import copy
from typing import Any, Dict, Mapping


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """A new dict: ``base`` with ``over`` merged in recursively (``over`` wins; neither input is changed)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
