"""Checks on pycocotools RLEs before they reach its C code.

pycocotools trusts its input: a compressed ``counts`` string that is truncated or encodes the wrong number of
pixels is silently read past its end or gives a wrong IoU. :func:`rle_string_totals` decodes many strings at
once with numpy (no per-run Python loop) so every RLE of a result file can be checked cheaply.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# The compressed format (pycocotools maskApi.c rleToString): each run length after the first two is stored as the
# difference to the run two places before it; a value is written 5 bits per character (char - 48), low bits
# first; bit 0x20 = another character follows; bit 0x10 of the last character = negative (sign-extend).
_MAX_CHARS = 7  # 35 bits: more than any image has pixels


def rle_string_totals(blobs: Sequence[bytes], chunk_chars: int = 1 << 16) -> np.ndarray:
    """Number of pixels each compressed RLE ``counts`` string covers (its run lengths summed), or -1 where the
    string is not valid (empty, characters outside the format, a value cut off at the end, an over-long value).

    Run ``m`` is ``x[m] + run[m-2]`` for ``m > 2`` (``x`` the stored values), so the total is a weighted sum of
    the stored values: ``x[0]`` counts once and ``x[m]`` (m >= 1) once for every run of the same parity from
    ``m`` on, ``(n - 1 - m) // 2 + 1`` times for a string of ``n`` values. No per-run running sums are needed.
    """
    n = len(blobs)
    lens = np.fromiter(map(len, blobs), np.int64, n)
    # in blocks of about chunk_chars characters: the temporaries stay in cache, which is several times faster
    bounds = np.searchsorted(np.cumsum(lens), np.arange(chunk_chars, int(lens.sum()) + chunk_chars, chunk_chars),
                             side="right")
    out, lo = [], 0
    for hi in np.unique(np.concatenate((bounds, [n]))):
        if hi > lo:
            out.append(_totals(blobs[lo:hi], lens[lo:hi]))
            lo = hi
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _totals(blobs: Sequence[bytes], lens: np.ndarray) -> np.ndarray:
    n = len(blobs)
    out = np.full(n, -1, np.int64)
    if not lens.any():
        return out
    v = np.frombuffer(b"".join(blobs), np.uint8).astype(np.int64) - 48
    size = v.size
    nonempty = lens > 0
    last = np.cumsum(lens)[nonempty] - 1                       # last character of each non-empty string
    first_char = last - lens[nonempty] + 1
    bad = ~nonempty
    badc = np.cumsum((v < 0) | (v > 63))                       # bad characters, counted per string below
    bad[nonempty] |= (badc[last] - np.where(first_char > 0, badc[first_char - 1], 0)) > 0
    is_end = (v & 0x20) == 0
    bad[nonempty] |= ~is_end[last]                             # ends in the middle of a value
    is_end[last] = True                                        # never let a value run into the next string
    idx = np.arange(size)
    start = np.empty(size, bool)
    start[0], start[1:] = True, is_end[:-1]
    j = idx - np.maximum.accumulate(np.where(start, idx, 0))   # position of each character in its value
    too_long = j >= _MAX_CHARS
    j = np.minimum(j, _MAX_CHARS - 1)
    contrib = (v & 0x1F) << (5 * j)
    contrib -= (is_end & ((v & 0x10) != 0)).astype(np.int64) << (5 * (j + 1))
    x = np.add.reduceat(contrib, np.flatnonzero(start))         # one stored value per token
    ends_per_string = np.diff(np.concatenate(([0], np.cumsum(is_end)[last])))
    tok_string = np.repeat(np.flatnonzero(nonempty), ends_per_string)
    if too_long.any():
        bad[tok_string[np.maximum.reduceat(too_long, np.flatnonzero(start))]] = True
    ntok = np.repeat(ends_per_string, ends_per_string)
    m = np.arange(x.size) - np.repeat(np.cumsum(ends_per_string) - ends_per_string, ends_per_string)
    weight = np.where(m == 0, 1, (ntok - 1 - m) // 2 + 1)
    # float sums are exact for any real image (< 2**53 pixels); a garbage string cannot land back on h * w
    totals = np.bincount(tok_string, weights=x * weight, minlength=n)
    return np.where(bad, -1, np.round(totals).astype(np.int64))
