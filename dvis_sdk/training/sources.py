"""The training sets of a fine-tuning run: YouTube-VIS video sets and COCO image sets, found from a folder or an
annotation JSON (:func:`open_source`), matched by class name and turned into one clip dataset per stage
(:func:`stage_dataset`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .coco import CocoAnnotations, CocoClipDataset, is_coco
from .datasets import DatasetError, VideoClipDataset, YTVISAnnotations
from .mixing import MixedClipDataset, align_classes
from .pseudo_video import PseudoVideoAugmentation

__all__ = ["TrainSource", "find_dataset", "open_source", "open_sources", "stage_dataset", "class_names_of",
           "ratios_of", "ANNOTATION_NAMES"]

PathLike = Union[str, Path]
ANNOTATION_NAMES = ("annotations.json", "train.json", "instances.json", "valid.json", "val.json")


def _annotation_file(data: PathLike) -> Path:
    p = Path(data).expanduser()
    if p.is_dir():
        cands = [p / n for n in ANNOTATION_NAMES if (p / n).is_file()] or sorted(p.glob("*.json"))
        if not cands:
            raise DatasetError(f"no annotation JSON in {p} (expected annotations.json / train.json / one *.json)")
        if len(cands) > 1 and cands[0].name not in ANNOTATION_NAMES:
            raise DatasetError(f"several JSON files in {p} ({[c.name for c in cands]}): pass the annotation file")
        return cands[0]
    if p.is_file():
        return p
    raise DatasetError(f"annotation file not found: {p}")


def find_dataset(data: PathLike, frames: Optional[PathLike] = None) -> Tuple[Path, Path]:
    """``(annotation json, frames folder)`` of a YouTube-VIS dataset given as its folder or its JSON file.

    A folder holds one annotation JSON (``annotations.json`` / ``train.json`` / ... or the only ``*.json``) and the
    frames in ``JPEGImages/`` (or ``<split>/JPEGImages/``, the official layout); a JSON file's frames are looked for
    beside it. ``frames`` overrides the frames folder.
    """
    ann = _annotation_file(data)
    if frames is not None:
        root = Path(frames).expanduser()
    else:
        opts = [ann.parent / "JPEGImages", ann.parent / ann.stem / "JPEGImages"]
        found = next((o for o in opts if o.is_dir()), None)
        if found is None:
            raise DatasetError(f"no JPEGImages folder next to {ann} (looked in {opts[0]} and {opts[1]}); pass the "
                               "frames folder (--frames)")
        root = found
    if not root.is_dir():
        raise DatasetError(f"frames folder not found: {root}")
    return ann, root


@dataclass
class TrainSource:
    """One training set: its annotation file, the folder its file names are relative to, the parsed annotations
    and its kind (``"ytvis"`` videos or ``"coco"`` images)."""

    path: Path
    root: Path
    annotations: Union[YTVISAnnotations, CocoAnnotations]
    kind: str

    @property
    def class_names(self) -> List[str]:
        return list(self.annotations.class_names)

    @property
    def problems(self) -> List[str]:
        """One line per entry skipped while reading (named by annotation / image / video)."""
        return list(getattr(self.annotations, "problems", []))

    def describe(self) -> str:
        n = len(self.annotations)
        return f"{self.path} ({n} {'images' if self.kind == 'coco' else 'videos'}, {len(self.class_names)} classes)"


def open_source(data: PathLike, frames: Optional[PathLike] = None) -> TrainSource:
    """Read one training set: a YouTube-VIS folder / JSON (frames in ``JPEGImages/`` or ``frames``) or a COCO
    instance JSON / its folder (``file_name`` relative to the JSON's folder, or to ``frames``)."""
    ann = _annotation_file(data)
    try:
        head = json.loads(ann.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"annotation file {ann} is not valid JSON: {e}") from None
    if isinstance(head, Mapping) and is_coco(head):
        root = Path(frames).expanduser() if frames is not None else ann.parent
        coco = CocoAnnotations(head, root, name=str(ann))
        return TrainSource(ann, root, coco, "coco")
    ann, root = find_dataset(ann, frames)
    return TrainSource(ann, root, YTVISAnnotations(ann, root), "ytvis")


def open_sources(data: Union[PathLike, Sequence[PathLike]], frames: Optional[PathLike] = None) -> List[TrainSource]:
    """:func:`open_source` of each of ``data`` (a path or a list); ``frames`` only with a single set."""
    items = [data] if isinstance(data, (str, Path)) else list(data)
    if not items:
        raise DatasetError("no training data given")
    if frames is not None and len(items) > 1:
        raise DatasetError("a frames folder (--frames) goes with a single --data; give each dataset as a folder with "
                           "its frames in JPEGImages/ (or a COCO JSON next to its images)")
    return [open_source(d, frames) for d in items]


def stage_dataset(sources: Sequence[TrainSource], clips: Mapping[str, Any], min_size: int, max_size: int,
                  class_map: Optional[Mapping[str, str]] = None, ratios: Optional[Sequence[float]] = None,
                  augmentation: Optional[PseudoVideoAugmentation] = None) -> Any:
    """The clip dataset of one stage: a ``VideoClipDataset`` per video set, a ``CocoClipDataset`` per image set
    (the same number of frames per clip), combined by class name with the sampling ratios when there are several
    (or a class map). ``clips``: the stage's ``num_frames`` / ``frame_range`` / ``reverse_prob``; ``augmentation``:
    the image sets' pseudo-video settings (default: the official ones)."""
    parts = []
    for s in sources:
        if s.kind == "coco":
            parts.append(CocoClipDataset(s.annotations, num_frames=clips["num_frames"], min_sizes=(min_size,),
                                         max_size=max_size, augmentation=augmentation or PseudoVideoAugmentation()))
        else:
            parts.append(VideoClipDataset(s.annotations, min_sizes=(min_size,), max_size=max_size, **clips))
    if len(parts) == 1 and not class_map and ratios is None:
        return parts[0]
    names, remaps, _ = align_classes([s.class_names for s in sources], class_map)
    return MixedClipDataset(parts, names, remaps, ratios)


def class_names_of(sources: Sequence[TrainSource], class_map: Optional[Mapping[str, str]] = None
                   ) -> Tuple[List[str], Optional[str]]:
    """The classes of the combined sets and, when some class is in only some of them, one line listing those."""
    names, _, only = align_classes([s.class_names for s in sources], class_map)
    parts = [f"only in {s.path}: {o}" for s, o in zip(sources, only) if o]
    line = None
    if parts:
        line = ("classes matched by name across the datasets; " + "; ".join(parts) +
                " (rename with --class-map OLD=NEW, drop with OLD=-)")
    return names, line


def ratios_of(text: Union[str, Sequence[float], None], n: int) -> Optional[List[float]]:
    """``"1,0.75"`` or a list -> one float per dataset (None: equal)."""
    if text is None:
        return None
    vals = [float(v) for v in text.split(",") if v.strip()] if isinstance(text, str) else [float(v) for v in text]
    if len(vals) != n:
        raise DatasetError(f"{len(vals)} dataset ratios for {n} datasets: give one per --data (e.g. 1,0.75)")
    if any(not np.isfinite(v) or v < 0 for v in vals) or sum(vals) <= 0:
        raise DatasetError(f"dataset ratios must be >= 0 with a positive sum, got {vals}")
    return vals
