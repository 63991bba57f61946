"""Hugging Face Hub download of one exact, pinned file (``huggingface_hub`` is imported only when used).

No repository listing and no search: a pinned revision + exact file name is served from the local HF cache when
present (so a populated cache works offline), else downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

from .errors import WeightsUnavailableError

PathLike = Union[str, Path]
_TRANSPORT_ERRORS = {"ConnectError", "ConnectTimeout", "NetworkError", "TransportError", "TimeoutException"}
_NOT_FOUND_ERRORS = {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
                     "RemoteEntryNotFoundError", "GatedRepoError"}


def is_offline(local_files_only: Optional[bool]) -> bool:
    """``local_files_only`` if given, else whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set."""
    if local_files_only is not None:
        return bool(local_files_only)
    # read the environment now: huggingface_hub.constants reads it once, at its import
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return env.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _names(e: BaseException) -> set:
    return {c.__name__ for c in type(e).__mro__}


def is_network_error(e: BaseException) -> bool:
    """No network / offline mode (as opposed to 'the repo or file does not exist')."""
    names = _names(e)
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or isinstance(e, (ConnectionError, TimeoutError)):
        return True
    if names & _NOT_FOUND_ERRORS:
        return False
    # huggingface_hub 1.x/2.x raise their HTTP client's transport errors (httpx, or the vendored "httpx2")
    if names & _TRANSPORT_ERRORS:
        return True
    return type(e).__module__.split(".")[0] in {"requests", "httpx", "httpx2", "httpcore", "urllib3", "socket"}


def hub_cache_root(cache_dir: Optional[PathLike]) -> Path:
    """The Hugging Face cache folder in use (``cache_dir`` or the HF default)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def download(repo_id: str, filename: str, *, revision: str, cache_dir: Optional[PathLike], token: Any,
             offline: bool, what: str, hint: str) -> Path:
    """The local path of ``repo_id/filename@revision`` (from the HF cache, or downloaded into it).

    Raises:
        WeightsUnavailableError: offline / no network without a cached copy, or no such repo / revision / file
            (one line, ending with ``hint``: how to use local weights instead).
    """
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                                    local_files_only=offline))
    except Exception as e:  # noqa: BLE001 - translated to one of our errors
        if is_network_error(e):
            raise WeightsUnavailableError(
                f"{what} ({repo_id}/{filename}@{revision}) is not in the local cache and the Hugging Face Hub "
                f"cannot be reached (offline); use local weights instead: {hint}") from None
        if _names(e) & _NOT_FOUND_ERRORS:
            raise WeightsUnavailableError(f"{what}: {repo_id}/{filename}@{revision} not found on the Hub "
                                          f"({type(e).__name__}; private repos need token=...)") from None
        raise
