"""Runtime helpers with no model knowledge: device and dtype resolution, autocast queries, host -> device copies,
atomic file writes and JSON-safe values. Imports nothing from the package, so any module may use it."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO, Union

import numpy as np
import torch

#: Names accepted for the inference dtype (autocast; scores and mask up-sampling stay fp32).
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """"auto" -> cuda if available else cpu; a CUDA request without CUDA is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available on this machine; "
                           "use device='cpu' or 'auto'")
    return dev


#: What a spec or a user may ask for: a dtype, or "auto" (resolved per device by :func:`resolve_dtype`).
DTYPE_REQUESTS = ("auto",) + tuple(DTYPES)


def native_bf16(device: Union[str, torch.device]) -> bool:
    """Whether ``device`` runs bf16 natively: CUDA compute capability >= 8.0 (Ampere and later). Older GPUs
    emulate it (``torch.cuda.is_bf16_supported()`` still says True there), several times slower than fp16."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    try:
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.get_device_properties(index).major >= 8
    except (RuntimeError, AssertionError):  # no CUDA here (a spec for a remote GPU): not known to be native
        return False


def resolve_dtype(dtype: str, device: Union[str, torch.device]) -> str:
    """The dtype that runs on ``device`` for a request: "auto" is bf16 on GPUs with native bf16, fp16 on older
    GPUs, fp32 elsewhere; "fp16" on a CPU is fp32 (CPU fp16 autocast is slower and less accurate than fp32).
    Decided where the work runs, so a spec carries the request and each worker resolves it for its own device."""
    if dtype not in DTYPE_REQUESTS:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(DTYPE_REQUESTS)}")
    device = torch.device(device)
    if dtype == "auto":
        if device.type != "cuda":
            return "fp32"
        return "bf16" if native_bf16(device) else "fp16"
    if dtype == "fp16" and device.type == "cpu":
        return "fp32"
    return dtype


def autocast_context(device: torch.device, dtype: str) -> "contextlib.AbstractContextManager":
    """The autocast context for inference in ``dtype`` ("fp32": autocast explicitly off)."""
    if dtype == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def autocast_enabled(device_type: str) -> bool:
    """``torch.is_autocast_enabled(device_type)`` on every supported torch (the argument exists since 2.4)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def fp32_under_autocast(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, enabled: bool = True,
                        dtype: torch.dtype = torch.float32) -> Any:
    """``fn(x)`` with autocast disabled and ``x`` cast to ``dtype`` (the dtype of ``fn``'s weights: float32 unless the
    model itself was cast to a half dtype) when ``enabled`` and autocast is on for ``x``'s device; else ``fn(x)``."""
    device_type = x.device.type
    if not enabled or not autocast_enabled(device_type):
        return fn(x)
    with torch.autocast(device_type, enabled=False):
        return fn(x.to(dtype))


def autocast_cast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the autocast dtype when autocast is on for its device and it is a float tensor autocast would cast
    (fp32), else ``x`` itself: for tensors that many autocast ops would otherwise each cast again."""
    device_type = x.device.type
    if x.dtype != torch.float32 or not autocast_enabled(device_type):
        return x
    getter = getattr(torch, "get_autocast_dtype", None)  # torch >= 2.4
    if getter is not None:
        dtype = getter(device_type)
    else:
        dtype = torch.get_autocast_gpu_dtype() if device_type == "cuda" else torch.get_autocast_cpu_dtype()
    return x.to(dtype)


def frames_to_device(frames: torch.Tensor, device: Union[str, torch.device]) -> torch.Tensor:
    """Host -> device copy of a window of frames. On CUDA the host tensor is pinned and copied with
    ``non_blocking=True``, so the copy overlaps with the GPU work already queued (the previous window) instead
    of waiting for it; elsewhere it is a plain ``.to(device)`` (no copy on CPU)."""
    device = torch.device(device)
    if device.type == "cuda" and frames.device.type == "cpu":
        if not frames.is_pinned():
            frames = frames.pin_memory()
        return frames.to(device, non_blocking=True)
    return frames.to(device)


@contextlib.contextmanager
def atomic_open(path: Union[str, Path]) -> Iterator[TextIO]:
    """Open a temp file beside ``path`` for writing; on success it is synced and renamed onto ``path``, on error
    removed: a crash never leaves a half-written file under the final name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def jsonable(x: Any) -> Any:
    """``x`` made of JSON types only: tuples -> lists, keys -> str, numpy scalars -> Python numbers, anything
    else unknown -> ``str(x)``."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.integer, np.floating, np.bool_)):
        return x.item()
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)
