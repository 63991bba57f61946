"""The weights manifest (``dvis_sdk/weights_manifest.json``): reading, schema check and entry lookup.

Every ``hub`` entry is pinned: a 40-hex commit ``revision``, the exact ``filename`` in the repo and, where known,
the file's ``sha256``; nothing is searched for at run time.
"""
from __future__ import annotations

import copy
import difflib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from .errors import UnknownModelError

PathLike = Union[str, Path]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
MANIFEST_PATH = PACKAGE_DIR / "weights_manifest.json"
# the official yamls named by "config" (package data, see pyproject.toml)
OFFICIAL_CONFIG_DIR = PACKAGE_DIR / "configs" / "official"

REQUIRED_FIELDS = ("name", "variant", "mode", "backbone", "dataset", "config", "source", "repo_id", "filename",
                   "revision", "sha256", "min_size_test", "max_size_test", "reported_ap")
DATASETS = ("ovis", "ytvis_2019", "ytvis_2021", "vipseg", "vspw")
# "hub": pinned Hugging Face file; "external": download by hand (any local file name); "embedded": ships inside
# the package as a save_pretrained folder at dvis_sdk/<path>
SOURCES = ("hub", "external", "embedded")
_RETIRED_FIELDS = ("pattern", "keywords")  # run-time file search, replaced by exact pinned file names

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


def is_model_name(name: str) -> bool:
    """Whether ``name`` is a manifest name (case-insensitive)."""
    return str(name).lower() in {m["name"].lower() for m in list_models()}


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


def _source_problems(n: str, e: Mapping[str, Any]) -> List[str]:
    problems = []
    if e["source"] == "hub":
        if not e["repo_id"] or "/" not in e["repo_id"]:
            problems.append(f"{n}: a Hub entry needs repo_id 'owner/name'")
        glob = e.get("filename_glob")
        if glob and e["filename"] is None:  # resolved once at the pinned commit (weights/pinned_names.py)
            if "/" not in glob or not glob.endswith(".pth"):
                problems.append(f"{n}: filename_glob must be a repo path pattern ending in .pth, got {glob!r}")
        elif not e["filename"] or any(c in e["filename"] for c in "*?["):
            problems.append(f"{n}: a Hub entry needs the exact filename of its file in the repo")
        if not re.fullmatch(r"[0-9a-f]{40}", str(e["revision"])):
            problems.append(f"{n}: a Hub entry needs a pinned revision (a 40-hex commit), got {e['revision']!r}")
    elif e["source"] == "embedded":
        if not e.get("path"):
            problems.append(f"{n}: an embedded entry needs a path (a save_pretrained folder inside dvis_sdk/)")
    elif not e.get("download_page"):
        problems.append(f"{n}: an external entry needs a download_page")
    return problems


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
        retired = [f for f in _RETIRED_FIELDS if e.get(f) is not None]
        if retired:
            problems.append(f"{n}: fields {retired} are no longer used; give the exact filename")
        if e["variant"] not in ("dvis++", "dvis", "daq"):
            problems.append(f"{n}: variant {e['variant']!r}")
        if e["mode"] not in ("online", "offline", "segmenter"):
            problems.append(f"{n}: mode {e['mode']!r}")
        if e["dataset"] not in DATASETS and e["source"] != "embedded":
            problems.append(f"{n}: dataset {e['dataset']!r} not in {DATASETS}")
        if e["source"] not in SOURCES:
            problems.append(f"{n}: source {e['source']!r} not in {SOURCES}")
        else:
            problems += _source_problems(n, e)
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
    return p if p.is_absolute() else OFFICIAL_CONFIG_DIR / p


def embedded_model_path(entry: Mapping[str, Any]) -> Path:
    """The package folder of an ``embedded`` manifest entry."""
    return PACKAGE_DIR / entry["path"]


def unpinned_hub_message(entry: Mapping[str, Any]) -> str:
    """One line for an ``external`` entry whose weights are on a Hub repo without published file names (DVIS-DAQ):
    where to download and how to run the file; no file name is ever guessed."""
    cfg = entry.get("config", "CONFIG.yaml")
    return (f"model {entry['name']!r} has no pinned file: its weights are on https://huggingface.co/{entry['repo_id']} "
            "but their file names are not published; download the file from there by hand and use "
            f"VideoSegmenter.from_official('{cfg}', '/path/to/file.pth') "
            f"(or resolve_weights('{entry['name']}', checkpoint='/path/to/file.pth'))")


def local_weights_hint(entry: Mapping[str, Any]) -> str:
    """How to run a manifest model from a local official checkpoint (for one-line errors)."""
    cfg = entry.get("config", "CONFIG.yaml")
    return (f"dvis predict --config {cfg} --checkpoint model_final.pth, or "
            f"VideoSegmenter.from_official('{cfg}', 'model_final.pth')")
