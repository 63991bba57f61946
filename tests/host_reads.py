"""Count device -> host reads (synchronisations on a GPU) inside a block, on any device, CPU included.

Every Tensor operation that hands a value to Python or copies to host memory is counted: ``item``, ``tolist``,
``bool`` / ``int`` / ``float`` / ``index`` conversions, ``cpu``, ``numpy``, printing, and the operations whose
output size depends on the data (``nonzero``, boolean-mask indexing, ``masked_select``, ``unique``), which wait
for the device as well. A CPU run counts exactly what a GPU run would synchronise on."""
from __future__ import annotations

import traceback
from typing import List, Tuple

import torch
from torch.overrides import TorchFunctionMode

_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__,
          torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.__complex__, torch.Tensor.cpu,
          torch.Tensor.numpy, torch.Tensor.__repr__, torch.Tensor.__format__, torch.Tensor.nonzero, torch.nonzero,
          torch.Tensor.masked_select, torch.masked_select, torch.unique, torch.Tensor.unique, torch.argwhere,
          torch.Tensor.argwhere, torch.is_nonzero, torch.equal, torch.allclose, torch.Tensor.allclose}


def _bool_index(args) -> bool:
    idx = args[1] if len(args) > 1 else None
    items = idx if isinstance(idx, tuple) else (idx,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)


class HostReads(TorchFunctionMode):
    """``with HostReads() as r: ...``; ``r.count`` host reads, ``r.where`` (name, caller line) of each."""

    def __init__(self):
        super().__init__()
        self.where: List[Tuple[str, str]] = []
        self._depth = 0

    @property
    def count(self) -> int:
        return len(self.where)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # only the outermost call counts (e.g. __repr__ calls tolist internally)
        if self._depth == 0 and (func in _READS or (func is torch.Tensor.__getitem__ and _bool_index(args))):
            frame = next((f for f in reversed(traceback.extract_stack()[:-1]) if "host_reads" not in f.filename),
                         None)
            self.where.append((getattr(func, "__name__", str(func)),
                               f"{frame.filename}:{frame.lineno}" if frame else "?"))
        self._depth += 1
        try:
            return func(*args, **kwargs)
        finally:
            self._depth -= 1
