"""Checkpoints of a training run: ``out_dir/checkpoints/iter_XXXXXXX`` with ``model.safetensors``, ``config.json``
and ``trainer_state.pt`` (optimizer, iteration, RNG and stage states, loadable with ``weights_only=True``), written
atomically (temporary folder + rename), the newest ``keep_checkpoints`` kept; exact resume; export of the final model
in the ``save_pretrained`` layout. The functions take the :class:`~dvis_sdk.training.loop.Trainer`.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from ..runtime import jsonable as _jsonable
from .utils import export_state_dict, get_rng_state, set_rng_state

if TYPE_CHECKING:  # pragma: no cover
    from .loop import Trainer

__all__ = ["CHECKPOINT_DIR", "STATE_NAME", "save_checkpoint", "resume", "export", "jsonable"]

PathLike = Union[str, Path]
CHECKPOINT_DIR = "checkpoints"
STATE_NAME = "trainer_state.pt"


def save_checkpoint(trainer: "Trainer") -> Path:
    """Write ``out_dir/checkpoints/iter_XXXXXXX`` (model, config, optimizer / RNG state); keeps the newest
    ``keep_checkpoints``. Returns the folder."""
    from safetensors.torch import save_file

    from ..weights import tensors_for_saving

    root = trainer.out_dir / CHECKPOINT_DIR
    d = root / f"iter_{trainer.iter:07d}"
    tmp = root / f".tmp_{d.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(tensors_for_saving(trainer.model.state_dict()), str(tmp / "model.safetensors"))
    trainer.model.cfg.to_json(tmp / "config.json")
    state = {"iter": trainer.iter, "kind": trainer.kind, "optimizer": trainer.optimizer.state_dict(),
             "rng": get_rng_state(), "draws": trainer.draws_generator.get_state(),
             "extra": trainer._extra_state()}
    if trainer.scaler is not None:
        state["scaler"] = trainer.scaler.state_dict()
    torch.save(state, tmp / STATE_NAME)
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)
    (root / "last").write_text(d.name)
    ckpts = sorted(p for p in root.glob("iter_*") if p.is_dir())
    for old in ckpts[: max(len(ckpts) - max(trainer.cfg.keep_checkpoints, 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return d


def resume(trainer: "Trainer", path: Optional[PathLike] = None) -> int:
    """Restore model, optimizer, iteration and RNG states from a checkpoint folder (default: the latest in
    ``out_dir``). Returns the iteration reached."""
    from safetensors.torch import load_file

    if path is None:
        root = trainer.out_dir / CHECKPOINT_DIR
        if not (root / "last").is_file():
            raise FileNotFoundError(f"no checkpoint to resume from in {root}")
        path = root / (root / "last").read_text().strip()
    path = Path(path)
    if (path / CHECKPOINT_DIR / "last").is_file():
        path = path / CHECKPOINT_DIR / (path / CHECKPOINT_DIR / "last").read_text().strip()
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"{path} is not a training checkpoint (no {STATE_NAME})")
    state = torch.load(path / STATE_NAME, map_location="cpu", weights_only=True)
    if state.get("kind") != trainer.kind:
        raise ValueError(f"checkpoint {path} was written by a {state.get('kind')!r} trainer, not {trainer.kind!r}")
    sd = load_file(str(path / "model.safetensors"))
    trainer.model.load_state_dict(sd, strict=True)
    trainer.model.to(trainer.device)
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scaler is not None and "scaler" in state:
        trainer.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    if "draws" in state:
        trainer.draws_generator.set_state(state["draws"])
    trainer._load_extra_state(state.get("extra", {}))
    trainer.iter = int(state["iter"])
    _truncate_log(trainer.out_dir / "metrics.jsonl", trainer.iter)
    return trainer.iter


def _truncate_log(path: Path, last_iter: int) -> None:
    """Drop the log records of iterations after the checkpoint (a killed run logged them; they are redone)."""
    import json

    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    keep = [x for x in lines if x.strip() and json.loads(x).get("iter", 0) <= last_iter]
    if len(keep) != len(lines):
        path.write_text("".join(x + "\n" for x in keep))


def export(trainer: "Trainer", directory: Optional[PathLike] = None) -> Path:
    """Write the model (inference layout) as ``config.json`` + ``model.safetensors``; returns the folder."""
    from ..weights import write_pretrained

    directory = Path(directory or trainer.out_dir)
    cfg = trainer.model.cfg
    write_pretrained(directory, cfg, export_state_dict(trainer.model))
    return directory



def jsonable(x: Any) -> Any:
    """:func:`dvis_sdk.runtime.jsonable`, with non-finite floats written as the strings ``"nan"`` / ``"inf"`` so that
    ``metrics.jsonl`` stays strict JSON (an AP of a split without a class is NaN)."""
    x = _jsonable(x)
    return _finite(x)


def _finite(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x
