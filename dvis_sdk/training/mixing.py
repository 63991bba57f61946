"""Several training sets as one: classes matched by name (:func:`align_classes`) and clips drawn from each set
with a given ratio (:class:`MixedClipDataset`, the official ``DATASET_RATIO`` of ``build_combined_loader``: every
clip comes from set ``k`` with probability ``ratio[k] / sum(ratio)``)."""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from .datasets import Clip

__all__ = ["align_classes", "MixedClipDataset", "parse_class_map", "DROP"]

#: a class mapped to this name is not trained on (its objects are ignored)
DROP = "-"


def parse_class_map(text: Optional[str]) -> Dict[str, str]:
    """``"person=human,bicycle=-"`` -> ``{"person": "human", "bicycle": "-"}`` (``-`` drops the class)."""
    out: Dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"class map entry {item.strip()!r} is not OLD=NEW (e.g. person=human, or bicycle=- to "
                             "drop a class)")
        old, new = (s.strip() for s in item.split("=", 1))
        if not old or not new:
            raise ValueError(f"class map entry {item.strip()!r} has an empty name")
        out[old] = new
    return out


def align_classes(names: Sequence[Sequence[str]], class_map: Optional[Mapping[str, str]] = None
                  ) -> Tuple[List[str], List[np.ndarray], List[List[str]]]:
    """Match the class names of several sets.

    Every name is first renamed by ``class_map`` (``DROP`` drops it); the classes are then the union of the names,
    in the first set's order, then each later set's new names in its order. Returns ``(class names, per set an
    array label -> combined label (-1: dropped), per set the names no other set has)`` (the last is empty with a
    single set)."""
    cmap = dict(class_map or {})
    known = {n for ns in names for n in ns}
    unused = sorted(k for k in cmap if k not in known)
    if unused:
        raise ValueError(f"class map names {unused} are in no dataset (classes: {sorted(known)})")
    renamed = [[cmap.get(n, n) for n in ns] for ns in names]
    combined: List[str] = []
    for ns in renamed:
        combined += [n for n in ns if n != DROP and n not in combined]
    if not combined:
        raise ValueError("the class map drops every class")
    index = {n: i for i, n in enumerate(combined)}
    remaps = [np.asarray([index.get(n, -1) for n in ns], np.int64) for ns in renamed]
    only = []
    for k, ns in enumerate(renamed):
        others = {n for j, o in enumerate(renamed) if j != k for n in o}
        only.append([n for n in ns if n != DROP and n not in others] if len(names) > 1 else [])
    return combined, remaps, only


class MixedClipDataset:
    """Clips from several datasets (``VideoClipDataset`` / ``CocoClipDataset``) in one label space.

    Args:
        sources: the datasets (same ``num_frames``).
        class_names: the combined classes; ``remaps[k]`` maps set ``k``'s labels to them (-1: dropped object).
        ratios: sampling weight per set (default 1 each: the official ``DATASET_RATIO`` default).
    """

    def __init__(self, sources: Sequence[Any], class_names: Sequence[str], remaps: Sequence[np.ndarray],
                 ratios: Optional[Sequence[float]] = None):
        if not sources or len(remaps) != len(sources):
            raise ValueError("give one label remap per dataset")
        ratios = [1.0] * len(sources) if ratios is None else [float(r) for r in ratios]
        if len(ratios) != len(sources):
            raise ValueError(f"{len(ratios)} dataset ratios for {len(sources)} datasets: give one per --data")
        if any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise ValueError(f"dataset ratios must be >= 0 with a positive sum, got {ratios}")
        frames = {s.num_frames for s in sources}
        if len(frames) != 1:
            raise ValueError(f"the datasets sample clips of different lengths {sorted(frames)}")
        self.sources = list(sources)
        self.names = list(class_names)
        self.remaps = [np.asarray(r, np.int64) for r in remaps]
        self.probs = np.asarray(ratios) / sum(ratios)
        self.num_frames = frames.pop()
        # video indices of the sets made disjoint (the tracker's per-frame cache is keyed by them)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources[:-1]]).tolist()
        self.cacheable = all(getattr(s, "cacheable", True) for s in self.sources)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def class_names(self) -> List[str]:
        return list(self.names)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def sample(self, index: int, rng: np.random.Generator) -> Clip:
        """A clip from set ``k`` drawn with the ratios (``rng``), item ``index`` modulo that set's size."""
        k = int(rng.choice(len(self.sources), p=self.probs)) if len(self.sources) > 1 else 0
        src = self.sources[k]
        clip = src.sample(int(index) % len(src), rng)
        labels = torch.from_numpy(self.remaps[k])[clip.labels] if len(clip.labels) else clip.labels
        keep = labels >= 0
        return Clip(frames=clip.frames, labels=labels[keep], ids=clip.ids[keep], masks=clip.masks[keep],
                    video_index=clip.video_index + self.offsets[k], frame_indices=clip.frame_indices,
                    flipped=clip.flipped)
