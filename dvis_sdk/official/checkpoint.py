"""The one reader for official / model-zoo checkpoints: ``.pth`` (PyTorch zip or legacy), ``.pkl`` (detectron2 /
Mask2Former model zoo: pickled numpy arrays) and ``.safetensors``. Pickles go through a restricted unpickler."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np
import torch

from . import safe_pickle
from .errors import ConversionError
from .safe_pickle import UnsafePickleError

PICKLE_SUFFIXES = (".pkl", ".pickle")


def _refused(path: Path, err: UnsafePickleError) -> UnsafePickleError:
    return UnsafePickleError(
        f"{path}: refusing to unpickle global '{err.args[0]}' (weights never need it; it could run code). Convert the "
        "file to .safetensors where you trust it, or pass trust_pickle=True if you trust its source")


def _to_tensors(obj: Any) -> Any:
    """numpy arrays (also inside nested dicts) -> tensors; everything else unchanged. Returns new containers."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, copy=True))  # a copy: unpickled arrays may be read-only views
    if isinstance(obj, Mapping):
        return {k: _to_tensors(v) for k, v in obj.items()}
    return obj


def _read_pickle(path: Path, trust_pickle: bool) -> Any:
    with open(path, "rb") as f:
        if trust_pickle:
            return pickle.load(f, encoding="latin1")  # noqa: S301 - the caller vouched for this file
        return safe_pickle.Unpickler(f, encoding="latin1").load()


def _read_torch(path: Path, trust_pickle: bool) -> Any:
    if trust_pickle:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    # torch resolves tensor storages itself and asks our unpickler for every other global
    return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=safe_pickle)


def load_official_checkpoint(path: Union[str, Path], *, trust_pickle: bool = False) -> Dict[str, Any]:
    """Read a checkpoint without running code from it: returns its top-level mapping with tensors.

    ``.safetensors`` is read directly; ``.pkl`` / ``.pickle`` (detectron2 / Mask2Former model zoo:
    ``{"model": {name: ndarray}, "__author__": ...}`` or a plain dict of arrays) and ``.pth`` (PyTorch zip or
    legacy format) are unpickled by :mod:`.safe_pickle`, which allows only what weights need. numpy arrays come
    back as tensors. A detectron2 ``{"model": ...}`` wrapper is kept (:func:`convert_official_state_dict` unwraps it).

    Args:
        trust_pickle: unpickle with no restriction (only for files from a source you trust).

    Raises:
        FileNotFoundError; UnsafePickleError (a ConversionError) naming the refused global; ConversionError for a
        file that is not a checkpoint. Every message is one line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
            raise ConversionError(f"cannot read {path} as safetensors: {str(e).splitlines()[0]}") from None
    reader = _read_pickle if path.suffix.lower() in PICKLE_SUFFIXES else _read_torch
    try:
        obj = reader(path, trust_pickle)
    except UnsafePickleError as e:
        raise _refused(path, e) from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a weights file"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConversionError(f"cannot read {path} as a checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return _to_tensors(obj)
