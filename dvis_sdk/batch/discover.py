"""Find the videos of a batch: a folder (optionally recursive), a glob, a text file listing videos, or a list.

A *video* is a file matching the pattern, or a folder holding only image files (a folder of frames). Each video
gets an output key: its path relative to the batch root without the suffix (``sub/clip.mp4`` -> ``sub/clip``),
and a video id: its 1-based position in the natural sort order of these relative paths without suffix, then with
(``clip``, ``clip2``, ``clip10``, ``sub/a``), so ids do not depend on the file system's listing order.
"""
from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from ..io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_sort_key

PathLike = Union[str, os.PathLike]
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class VideoTask:
    """One video of a batch. ``path`` is what gets opened; ``key`` the output folder relative to ``out_dir``;
    ``kind`` is ``"file"``, ``"frames"`` (a folder of images) or ``"missing"`` (listed but not found)."""

    video_id: int
    path: str
    key: str
    kind: str = "file"

    @property
    def index(self) -> int:
        return self.video_id - 1


def is_frame_folder(folder: Path) -> bool:
    """True if ``folder`` holds at least one image and nothing else (hidden entries ignored)."""
    seen = False
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    for e in entries:
        if e.name.startswith("."):
            continue
        if not e.is_file() or Path(e.name).suffix.lower() not in IMAGE_EXTENSIONS:
            return False
        seen = True
    return seen


def _matches(name: str, patterns: Sequence[str]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


def _inside(path: Path, others: Sequence[Path]) -> bool:
    rp = path.resolve()
    return any(rp == o or o in rp.parents for o in others)


def _walk(root: Path, patterns: Sequence[str], recursive: bool, exclude: Sequence[Path]) -> Iterable[Tuple[Path, str]]:
    for entry in sorted(root.iterdir(), key=lambda p: natural_sort_key(p.name)):
        if entry.name.startswith(".") or _inside(entry, exclude):
            continue
        if entry.is_dir():
            if is_frame_folder(entry):
                yield entry, "frames"
            elif recursive:
                yield from _walk(entry, patterns, recursive, exclude)
        elif entry.is_file() and _matches(entry.name, patterns):
            yield entry, "file"


def _kind(path: Path) -> Optional[str]:
    if path.is_dir():
        return "frames" if is_frame_folder(path) else None
    if path.is_file():
        return "file"
    return "missing"


def _read_list(list_file: Path) -> List[Tuple[Path, str]]:
    try:
        text = list_file.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{list_file}: not a video file (extension {list_file.suffix or 'none'}) nor a text file "
                         f"listing videos; give a folder, a glob, a video list (.txt) or a video") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        if not p.is_absolute():
            p = list_file.parent / p
        kind = _kind(p)
        out.append((p, kind or "file"))  # a listed folder that is not a frame folder fails with a clear reason
    return out


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if _GLOB_CHARS & set(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def discover_videos(src: Union[PathLike, Sequence[PathLike]], pattern: Union[str, Sequence[str]] = "*.mp4",
                    recursive: bool = False, exclude: Sequence[PathLike] = ()) -> List[VideoTask]:
    """List the videos of ``src`` (see the module docstring), sorted, with ids and output keys.

    ``src``: a folder (files matching ``pattern`` and folders of frames; sub-folders too with ``recursive``),
    a glob (``"data/**/*.mp4"``), a text file with one path per line (relative to the file; ``#`` comments),
    a single video / frame folder, or a list of paths. ``exclude``: folders never entered (the output folder).
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    excl = [Path(e).resolve() for e in exclude]
    entries: List[Tuple[Path, str]]
    if isinstance(src, (list, tuple)):
        entries = [(Path(p).expanduser(), _kind(Path(p).expanduser()) or "file") for p in src]
        root = None
    else:
        path = Path(src).expanduser()
        if path.is_dir():
            if is_frame_folder(path):
                entries, root = [(path, "frames")], path.parent
            else:
                entries, root = list(_walk(path, patterns, recursive, excl)), path
        elif path.is_file():
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                entries, root = [(path, "file")], path.parent
            else:  # .txt/.lst or anything else that reads as text: one path per line
                entries, root = _read_list(path), None
        elif _GLOB_CHARS & set(str(src)):
            found = sorted(glob.glob(str(path), recursive=True))
            entries = []
            for f in found:
                p = Path(f)
                if p.name.startswith(".") or _inside(p, excl):
                    continue
                k = _kind(p)
                if k in ("file", "frames"):
                    entries.append((p, k))
            root = _glob_root(str(path))
        else:
            raise FileNotFoundError(f"{src}: no such folder, video list or video (and not a glob)")
    if root is None:
        parents = [str(p.resolve().parent) for p, _ in entries]
        root = Path(os.path.commonpath(parents)) if parents else Path(".")

    # de-duplicate (a list may name a file twice), then relative paths and output keys
    seen, uniq = set(), []
    for p, k in entries:
        rp = p.resolve()
        if rp not in seen:
            seen.add(rp)
            uniq.append((p, k, _relative(p, root)))

    def stem(k: str, rel: str) -> str:
        return rel if k == "frames" or not Path(rel).suffix else Path(rel).with_suffix("").as_posix()

    uniq.sort(key=lambda e: (natural_sort_key(stem(e[1], e[2])), natural_sort_key(e[2])))
    stems = [stem(k, rel) for _, k, rel in uniq]
    counts: dict = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    tasks = []
    for i, ((p, k, rel), stem) in enumerate(zip(uniq, stems)):
        # clip.mp4 and clip.avi side by side would share "clip": keep the full name for such collisions
        key = stem if counts[stem] == 1 else rel
        key = key.replace("../", "_up_/")  # entries of a list outside its common root stay inside out_dir
        tasks.append(VideoTask(video_id=i + 1, path=str(p), key=key, kind=k))
    return tasks
