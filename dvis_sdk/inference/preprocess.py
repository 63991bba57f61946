"""Deprecated (never documented): moved to :mod:`dvis_sdk.ops.preprocess`; this re-export keeps old imports working
and warns once, on import."""
from ..runtime import warn_moved_module

warn_moved_module("dvis_sdk.inference.preprocess", "dvis_sdk.ops.preprocess")
from ..ops.preprocess import *  # noqa: F401,F403
from ..ops.preprocess import __all__  # noqa: F401
