"""The converted-weights cache: an official download converted ONCE to our key names and kept as a
``save_pretrained`` folder (+ ``meta.json``) under ``<hf cache>/dvis_sdk/converted/<name>-<sha12>/``."""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Mapping, Optional, Tuple

import torch

from ..config import DVISConfig
from .pretrained import CONFIG_NAME, WEIGHTS_NAME, write_pretrained

# bump when the conversion's output changes, so stale converted caches are rebuilt instead of reused
CONVERTED_FORMAT = 1


def safe_name(name: str) -> str:
    """A model name usable as a folder name."""
    return re.sub(r"[^\w.+\-]", "_", name)


def converted_root(hub_cache: Path) -> Path:
    """Where converted folders live inside a Hugging Face cache folder."""
    return hub_cache / "dvis_sdk" / "converted"


def find_converted(root: Path, name: str, source: Path, cfg_digest: str) -> Optional[Tuple[Path, dict]]:
    """A converted folder made from exactly this downloaded file (same resolved path, size and mtime) for the
    same config (the conversion depends on it, e.g. an online config drops the refiner)."""
    if not root.is_dir():
        return None
    real = source.resolve()
    stat = real.stat()
    for meta_path in sorted(root.glob(f"{safe_name(name)}-*/meta.json")):
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


def write_converted(folder: Path, config: DVISConfig, state_dict: Mapping[str, torch.Tensor], meta: dict) -> None:
    """Write a converted folder atomically (a temp folder renamed into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        write_pretrained(tmp, config, state_dict, card=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder)  # stale (older format or a different download of the same bytes)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
