"""Moved to :mod:`dvis_sdk.ops.postprocess`; this re-export keeps old imports working."""
from ..ops.postprocess import *  # noqa: F401,F403
from ..ops.postprocess import __all__  # noqa: F401
