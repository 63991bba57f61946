"""Moved to :mod:`dvis_sdk.ops.preprocess`; this re-export keeps old imports working."""
from ..ops.preprocess import *  # noqa: F401,F403
from ..ops.preprocess import __all__  # noqa: F401
