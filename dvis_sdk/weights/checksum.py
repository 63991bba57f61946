"""sha256 of weight files and the check against a pinned digest."""
from __future__ import annotations

import hashlib
import os
from typing import Optional, Union

from .errors import ChecksumError

PathLike = Union[str, os.PathLike]


def sha256_file(path: PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: PathLike, expected: Optional[str]) -> str:
    """The file's sha256; :class:`ChecksumError` if ``expected`` is given and differs."""
    actual = sha256_file(path)
    if expected and actual != expected:
        raise ChecksumError(path, expected, actual)
    return actual
