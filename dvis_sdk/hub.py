"""Deprecated location: weights moved to :mod:`dvis_sdk.weights`; this re-export keeps old imports working.

``_write_pretrained`` / ``_tensors_for_saving`` are kept for callers of the old private names; use
:func:`dvis_sdk.weights.write_pretrained` / :func:`dvis_sdk.weights.tensors_for_saving`.
"""
from .weights import *  # noqa: F401,F403
from .weights import __all__  # noqa: F401
from .weights.pretrained import tensors_for_saving as _tensors_for_saving  # noqa: F401
from .weights.pretrained import write_pretrained as _write_pretrained  # noqa: F401
