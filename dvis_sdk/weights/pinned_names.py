"""Exact file names of manifest entries whose name is not published, resolved ONCE at the pinned commit.

Some released files are known only by the pattern of their name (the DVIS++ VIPSeg / VSPW checkpoints:
``DVIS++/weights/{online|offline}_{r50|vitl}_{vipseg|vspw}_<metric x 10>.pth``, the metric not confirmed). Their
manifest entry gives ``filename_glob`` instead of ``filename``, with a pinned 40-hex ``revision``. The first use
lists the repository AT THAT COMMIT (a commit never changes, so the answer is deterministic), requires exactly
one match, and records it in the Hugging Face cache folder:
``<hf cache>/dvis_sdk/resolved/<owner>--<name>@<commit>.json`` = ``{glob: {"filename", "sha256"}}``; the sha256
is added after the first download and verified on every later use (the file is pinned from then on). Offline,
a populated cache (the snapshot folder of that commit) is listed instead of the Hub.
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any, List, Optional

from ..runtime import atomic_write_text
from .download import hub_cache_root, is_network_error
from .errors import WeightsUnavailableError

__all__ = ["record_path", "resolve_filename", "record_sha256", "recorded"]


def record_path(cache_dir: Optional[Any], repo_id: str, revision: str) -> Path:
    return hub_cache_root(cache_dir) / "dvis_sdk" / "resolved" / f"{repo_id.replace('/', '--')}@{revision}.json"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def recorded(cache_dir: Optional[Any], repo_id: str, revision: str, glob: str) -> Optional[dict]:
    """The record of ``glob`` at ``revision`` ({"filename", "sha256"}), or None."""
    return _read(record_path(cache_dir, repo_id, revision)).get(glob)


def _list_snapshot(cache_dir: Optional[Any], repo_id: str, revision: str) -> Optional[List[str]]:
    snap = hub_cache_root(cache_dir) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
    if not snap.is_dir():
        return None
    return sorted(str(p.relative_to(snap)).replace("\\", "/") for p in snap.rglob("*") if p.is_file() or p.is_symlink())


def _list_hub(repo_id: str, revision: str, token: Any) -> List[str]:
    from huggingface_hub import HfApi

    return list(HfApi().list_repo_files(repo_id, revision=revision, token=token))


def resolve_filename(repo_id: str, glob: str, *, revision: str, cache_dir: Optional[Any], token: Any, offline: bool,
                     what: str, hint: str) -> str:
    """The one file of ``repo_id`` at commit ``revision`` matching ``glob`` (recorded after the first listing)."""
    rec = recorded(cache_dir, repo_id, revision, glob)
    if rec:
        return rec["filename"]
    files = _list_snapshot(cache_dir, repo_id, revision)
    if files is None or not fnmatch.filter(files, glob):
        if offline:
            raise WeightsUnavailableError(
                f"{what}: the exact name of {repo_id}/{glob}@{revision} is not known yet and the Hub cannot be "
                f"listed offline; run once with network access, or use local weights instead: {hint}")
        try:
            files = _list_hub(repo_id, revision, token)
        except Exception as e:  # noqa: BLE001 - translated to one line
            if is_network_error(e):
                raise WeightsUnavailableError(
                    f"{what}: listing {repo_id}@{revision} to find {glob} needs the Hugging Face Hub, which cannot "
                    f"be reached; use local weights instead: {hint}") from None
            raise WeightsUnavailableError(f"{what}: cannot list {repo_id}@{revision} ({type(e).__name__}: "
                                          f"{' '.join(str(e).split())[:200]})") from None
    matches = fnmatch.filter(files, glob)
    if len(matches) != 1:
        raise WeightsUnavailableError(
            f"{what}: {len(matches)} files of {repo_id}@{revision} match {glob} ({', '.join(matches[:5]) or 'none'}); "
            f"expected exactly one. Use local weights instead: {hint}")
    _write(cache_dir, repo_id, revision, glob, {"filename": matches[0], "sha256": None})
    return matches[0]


def record_sha256(cache_dir: Optional[Any], repo_id: str, revision: str, glob: str, sha256: str) -> None:
    """Pin the downloaded file's sha256 next to its resolved name (a read-only cache is left as it is)."""
    rec = recorded(cache_dir, repo_id, revision, glob) or {}
    if rec.get("filename") and not rec.get("sha256"):
        _write(cache_dir, repo_id, revision, glob, dict(rec, sha256=sha256))


def _write(cache_dir: Optional[Any], repo_id: str, revision: str, glob: str, value: dict) -> None:
    path = record_path(cache_dir, repo_id, revision)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = _read(path)
        doc[glob] = value
        atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only cache only costs a new listing next time
