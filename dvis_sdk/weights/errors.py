"""Errors of weight resolution: every message is one line that names the problem and the fix."""
from __future__ import annotations

import os
from typing import Sequence, Union


class UnknownModelError(KeyError):
    """A model name that is not in the manifest; the message lists close names."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()):
        super().__init__(message)
        self.message = message
        self.suggestions = list(suggestions)

    def __str__(self) -> str:  # KeyError would print the repr (quoted) otherwise
        return self.message


class WeightsUnavailableError(RuntimeError):
    """Weights that cannot be obtained here (offline without a cached copy, or not on the Hub at all).

    The message is one line that says how to use local weights instead.
    """


class ChecksumError(ValueError):
    """A downloaded / given file whose sha256 is not the one the manifest records (the file is not used)."""

    def __init__(self, file: Union[str, os.PathLike], expected: str, actual: str):
        self.file, self.expected, self.actual = str(file), expected, actual
        super().__init__(f"sha256 mismatch for {file}: expected {expected}, got {actual}. The file is corrupted or "
                         "was changed upstream; delete it from the cache and retry, or pin another revision.")


class PretrainedFormatError(ValueError):
    """A ``save_pretrained`` folder whose ``config.json`` or ``model.safetensors`` cannot be read."""
