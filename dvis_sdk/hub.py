"""Model manifest, Hugging Face Hub weights and the ``save_pretrained`` folder layout.

Names in :file:`weights_manifest.json` (``"dvis++-r50-ovis-online"``, ...) resolve to an official
config and official weights. Official ``.pth`` files are read safely (``weights_only=True``),
converted ONCE to our key names and cached as a ``save_pretrained`` folder under
``<cache>/dvis_sdk/converted/<name>-<sha12>/``; later loads read that folder directly.

A ``save_pretrained`` folder holds ``config.json`` (:meth:`DVISConfig.to_json`) and
``model.safetensors`` (our key names); it can be pushed to the Hub and loaded back by repo id.
"""
from __future__ import annotations

import copy
import difflib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.utils import (
    EntryNotFoundError, LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
    RevisionNotFoundError,
)

from . import convert as _convert
from .config import DVISConfig

PathLike = Union[str, Path]

MANIFEST_PATH = Path(__file__).parent / "weights_manifest.json"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# bump when the conversion's output changes, so stale converted caches are rebuilt instead of reused
CONVERTED_FORMAT = 1

REQUIRED_FIELDS = ("name", "variant", "mode", "backbone", "dataset", "config", "source", "repo_id", "filename",
                   "revision", "sha256", "min_size_test", "max_size_test", "reported_ap")
DATASETS = ("ovis", "ytvis_2019", "ytvis_2021")
SOURCES = ("hub", "external", "embedded")
# "embedded" entries ship inside the package: a save_pretrained folder at dvis_sdk/<path>
PACKAGE_DIR = Path(__file__).parent


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
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
    """A downloaded / given file whose sha256 is not the one the manifest records."""

    def __init__(self, file: PathLike, expected: str, actual: str):
        self.file, self.expected, self.actual = str(file), expected, actual
        super().__init__(f"sha256 mismatch for {file}: expected {expected}, got {actual}. The file is corrupted or "
                         "was changed upstream; delete it from the cache and retry, or pin another revision.")


class WeightsMatchError(LookupError):
    """A manifest file pattern that matches no file, or several files, of the Hub repo."""

    def __init__(self, message: str, candidates: Sequence[str]):
        super().__init__(message)
        self.candidates = list(candidates)


class PretrainedFormatError(ValueError):
    """A ``save_pretrained`` folder whose ``config.json`` or ``model.safetensors`` cannot be read."""


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


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------
_MANIFEST_CACHE: Dict[str, Any] = {}


def load_manifest(path: Optional[PathLike] = None) -> dict:
    """The weights manifest (a fresh copy): ``{"version", "default", "notes", "models": [entry, ...]}``."""
    p = Path(path) if path is not None else MANIFEST_PATH
    key = str(p.resolve())
    if key not in _MANIFEST_CACHE:
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"weights manifest not found: {p}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"weights manifest {p} is not valid JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), list) or "version" not in data:
            raise ValueError(f"weights manifest {p} needs a 'version' and a 'models' list")
        _MANIFEST_CACHE[key] = data
    return copy.deepcopy(_MANIFEST_CACHE[key])


def list_models() -> List[dict]:
    """Every manifest entry (copies), in manifest order."""
    return load_manifest()["models"]


def default_model_name() -> str:
    """The model the CLI uses when none is given."""
    return load_manifest()["default"]


def get_model_entry(name: str) -> dict:
    """The manifest entry called ``name`` (case-insensitive); :class:`UnknownModelError` with close names if none."""
    models = list_models()
    for entry in models:
        if entry["name"] == name:
            return entry
    for entry in models:
        if entry["name"].lower() == str(name).lower():
            return entry
    names = [m["name"] for m in models]
    close = difflib.get_close_matches(str(name).lower(), names, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: {', '.join(names)} "
                            "(or give a local folder, an official checkpoint with its config, or a Hub repo id "
                            "'owner/name').", close)


