"""Name resolution: a local folder, a manifest name or a Hub repo id -> (config, state dict with our key names)."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from .._version import __version__
from ..config import DVISConfig
from ..official import convert_official_state_dict, load_official_checkpoint, load_official_config
from .cache import CONVERTED_FORMAT, converted_root, find_converted, safe_name, write_converted
from .checksum import verify_sha256
from .download import download, hub_cache_root, is_offline
from .errors import ChecksumError, WeightsUnavailableError
from .manifest import (
    embedded_model_path,
    entry_config_path,
    get_model_entry,
    is_model_name,
    local_weights_hint,
    unpinned_hub_message,
)
from .pinned_names import record_sha256, recorded, resolve_filename
from .pretrained import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    is_pretrained_weights,
    load_pretrained,
    load_safetensors,
    read_pretrained_files,
)

PathLike = Union[str, Path]


@dataclass
class ResolvedModel:
    """What :func:`resolve_weights` found: a config and a state dict with our key names (already converted).

    ``source`` says where the weights came from (a Hub file, a cached conversion, a local folder / file);
    ``entry`` is the manifest entry when a manifest name was resolved.
    """

    config: DVISConfig
    state_dict: Dict[str, torch.Tensor]
    source: str
    name: Optional[str] = None
    entry: Optional[dict] = None


def resolve_weights(name_or_path: PathLike, *, cache_dir: Optional[PathLike] = None, revision: Optional[str] = None,
                    token: Union[str, bool, None] = None, local_files_only: Optional[bool] = None,
                    checkpoint: Optional[PathLike] = None, filename: Optional[str] = None) -> ResolvedModel:
    """Find a model's config and weights (our key names).

    ``name_or_path`` is, in this order: a local ``save_pretrained`` folder (``config.json`` +
    ``model.safetensors``); a manifest name (``"dvis++-r50-ovis-online"``; ``embedded`` entries such as the default
    ``"dvis-tiny-shapes"`` load from the package itself, offline); a Hub repo id ``"owner/name"``
    holding a ``save_pretrained`` layout. An official checkpoint file needs its config: use
    :func:`resolve_official`.

    Args:
        cache_dir: Hugging Face cache folder (default: the HF default cache). Converted weights are cached
            under ``<cache_dir>/dvis_sdk/converted``.
        revision: Hub revision (branch, tag or commit); default: the manifest's pinned commit, else ``main``.
        token: Hub token for private / gated repos.
        local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
        checkpoint: with a manifest name, a local official checkpoint (any file name) to use instead of
            downloading (needed for the models that are not on the Hub); checked against the manifest's sha256.
        filename: with a manifest name, another file of its Hub repo (then no checksum applies).

    Raises:
        UnknownModelError, WeightsUnavailableError, ChecksumError, PretrainedFormatError.
    """
    offline = is_offline(local_files_only)
    local = Path(str(name_or_path)).expanduser()
    if local.exists():
        if local.is_dir():
            cfg, sd = load_pretrained(local)
            return ResolvedModel(cfg, sd, source=f"local folder {local}")
        if local.name == WEIGHTS_NAME and (local.parent / CONFIG_NAME).is_file():
            cfg, sd = load_pretrained(local.parent)
            return ResolvedModel(cfg, sd, source=f"local folder {local.parent}")
        raise ValueError(f"{local} is a checkpoint file: an official checkpoint needs its config, e.g. "
                         f"resolve_official('ovis/DVIS_Plus_Online_R50_16wIter.yaml', '{local}') or "
                         f"VideoSegmenter.from_official(config, '{local}')")
    name = str(name_or_path)
    if is_model_name(name):
        entry = get_model_entry(name)
        if entry["source"] == "embedded":
            return _resolve_embedded(entry)
        if checkpoint is not None:
            res = resolve_official(_entry_config(entry), checkpoint, expected_sha256=entry.get("sha256"))
            res.name, res.entry = entry["name"], entry
            return res
        if entry["source"] != "hub" and entry.get("repo_id"):
            raise WeightsUnavailableError(unpinned_hub_message(entry))
        if entry["source"] != "hub":
            raise WeightsUnavailableError(
                f"model {entry['name']!r} is not on the Hugging Face Hub: download it from {entry['download_page']} "
                f"(any file name) and pass the local file: resolve_weights('{entry['name']}', "
                f"checkpoint='model_final.pth') or {local_weights_hint(entry)}")
        return _resolve_hub_entry(entry, cache_dir=cache_dir, revision=revision, token=token, offline=offline,
                                  filename=filename)
    if re.fullmatch(r"[\w.\-]+/[\w.\-]+", name) and not name.startswith((".", "/")):
        return _resolve_hub_pretrained(name, cache_dir=cache_dir, revision=revision, token=token, offline=offline)
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        raise FileNotFoundError(f"no such model folder: {local}")
    get_model_entry(name)  # raises UnknownModelError with suggestions
    raise AssertionError("unreachable")


def _entry_config(entry: Mapping[str, Any]) -> DVISConfig:
    path = entry_config_path(entry)
    if not path.is_file():
        raise FileNotFoundError(f"model {entry['name']!r}: its official config {entry['config']!r} is not shipped "
                                f"(looked for {path})")
    return load_official_config(path)


def _resolve_embedded(entry: dict) -> ResolvedModel:
    folder = embedded_model_path(entry)
    if not (folder / WEIGHTS_NAME).is_file():
        raise WeightsUnavailableError(f"model {entry['name']!r} should ship with the package in {folder}, but its "
                                      f"{WEIGHTS_NAME} is missing; reinstall dvis_sdk")
    verify_sha256(folder / WEIGHTS_NAME, entry.get("sha256"))
    cfg, sd = load_pretrained(folder)
    return ResolvedModel(cfg, sd, source=f"embedded {folder}", name=entry["name"], entry=entry)


def resolve_official(cfg: Union[PathLike, Mapping, DVISConfig], checkpoint: PathLike, mode: Optional[str] = None,
                     expected_sha256: Optional[str] = None, trust_pickle: bool = False) -> ResolvedModel:
    """An official config (yaml path / shipped name / cfg dict / :class:`DVISConfig`) + a local official
    checkpoint (``.pth`` / ``.pkl`` through the restricted unpickler, or ``.safetensors`` with official names)."""
    config = cfg if isinstance(cfg, DVISConfig) else load_official_config(cfg, mode=mode)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    verify_sha256(path, expected_sha256)
    sd = convert_official_state_dict(load_official_checkpoint(path, trust_pickle=trust_pickle), config)
    return ResolvedModel(config, sd, source=f"official checkpoint {path}")


def _resolve_hub_entry(entry: dict, *, cache_dir: Optional[PathLike], revision: Optional[str], token: Any,
                       offline: bool, filename: Optional[str]) -> ResolvedModel:
    repo_id = entry["repo_id"]
    rev = revision or entry["revision"]
    fname = filename or entry["filename"]
    glob = entry.get("filename_glob") if fname is None else None
    if glob:  # name not published: listed once at the pinned commit, then recorded (weights/pinned_names.py)
        fname = resolve_filename(repo_id, glob, revision=rev, cache_dir=cache_dir, token=token, offline=offline,
                                 what=f"model {entry['name']!r}", hint=local_weights_hint(entry))
    path = download(repo_id, fname, revision=rev, cache_dir=cache_dir, token=token, offline=offline,
                    what=f"model {entry['name']!r}", hint=local_weights_hint(entry))
    config = _entry_config(entry)
    # a user-chosen file / revision is not the one the manifest's checksum describes
    expected = entry.get("sha256") if (filename is None and revision is None) else None
    if glob and not expected:  # the sha256 recorded at the first download pins the resolved file
        expected = (recorded(cache_dir, repo_id, rev, glob) or {}).get("sha256")
    conv_root = converted_root(hub_cache_root(cache_dir))
    hub_src = f"{repo_id}/{fname}@{rev}"

    cfg_digest = hashlib.sha256(config.to_json().encode()).hexdigest()
    cached = find_converted(conv_root, entry["name"], path, cfg_digest)
    if cached is not None:
        folder, meta = cached
        if expected and meta["sha256"] != expected:
            raise ChecksumError(path, expected, meta["sha256"])
        _, sd = load_pretrained(folder)
        return ResolvedModel(config, sd, source=f"hub {hub_src} (converted cache {folder})", name=entry["name"],
                             entry=entry)

    sha = verify_sha256(path, expected)  # before anything reads the file
    if glob:
        record_sha256(cache_dir, repo_id, rev, glob, sha)
    if path.suffix == ".safetensors" and is_pretrained_weights(path):
        sd = load_safetensors(path)  # already our layout: nothing to convert
    else:
        sd = convert_official_state_dict(load_official_checkpoint(path), config)
    folder = conv_root / f"{safe_name(entry['name'])}-{sha[:12]}"
    stat = path.resolve().stat()
    meta = {"name": entry["name"], "repo_id": repo_id, "filename": fname, "revision": rev, "sha256": sha,
            "sha256_verified": bool(expected), "source_path": str(path.resolve()), "source_size": stat.st_size,
            "source_mtime_ns": stat.st_mtime_ns, "config_sha256": cfg_digest, "converted_format": CONVERTED_FORMAT,
            "dvis_sdk_version": __version__}
    try:
        write_converted(folder, config, sd, meta)
    except OSError:
        pass  # a read-only cache only costs a re-conversion next time
    return ResolvedModel(config, sd, source=f"hub {hub_src}", name=entry["name"], entry=entry)


def _resolve_hub_pretrained(repo_id: str, *, cache_dir: Optional[PathLike], revision: Optional[str], token: Any,
                            offline: bool) -> ResolvedModel:
    rev = revision or "main"
    hint = (f"download the folder ({CONFIG_NAME} + {WEIGHTS_NAME}) and pass its path, e.g. "
            "VideoSegmenter.from_pretrained('path/to/folder')")
    kw = dict(revision=rev, cache_dir=cache_dir, token=token, offline=offline, what=f"Hub model {repo_id!r}",
              hint=hint)
    cfg_path = download(repo_id, CONFIG_NAME, **kw)
    weights_path = download(repo_id, WEIGHTS_NAME, **kw)
    cfg, sd = read_pretrained_files(cfg_path, weights_path)
    return ResolvedModel(cfg, sd, source=f"hub {repo_id}@{rev}")
