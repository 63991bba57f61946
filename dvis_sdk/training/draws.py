"""Random draws of the training losses, behind one object so that they can be seeded or replayed.

The official DVIS++ loss code draws random numbers in four places: the matcher's point set (one
``torch.rand(1, P, 2)`` per cost matrix), the criterion's importance sampler (candidates and the uniformly random
rest, per mask-loss call), the tracker's noiser (the per-frame decision, a permutation, the mixing weights or split
points) and the refiner's class memory (a shuffle when a class overflows). The matcher, criterion, noiser and
class memory take a :class:`Draws` and ask it for each of those; :class:`Draws` itself serves fresh draws from an
optional ``torch.Generator``. :class:`ReplayDraws` serves recorded draws back in call order, which is how the tests
reproduce the official fixtures exactly - the loss math is the same code either way.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["Draws", "ReplayDraws", "DrawsExhausted"]

KINDS = ("matcher_points", "point_candidates", "point_random", "noise_decision", "noise_permutation",
         "noise_weights", "noise_split", "memory_shuffle")


class DrawsExhausted(RuntimeError):
    """A :class:`ReplayDraws` was asked for more draws of a kind than it holds, or for a different shape."""


class Draws:
    """Fresh random draws (uniform in [0, 1) unless said otherwise), from ``generator`` (default: torch's global RNG).

    Every method returns CPU tensors / Python values; callers move them to their device.
    """

    def __init__(self, generator: Optional[torch.Generator] = None):
        self.generator = generator

    def matcher_points(self, num_points: int) -> Tensor:
        """(1, P, 2) point coordinates shared by all queries and targets of one cost matrix."""
        return torch.rand(1, num_points, 2, generator=self.generator)

    def point_candidates(self, rows: int, num: int) -> Tensor:
        """(rows, num, 2) candidate points of the importance sampler (the oversampled set)."""
        return torch.rand(rows, num, 2, generator=self.generator)

    def point_random(self, rows: int, num: int) -> Tensor:
        """(rows, num, 2) uniformly random points completing the importance sampler's set."""
        return torch.rand(rows, num, 2, generator=self.generator)

    def noise_decision(self) -> float:
        """One uniform number per frame; the frame is noised when it is below the noise ratio."""
        return float(torch.rand(1, generator=self.generator))

    def noise_permutation(self, n: int) -> Tensor:
        """(n,) int64 permutation: the query each slot is mixed with."""
        return torch.randperm(n, generator=self.generator)

    def noise_weights(self, n: int) -> Tensor:
        """(n,) mixing weights of ``weighted_average`` noise (the official ``torch.rand(Q, 1, 1)``)."""
        return torch.rand(n, generator=self.generator)

    def noise_split(self, n: int, channels: int) -> Tensor:
        """(n,) int64 split points in [0, channels) of ``crop_concat`` noise."""
        return torch.randint(0, channels, (n,), generator=self.generator)

    def memory_shuffle(self, n: int) -> List[int]:
        """A permutation of ``range(n)``: the order of an overflowing class memory before it is cut."""
        return torch.randperm(n, generator=self.generator).tolist()


class ReplayDraws(Draws):
    """Serves recorded draws in call order, one queue per kind (see ``KINDS``).

    ``ReplayDraws({"matcher_points": [t0, t1], "point_candidates": [...], ...})``. A kind without a queue falls back
    to fresh draws from ``generator`` only if ``strict=False``; otherwise asking for it raises
    :class:`DrawsExhausted`, as does a recorded draw whose shape differs from the one asked for (a different call
    sequence is a bug, not noise). :meth:`remaining` says what was not consumed.
    """

    def __init__(self, recorded: Mapping[str, Iterable[object]], *, strict: bool = True,
                 generator: Optional[torch.Generator] = None):
        super().__init__(generator)
        unknown = set(recorded) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown draw kinds {sorted(unknown)}; expected some of {KINDS}")
        self.queues: Dict[str, Deque[object]] = {k: deque(v) for k, v in recorded.items()}
        self.strict = strict

    def _next(self, kind: str, shape: Optional[Sequence[int]] = None) -> object:
        q = self.queues.get(kind)
        if q is None and not self.strict:
            return None
        if not q:
            raise DrawsExhausted(f"no recorded '{kind}' draw left; record one more or use strict=False")
        value = q.popleft()
        if shape is not None and tuple(torch.as_tensor(value).shape) != tuple(shape):
            raise DrawsExhausted(f"recorded '{kind}' draw has shape {tuple(torch.as_tensor(value).shape)}, "
                                 f"the call asks for {tuple(shape)}")
        return value

    def remaining(self) -> Dict[str, int]:
        """Unconsumed draws per kind."""
        return {k: len(q) for k, q in self.queues.items() if q}

    def matcher_points(self, num_points: int) -> Tensor:
        v = self._next("matcher_points", (1, num_points, 2))
        return super().matcher_points(num_points) if v is None else torch.as_tensor(v, dtype=torch.float32)

    def point_candidates(self, rows: int, num: int) -> Tensor:
        v = self._next("point_candidates", (rows, num, 2))
        return super().point_candidates(rows, num) if v is None else torch.as_tensor(v, dtype=torch.float32)

    def point_random(self, rows: int, num: int) -> Tensor:
        v = self._next("point_random", (rows, num, 2))
        return super().point_random(rows, num) if v is None else torch.as_tensor(v, dtype=torch.float32)

    def noise_decision(self) -> float:
        v = self._next("noise_decision")
        return super().noise_decision() if v is None else float(v)  # type: ignore[arg-type]

    def noise_permutation(self, n: int) -> Tensor:
        v = self._next("noise_permutation", (n,))
        return super().noise_permutation(n) if v is None else torch.as_tensor(v, dtype=torch.int64)

    def noise_weights(self, n: int) -> Tensor:
        v = self._next("noise_weights")
        if v is None:
            return super().noise_weights(n)
        w = torch.as_tensor(v, dtype=torch.float32).flatten()
        if w.numel() != n:
            raise DrawsExhausted(f"recorded 'noise_weights' draw has {w.numel()} values, the call asks for {n}")
        return w

    def noise_split(self, n: int, channels: int) -> Tensor:
        v = self._next("noise_split", (n,))
        return super().noise_split(n, channels) if v is None else torch.as_tensor(v, dtype=torch.int64)

    def memory_shuffle(self, n: int) -> List[int]:
        v = self._next("memory_shuffle", (n,))
        return super().memory_shuffle(n) if v is None else [int(i) for i in torch.as_tensor(v).tolist()]