def validate_manifest(manifest: Optional[dict] = None) -> List[str]:
    """Problems with the manifest's schema (empty list when fine). Does not check that config files exist."""
    m = load_manifest() if manifest is None else manifest
    problems: List[str] = []
    names = [e.get("name") for e in m.get("models", [])]
    if len(set(names)) != len(names):
        problems.append("duplicate model names")
    if m.get("default") not in names:
        problems.append(f"default {m.get('default')!r} is not a model name")
    for e in m.get("models", []):
        n = e.get("name", "?")
        missing = [f for f in REQUIRED_FIELDS if f not in e]
        if missing:
            problems.append(f"{n}: missing field(s) {missing}")
            continue
        if e["variant"] not in ("dvis++", "dvis"):
            problems.append(f"{n}: variant {e['variant']!r}")
        if e["mode"] not in ("online", "offline"):
            problems.append(f"{n}: mode {e['mode']!r}")
        if e["dataset"] not in DATASETS and e["source"] != "embedded":
            problems.append(f"{n}: dataset {e['dataset']!r} not in {DATASETS}")
        if e["source"] not in SOURCES:
            problems.append(f"{n}: source {e['source']!r} not in {SOURCES}")
        if e["source"] == "hub":
            if not e["repo_id"] or "/" not in e["repo_id"]:
                problems.append(f"{n}: a Hub entry needs repo_id 'owner/name'")
            if not e["filename"] and not e.get("pattern"):
                problems.append(f"{n}: a Hub entry needs a filename or a pattern")
            if not e["revision"]:
                problems.append(f"{n}: a Hub entry needs a revision")
        elif e["source"] == "embedded":
            if not e.get("path"):
                problems.append(f"{n}: an embedded entry needs a path (a save_pretrained folder inside dvis_sdk/)")
        else:
            if not e.get("download_page"):
                problems.append(f"{n}: an external entry needs a download_page")
        if e["sha256"] is not None and not re.fullmatch(r"[0-9a-f]{64}", str(e["sha256"])):
            problems.append(f"{n}: sha256 must be null or 64 lowercase hex digits")
        for f in ("min_size_test", "max_size_test"):
            if not isinstance(e[f], int) or e[f] <= 0:
                problems.append(f"{n}: {f} must be a positive int")
        if e["reported_ap"] is not None and not isinstance(e["reported_ap"], (int, float)):
            problems.append(f"{n}: reported_ap must be a number or null")
    return problems


def entry_config_path(entry: Mapping[str, Any]) -> Path:
    """The official yaml of a manifest entry (relative names resolve inside ``dvis_sdk/configs/official``)."""
    p = Path(entry["config"]).expanduser()
    return p if p.is_absolute() else _convert.OFFICIAL_CONFIG_DIR / p


def _entry_config(entry: Mapping[str, Any]) -> DVISConfig:
    path = entry_config_path(entry)
    if not path.is_file():
        raise FileNotFoundError(f"model {entry['name']!r}: its official config {entry['config']!r} is not shipped "
                                f"(looked for {path})")
    return _convert.load_official_config(path)


def _local_weights_hint(entry: Mapping[str, Any]) -> str:
    cfg = entry.get("config", "CONFIG.yaml")
    return (f"dvis predict --config {cfg} --checkpoint model_final.pth, or "
            f"VideoSegmenter.from_official('{cfg}', 'model_final.pth')")


