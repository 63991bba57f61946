"""Deprecated (never documented): moved to :mod:`dvis_sdk.ops.postprocess`; this re-export keeps old imports working
and warns once, on import."""
from ..runtime import warn_moved_module

warn_moved_module("dvis_sdk.inference.postprocess", "dvis_sdk.ops.postprocess")
from ..ops.postprocess import *  # noqa: F401,F403
from ..ops.postprocess import __all__  # noqa: F401
