"""A restricted unpickler: only the globals that weights need, so a checkpoint cannot run code while loading.

Allowed: numpy array / scalar / dtype reconstruction, ``collections.OrderedDict``, plain containers and numbers,
torch tensor rebuilding (``torch._utils._rebuild_tensor_v2`` and friends, ``torch.Size``, dtypes; the storages
themselves are resolved by ``torch.load``). Any other global (``os.system``, ``builtins.eval``, a class of some
training framework, ...) raises :class:`UnsafePickleError` before anything is called.
"""
from __future__ import annotations

import pickle
from typing import IO, Any

from .errors import ConversionError

_ALLOWED = frozenset({
    ("collections", "OrderedDict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "complex"),
    ("builtins", "slice"),
    # pickles written by python 3 with protocol <= 2 store bytes as _codecs.encode(str, "latin1")
    ("_codecs", "encode"),
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    # numpy 1.x lives in numpy.core, numpy 2.x in numpy._core; both names occur in files in the wild
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})
# numpy >= 1.25 pickles a dtype as an instance of its class, e.g. numpy.dtypes.Float32DType
_ALLOWED_MODULE_PREFIXES = ("numpy.dtypes",)


class UnsafePickleError(ConversionError):
    """A pickle that references a global weights never need (it could run code); nothing was executed."""


def _is_torch_dtype(module: str, name: str) -> bool:
    if module != "torch":
        return False
    import torch

    return isinstance(getattr(torch, name, None), torch.dtype)


class Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allow-listed globals (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if ((module, name) in _ALLOWED or module.startswith(_ALLOWED_MODULE_PREFIXES)
                or _is_torch_dtype(module, name)):
            return super().find_class(module, name)
        raise UnsafePickleError(f"{module}.{name}")


def load(file: IO[bytes], **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`Unpickler` (the signature ``torch.load(pickle_module=...)`` expects)."""
    return Unpickler(file, **kwargs).load()