# ---------------------------------------------------------------------------------------------
# resolving a name / folder / repo id to (config, state dict)
# ---------------------------------------------------------------------------------------------
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
        revision: Hub revision (branch, tag or commit); default: the manifest's, else ``main``.
        token: Hub token for private / gated repos.
        local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
        checkpoint: with a manifest name, a local official checkpoint to use instead of downloading (needed for
            the models that are not on the Hub).
        filename: with a manifest name, the exact file in its Hub repo (overrides the manifest's name/pattern).

    Raises:
        UnknownModelError, WeightsUnavailableError, ChecksumError, WeightsMatchError, PretrainedFormatError.
    """
    offline = _is_offline(local_files_only)
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
    names = {m["name"].lower() for m in list_models()}
    if name.lower() in names:
        entry = get_model_entry(name)
        if entry["source"] == "embedded":
            return _resolve_embedded(entry)
        if checkpoint is not None:
            res = resolve_official(_entry_config(entry), checkpoint, expected_sha256=entry.get("sha256"))
            res.name, res.entry = entry["name"], entry
            return res
        if entry["source"] != "hub":
            raise WeightsUnavailableError(
                f"model {entry['name']!r} is not on the Hugging Face Hub: download "
                f"{entry.get('filename') or 'the checkpoint'} from {entry['download_page']} and pass the local file: "
                f"resolve_weights('{entry['name']}', "
                f"checkpoint='model_final.pth') or {_local_weights_hint(entry)}")
        return _resolve_hub_entry(entry, cache_dir=cache_dir, revision=revision, token=token, offline=offline,
                                  filename=filename)
    if re.fullmatch(r"[\w.\-]+/[\w.\-]+", name) and not name.startswith((".", "/")):
        return _resolve_hub_pretrained(name, cache_dir=cache_dir, revision=revision, token=token, offline=offline)
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        raise FileNotFoundError(f"no such model folder: {local}")
    get_model_entry(name)  # raises UnknownModelError with suggestions
    raise AssertionError("unreachable")


def embedded_model_path(entry: Mapping[str, Any]) -> Path:
    """The package folder of an ``embedded`` manifest entry."""
    return PACKAGE_DIR / entry["path"]


def _resolve_embedded(entry: dict) -> ResolvedModel:
    folder = embedded_model_path(entry)
    if not (folder / WEIGHTS_NAME).is_file():
        raise WeightsUnavailableError(f"model {entry['name']!r} should ship with the package in {folder}, but its "
                                      f"{WEIGHTS_NAME} is missing; reinstall dvis_sdk")
    if entry.get("sha256"):
        actual = sha256_file(folder / WEIGHTS_NAME)
        if actual != entry["sha256"]:
            raise ChecksumError(folder / WEIGHTS_NAME, entry["sha256"], actual)
    cfg, sd = load_pretrained(folder)
    return ResolvedModel(cfg, sd, source=f"embedded {folder}", name=entry["name"], entry=entry)


def resolve_official(cfg: Union[PathLike, Mapping, DVISConfig], checkpoint: PathLike, mode: Optional[str] = None,
                     expected_sha256: Optional[str] = None) -> ResolvedModel:
    """An official config (yaml path / shipped name / cfg dict / :class:`DVISConfig`) + a local official
    checkpoint (``.pth`` read with ``weights_only=True``, or ``.safetensors`` with official key names)."""
    config = cfg if isinstance(cfg, DVISConfig) else _convert.load_official_config(cfg, mode=mode)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if expected_sha256:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ChecksumError(path, expected_sha256, actual)
    sd = _convert.convert_official_state_dict(_convert.load_official_checkpoint(path), config)
    return ResolvedModel(config, sd, source=f"official checkpoint {path}")


def _is_offline(local_files_only: Optional[bool]) -> bool:
    if local_files_only is not None:
        return bool(local_files_only)
    from huggingface_hub import constants

    # constants.HF_HUB_OFFLINE is read once at import; the environment may have changed since
    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(getattr(constants, "HF_HUB_OFFLINE", False)) or env.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _is_network_error(e: BaseException) -> bool:
    """No network / offline mode (as opposed to 'the repo or file does not exist')."""
    if isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)):
        return True
    if isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
        return False
    # huggingface_hub 1.x/2.x raise their HTTP client's transport errors (httpx, or the vendored "httpx2")
    transport = {"ConnectError", "ConnectTimeout", "NetworkError", "TransportError", "TimeoutException"}
    if any(c.__name__ in transport for c in type(e).__mro__):
        return True
    return type(e).__module__.split(".")[0] in {"requests", "httpx", "httpx2", "httpcore", "urllib3", "socket"}


def _hub_cache_root(cache_dir: Optional[PathLike]) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _cached_repo_files(repo_id: str, revision: str, cache_dir: Optional[PathLike]) -> List[str]:
    """Files of ``repo_id`` at ``revision`` present in the local HF cache (for offline pattern matching)."""
    repo_dir = _hub_cache_root(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    commit = revision
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
    snap = repo_dir / "snapshots" / commit
    if not snap.is_dir():
        return []
    return sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())


def match_repo_files(files: Sequence[str], pattern: Optional[str], keywords: Optional[Sequence[Sequence[str]]] = None,
                     ) -> List[str]:
    """Files matching the glob ``pattern`` (case-insensitive) and containing, for every keyword group, one of
    its words (case-insensitive)."""
    out = []
    for f in files:
        low = f.lower()
        if pattern and not fnmatch.fnmatchcase(low, pattern.lower()):
            continue
        if keywords and not all(any(w.lower() in low for w in group) for group in keywords):
            continue
        out.append(f)
    return sorted(out)


def _pick_file(entry: Mapping[str, Any], revision: str, token: Any, cache_dir: Optional[PathLike],
               offline: bool) -> str:
    repo_id = entry["repo_id"]
    files: Optional[List[str]] = None
    if not offline:
        try:
            files = list(HfApi(token=token).list_repo_files(repo_id, revision=revision))
        except Exception as e:  # noqa: BLE001 - re-raised below unless it only means "no network"
            if not _is_network_error(e):
                raise WeightsUnavailableError(f"cannot list Hub repo {repo_id}@{revision} for model "
                                              f"{entry['name']!r}: {e}") from e
    if files is None:  # offline or no network: match what the local cache holds
        files = _cached_repo_files(repo_id, revision, cache_dir)
        if not files:
            raise WeightsUnavailableError(
                f"model {entry['name']!r} is not in the local cache and the Hugging Face Hub cannot be reached "
                f"(offline); use local weights instead: {_local_weights_hint(entry)}")
    matches = match_repo_files(files, entry.get("pattern"), entry.get("keywords"))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise WeightsMatchError(
            f"model {entry['name']!r}: {len(matches)} files of {repo_id}@{revision} match its pattern: {matches}. "
            f"Pick one with resolve_weights('{entry['name']}', filename=...).", matches)
    scope = entry.get("subfolder")
    near = [f for f in files if not scope or f.startswith(scope.rstrip("/") + "/")]
    raise WeightsMatchError(
        f"model {entry['name']!r}: no file of {repo_id}@{revision} matches pattern {entry.get('pattern')!r} with "
        f"keywords {entry.get('keywords')}. Files there: {near[:50]}{' ...' if len(near) > 50 else ''}. "
        f"Pick one with resolve_weights('{entry['name']}', filename=...).", near)


def _download(repo_id: str, filename: str, *, revision: str, cache_dir: Optional[PathLike], token: Any,
              offline: bool, what: str, hint: str) -> Path:
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                                    local_files_only=offline))
    except Exception as e:  # noqa: BLE001 - translated to one of our errors
        if _is_network_error(e):
            raise WeightsUnavailableError(
                f"{what} ({repo_id}/{filename}@{revision}) is not in the local cache and the Hugging Face Hub "
                f"cannot be reached (offline); use local weights instead: {hint}") from None
        if isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
            raise WeightsUnavailableError(f"{what}: {repo_id}/{filename}@{revision} not found on the Hub "
                                          f"({type(e).__name__}; private repos need token=...)") from e
        raise


def _resolve_hub_entry(entry: dict, *, cache_dir: Optional[PathLike], revision: Optional[str], token: Any,
                       offline: bool, filename: Optional[str]) -> ResolvedModel:
    repo_id = entry["repo_id"]
    rev = revision or entry.get("revision") or "main"
    fname = filename or entry.get("filename") or _pick_file(entry, rev, token, cache_dir, offline)
    path = _download(repo_id, fname, revision=rev, cache_dir=cache_dir, token=token, offline=offline,
                     what=f"model {entry['name']!r}", hint=_local_weights_hint(entry))
    config = _entry_config(entry)
    # a user-chosen file/revision is not the one the manifest's checksum describes
    expected = entry.get("sha256") if (filename is None and revision is None) else None
    conv_root = _hub_cache_root(cache_dir) / "dvis_sdk" / "converted"
    hub_src = f"{repo_id}/{fname}@{rev}"

    cfg_digest = hashlib.sha256(config.to_json().encode()).hexdigest()
    cached = _find_converted(conv_root, entry["name"], path, cfg_digest)
    if cached is not None:
        folder, meta = cached
        if expected and meta["sha256"] != expected:
            raise ChecksumError(path, expected, meta["sha256"])
        _, sd = load_pretrained(folder)
        return ResolvedModel(config, sd, source=f"hub {hub_src} (converted cache {folder})", name=entry["name"],
                             entry=entry)

    sha = sha256_file(path)
    if expected and sha != expected:
        raise ChecksumError(path, expected, sha)
    if path.suffix == ".safetensors" and _is_pretrained_weights(path):
        sd = _load_safetensors(path)  # already our layout: nothing to convert
    else:
        sd = _convert.convert_official_state_dict(_convert.load_official_checkpoint(path), config)
    folder = conv_root / f"{_safe_name(entry['name'])}-{sha[:12]}"
    stat = path.resolve().stat()
    meta = {"name": entry["name"], "repo_id": repo_id, "filename": fname, "revision": rev, "sha256": sha,
            "source_path": str(path.resolve()), "source_size": stat.st_size, "source_mtime_ns": stat.st_mtime_ns,
            "config_sha256": cfg_digest, "converted_format": CONVERTED_FORMAT, "dvis_sdk_version": _sdk_version()}
    try:
        _write_converted(folder, config, sd, meta)
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
    cfg_path = _download(repo_id, CONFIG_NAME, **kw)
    weights_path = _download(repo_id, WEIGHTS_NAME, **kw)
    cfg, sd = _read_pretrained_files(cfg_path, weights_path)
    return ResolvedModel(cfg, sd, source=f"hub {repo_id}@{rev}")


# ---------------------------------------------------------------------------------------------
# converted-weights cache
# ---------------------------------------------------------------------------------------------
def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.+\-]", "_", name)


def _sdk_version() -> str:
    try:
        from ._version import __version__
        return __version__
    except ImportError:  # during package import
        return "unknown"


def _find_converted(root: Path, name: str, source: Path, cfg_digest: str):
    """A converted folder made from exactly this downloaded file (same resolved path, size and mtime) for the
    same config (the conversion depends on it, e.g. an online config drops the refiner)."""
    if not root.is_dir():
        return None
    real = source.resolve()
    stat = real.stat()
    for meta_path in sorted(root.glob(f"{_safe_name(name)}-*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (meta.get("converted_format") == CONVERTED_FORMAT and meta.get("source_path") == str(real)
                and meta.get("source_size") == stat.st_size and meta.get("source_mtime_ns") == stat.st_mtime_ns
                and meta.get("config_sha256") == cfg_digest
                and (meta_path.parent / WEIGHTS_NAME).is_file() and (meta_path.parent / CONFIG_NAME).is_file()):
            return meta_path.parent, meta
    return None


def _write_converted(folder: Path, config: DVISConfig, sd: Mapping[str, torch.Tensor], meta: dict) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        _write_pretrained(tmp, config, sd, card=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder)  # stale (older format or a different download of the same bytes)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# save_pretrained / load_pretrained / push_to_hub
# ---------------------------------------------------------------------------------------------
def _unwrap(model: Any) -> torch.nn.Module:
    inner = getattr(model, "model", None)  # a VideoSegmenter
    if isinstance(inner, torch.nn.Module) and not isinstance(model, torch.nn.Module):
        return inner
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"expected a DVIS model (nn.Module) or a VideoSegmenter, got {type(model).__name__}")
    return model


def _tensors_for_saving(sd: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Detached, contiguous, CPU tensors; safetensors refuses tensors that share memory, so copy repeats."""
    out: Dict[str, torch.Tensor] = {}
    seen = set()
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        t = v.detach().to("cpu").contiguous()
        key = t.untyped_storage().data_ptr() if t.numel() else None
        if key is not None and key in seen:
            t = t.clone()
        elif key is not None:
            seen.add(key)
        out[k] = t
    return out


def _write_pretrained(directory: Path, config: DVISConfig, sd: Mapping[str, torch.Tensor], card: bool = True) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config.to_json(directory / CONFIG_NAME)
    save_file(_tensors_for_saving(sd), str(directory / WEIGHTS_NAME),
              metadata={"format": "pt", "dvis_sdk_version": _sdk_version()})
    if card and not (directory / "README.md").exists():
        (directory / "README.md").write_text(_model_card(config))


def _model_card(config: DVISConfig) -> str:
    bb = config.backbone.type
    return (f"---\nlibrary_name: dvis_sdk\ntags:\n- video-instance-segmentation\n- {config.variant}\n---\n\n"
            f"# {config.variant.upper()} ({config.mode}, {bb} backbone)\n\n"
            f"Weights in the `dvis_sdk` layout: `{CONFIG_NAME}` (DVISConfig) + `{WEIGHTS_NAME}`.\n"
            f"Dataset: {config.dataset or 'custom'}; {config.segmenter.num_classes} classes; test size "
            f"{config.input.min_size_test}/{config.input.max_size_test}.\n\n"
            "```python\nfrom dvis_sdk import VideoSegmenter\nseg = VideoSegmenter.from_pretrained(\"<this folder or "
            "repo id>\")\n```\n")


def save_pretrained(model: Any, directory: PathLike, config: Optional[DVISConfig] = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ a short ``README.md`` model card if none exists).

    ``model`` is a DVIS model (its ``cfg`` is saved unless ``config`` is given) or a ``VideoSegmenter``.
    Returns the folder.
    """
    module = _unwrap(model)
    cfg = config or getattr(module, "cfg", None) or getattr(model, "cfg", None)
    if not isinstance(cfg, DVISConfig):
        raise ValueError("the model has no DVISConfig (.cfg); pass config=...")
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder")
    _write_pretrained(directory, cfg, module.state_dict())
    return directory


def _is_pretrained_weights(path: Path) -> bool:
    return (path.parent / CONFIG_NAME).is_file() and path.name == WEIGHTS_NAME


def _load_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise PretrainedFormatError(f"cannot read weights {path}: {e}") from None


def _read_pretrained_files(cfg_path: Path, weights_path: Path):
    try:
        cfg = DVISConfig.from_json(Path(cfg_path).read_text())
    except (ValueError, TypeError, KeyError) as e:
        raise PretrainedFormatError(f"invalid {cfg_path}: {e}") from None
    sd = _load_safetensors(Path(weights_path))
    if not sd:
        raise PretrainedFormatError(f"{weights_path} holds no tensors")
    return cfg, sd


def load_pretrained(directory: PathLike):
    """Read a ``save_pretrained`` folder: returns ``(DVISConfig, state_dict)``.

    Checks that both files exist and parse; whether the weights fit the model is left to strict loading.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"model folder not found: {directory}")
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (directory / n).is_file()]
    if missing:
        present = sorted(p.name for p in directory.iterdir())[:20]
        raise FileNotFoundError(f"{directory} is not a save_pretrained folder: missing {missing} (found {present}). "
                                "Official checkpoints (.pth) need their config: use resolve_official(config, file).")
    return _read_pretrained_files(directory / CONFIG_NAME, directory / WEIGHTS_NAME)


def push_to_hub(directory: PathLike, repo_id: str, token: Optional[str] = None, private: bool = True,
                commit_message: str = "Upload DVIS model (dvis_sdk)", revision: Optional[str] = None) -> str:
    """Upload a ``save_pretrained`` folder to the Hub repo ``repo_id`` (created if needed). Returns the repo URL."""
    directory = Path(directory).expanduser()
    load_pretrained(directory)  # refuse to upload something that would not load back
    api = HfApi(token=token)
    url = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(directory), repo_id=repo_id, repo_type="model",
                      commit_message=commit_message, revision=revision)
    return str(url)


__all__ = [
    "ChecksumError", "PretrainedFormatError", "ResolvedModel", "UnknownModelError", "WeightsMatchError",
    "WeightsUnavailableError", "default_model_name", "embedded_model_path", "entry_config_path", "get_model_entry", "list_models",
    "load_manifest", "load_pretrained", "match_repo_files", "push_to_hub", "resolve_official", "resolve_weights",
    "save_pretrained", "sha256_file", "validate_manifest",
]
