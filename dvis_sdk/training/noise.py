"""Query noise for denoising training of the referring tracker (DVIS++ / LSVOS 2023 report).

During tracker training the initial query of each tracker slot is normally the segmenter query matched to it
(the previous frame's object), which lets the tracker take a shortcut: copy its input. With noise the slot is
initialised from a corrupted mix of the current frame's queries instead, so it has to recover the right
object from its reference (the previous frame's output):

* ``"weighted_average"`` (official ``"wa"``): ``alpha_i * Q_i + (1 - alpha_i) * Q_j``, ``alpha_i ~ U(0, 1)``;
* ``"crop_concat"`` (official ``"cc"``): ``concat(Q_i[:k_i], Q_j[k_i:])``, ``k_i ~ randint(0, C)``;
* ``"shuffle"`` (official ``"rs"``): ``Q_sigma(i)``;
* ``"none"``: unchanged.

``j = sigma(i)`` for one random permutation ``sigma`` of the N queries (as the official noiser, ``j`` may equal
``i``). Each noised slot gets an index: the query it is now mostly made of (weight >= 0.5 / the larger share
of the channels / the permuted index). The official tracker takes that index as the slot's reference for the next
frame and re-orders the segmenter's predictions by it (which only steers the early-phase matching). The slot's
loss target does not follow the noise: the consistent matcher keeps every object in the slot it was matched to
in its first visible frame, so a noised slot must recover its own object from its reference.
:class:`QueryNoiser` plugs this into :class:`dvis_sdk.models.tracker.DVISPlusTracker`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .draws import Draws

__all__ = ["NOISE_MODES", "apply_noise", "canonical_mode", "QueryNoiser", "attach_noiser"]

NOISE_MODES = ("none", "weighted_average", "crop_concat", "shuffle")
# official config names (MODEL.TRACKER.NOISE_MODE) -> ours
_ALIASES = {"wa": "weighted_average", "cc": "crop_concat", "rs": "shuffle", "none": "none"}


def canonical_mode(mode: str) -> str:
    """Our name for a noise mode, accepting the official short names ``wa`` / ``cc`` / ``rs``."""
    m = str(mode).lower()
    if m in NOISE_MODES:
        return m
    if m in _ALIASES:
        return _ALIASES[m]
    raise ValueError(f"unknown noise mode {mode!r}; expected one of {NOISE_MODES} (or the official 'wa', 'cc', 'rs')")


def apply_noise(queries: Tensor, mode: str, generator: Optional[torch.Generator] = None, *,
                ratio: float = 1.0, draws: Optional[Draws] = None) -> Tuple[Tensor, Tensor]:
    """Noise a set of N queries.

    Args:
        queries: (N, C) or (N, B, C); the B videos of a batch share the random draw (one permutation, one
            weight / split point per slot), as in the official code.
        mode: ``"none"``, ``"weighted_average"``, ``"crop_concat"`` or ``"shuffle"`` (or ``wa`` / ``cc`` / ``rs``).
        generator: a CPU ``torch.Generator``; the result is a pure function of its state and the input.
        ratio: probability that the set is noised at all (the official ``NOISE_RATIO`` draws once per frame);
            with the default 1.0 no decision is drawn.
        draws: where the random numbers come from (:class:`~dvis_sdk.training.draws.Draws`; default
            ``Draws(generator)``): the decision, the permutation, the weights / split points.

    Returns:
        ``(noised, targets)``: ``noised`` has the shape and dtype of ``queries``; ``targets`` is an int64 (N,)
        tensor on the queries' device, the query each slot is now mostly made of (``arange(N)`` when not
        noised).
    """
    if queries.dim() not in (2, 3):
        raise ValueError(f"queries must be (N, C) or (N, B, C), got shape {tuple(queries.shape)}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    mode = canonical_mode(mode)
    n, c = queries.shape[0], queries.shape[-1]
    device = queries.device
    draws = draws if draws is not None else Draws(generator)
    identity = torch.arange(n, dtype=torch.int64)
    if mode == "none" or n == 0 or (ratio < 1.0 and not draws.noise_decision() < ratio):
        return queries.clone(), identity.to(device)

    perm = draws.noise_permutation(n)
    other = queries[perm.to(device)]
    extra = (1,) * (queries.dim() - 1)  # broadcast a per-slot value over (B,) C
    if mode == "shuffle":
        return other, perm.to(device)
    if mode == "weighted_average":
        alpha = draws.noise_weights(n)
        a = alpha.to(device=device, dtype=queries.dtype).view(n, *extra)
        noised = queries * a + other * (1.0 - a)
        targets = torch.where(alpha >= 0.5, identity, perm)
        return noised, targets.to(device)
    # crop_concat: the first k_i channels from Q_i, the rest from Q_sigma(i)
    k = draws.noise_split(n, c)
    keep = (torch.arange(c)[None, :] < k[:, None])  # (N, C)
    if queries.dim() == 3:
        keep = keep[:, None, :]
    noised = torch.where(keep.to(device), queries, other)
    # Q_i gives k_i channels, Q_sigma(i) gives C - k_i: the larger share wins (a tie stays with Q_i, which for an
    # even C is the official rule k < C // 2)
    targets = torch.where(2 * k < c, perm, identity)
    return noised, targets.to(device)


class QueryNoiser:
    """The tracker's training-time noiser (assign to ``DVISPlusTracker.noiser``; see :func:`attach_noiser`).

    Called per frame (not the first of a video, training mode only) with the Hungarian-matched indices
    (B, Q) and the frame's un-normalised queries (Q, B, C). With probability ``ratio`` (one draw per frame,
    as official), the frame's queries IN THEIR SEGMENTER ORDER are noised and the returned indices are the
    noise targets, otherwise the matched queries are returned unchanged. The returned indices become the
    slots' references for the next frame and the order the trainer re-orders segmenter predictions by.
    """

    def __init__(self, mode: str = "weighted_average", ratio: float = 0.5,
                 generator: Optional[torch.Generator] = None, draws: Optional[Draws] = None):
        self.mode = canonical_mode(mode)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"noise ratio must be in [0, 1], got {ratio}")
        self.ratio = float(ratio)
        self.generator = generator
        self.draws = draws if draws is not None else Draws(generator)
        self.num_calls = 0
        self.num_noised = 0

    def __call__(self, matched: Tensor, embeds_no_norm: Tensor) -> Tuple[Tensor, Tensor]:
        self.num_calls += 1
        if self.mode != "none" and self.draws.noise_decision() < self.ratio:
            self.num_noised += 1
            noised, targets = apply_noise(embeds_no_norm, self.mode, draws=self.draws)
            return targets.unsqueeze(0).expand(matched.shape[0], -1).to(matched.device), noised
        index = matched.t().unsqueeze(-1).expand(-1, -1, embeds_no_norm.shape[-1])
        return matched, torch.gather(embeds_no_norm, 0, index)

    def __repr__(self) -> str:
        return f"QueryNoiser(mode={self.mode!r}, ratio={self.ratio})"


def attach_noiser(tracker: torch.nn.Module, mode: str, ratio: float,
                  generator: Optional[torch.Generator] = None,
                  draws: Optional[Draws] = None) -> Optional[QueryNoiser]:
    """Install a :class:`QueryNoiser` on a DVIS++ tracker (``mode="none"`` removes any). Returns it."""
    if not hasattr(tracker, "noiser"):
        raise TypeError(f"{type(tracker).__name__} has no noiser hook (only the DVIS++ tracker is trained with noise)")
    noiser = None if canonical_mode(mode) == "none" else QueryNoiser(mode, ratio, generator, draws)
    tracker.noiser = noiser
    return noiser
