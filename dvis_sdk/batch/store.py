"""The on-disk state of a batch: per-video results, ``manifest.jsonl``, ``videos.json``, the merged
``results.json``, the run fingerprint and the output-folder lock.

Every file is written atomically (temp file + rename), so a crash never leaves a half-written result that looks
finished. A per-video ``results.json`` is the proof that a video is done: it carries the fingerprint of the
model and options that produced it in ``meta.fingerprint``; the manifest is a report, not the source of truth.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Union

from ..runtime import atomic_open, atomic_write_text
from .discover import VideoTask

RESULT_NAME = "results.json"
OVERLAY_NAME = "overlay.mp4"
MANIFEST_NAME = "manifest.jsonl"
VIDEOS_NAME = "videos.json"
MERGED_NAME = "results.json"
LOCK_NAME = ".dvis_batch.lock"
#: Bumped when the per-video file format changes in a way that must trigger reprocessing.
FORMAT_VERSION = 1
ID_ORDER = ("natural sort order (clip2 before clip10) of the input paths relative to the batch root, without "
            "extension then with, numbered from 1")

PathLike = Union[str, os.PathLike]


class BatchLockedError(RuntimeError):
    """Another batch is writing to the same output folder."""


# ---- fingerprint -----------------------------------------------------------------------------------------------
def weights_digest(model: Any) -> str:
    """sha256 over the model's state dict (names, dtypes, shapes and bytes), independent of the device."""
    import torch

    if not hasattr(model, "state_dict"):  # an exported backend (OnnxDVIS): the digest of its graph files
        return model.digest()
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fingerprint(segmenter: Any, options: Dict[str, Any], dtype: Optional[str] = None) -> str:
    """What decides a video's result: the model config, the weights, the dtype (``dtype``: the one the workers run,
    default the segmenter's), the offline refiner's chunk size and the predict ``options`` (stride, max_frames,
    score_threshold). Window size and device do not enter: they do not change the result."""
    doc = {"format": FORMAT_VERSION, "config": segmenter.cfg.to_dict(), "weights": weights_digest(segmenter.model),
           "dtype": dtype or segmenter.dtype,
           "chunk_size": segmenter.chunk_size if segmenter.mode == "offline" else None,
           "options": options}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- per-video results -----------------------------------------------------------------------------------------
def result_path(out_dir: Path, task: VideoTask) -> Path:
    return Path(out_dir) / task.key / RESULT_NAME


def overlay_path(out_dir: Path, task: VideoTask) -> Path:
    return Path(out_dir) / task.key / OVERLAY_NAME


def read_result_header(path: Path) -> Optional[dict]:
    """``results.json`` without its instances (num_frames, size, meta), read from the head of the file so that
    checking thousands of finished videos stays cheap. None if missing or unreadable."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        # json.dumps escapes quotes inside strings, so this byte sequence can only be the key itself
        i = head.find(b', "instances": ')
        if i > 0:
            return json.loads(head[:i] + b"}")
        doc = json.loads(Path(path).read_bytes())
        return {k: v for k, v in doc.items() if k != "instances"} if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def finished(out_dir: Path, task: VideoTask, fp: str, save_video: bool) -> Optional[dict]:
    """The result header if ``task`` is done with fingerprint ``fp`` (and has its overlay when asked), else None."""
    head = read_result_header(result_path(out_dir, task))
    if head is None or (head.get("meta") or {}).get("fingerprint") != fp:
        return None
    if save_video and not any(overlay_path(out_dir, task).parent.glob("overlay.*")):  # .avi if mp4 was unavailable
        return None
    return head


def clean_temp_files(folder: Path) -> None:
    """Remove temp files a killed run left in a video's output folder (they never look finished)."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp*"):
            try:
                p.unlink()
            except OSError:
                pass


# ---- manifest --------------------------------------------------------------------------------------------------
class Manifest:
    """``manifest.jsonl``: one JSON line per video. Lines are appended (and fsynced) as videos finish, so a killed
    run still reports what it did; at the end of a run the file is rewritten with one line per video, by id."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / MANIFEST_NAME
        self._fh = None

    def previous(self) -> Dict[str, dict]:
        """The last line per ``path`` of an earlier run's manifest (a torn last line is ignored)."""
        out: Dict[str, dict] = {}
        try:
            lines = self.path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return out
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "path" in rec:
                out[rec["path"]] = rec
        return out

    def begin(self, records: Iterable[dict]) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))
        self._fh = open(self.path, "a")

    def append(self, record: dict) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a")
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def finish(self, records: Sequence[dict]) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        ordered = sorted(records, key=lambda r: r.get("video_id") or 0)
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in ordered))


# ---- merged outputs --------------------------------------------------------------------------------------------
def write_videos_json(out_dir: Path, tasks: Sequence[VideoTask]) -> Path:
    """``videos.json``: how the video ids of the merged ``results.json`` map to inputs and per-video results."""
    doc = {"id_order": ID_ORDER,
           "videos": [{"id": t.video_id, "path": t.path, "result": f"{t.key}/{RESULT_NAME}"} for t in tasks]}
    return atomic_write_text(Path(out_dir) / VIDEOS_NAME, json.dumps(doc, indent=1))


def write_merged(out_dir: Path, tasks: Sequence[VideoTask], fp: str) -> Dict[str, int]:
    """Write the merged ``results.json``: the official YouTube-VIS submission format (a JSON list of
    ``{video_id, score, category_id, segmentations}``) over every video finished with fingerprint ``fp``.
    Streams one video at a time, so memory does not grow with the number of videos."""
    out_dir = Path(out_dir)
    path = out_dir / MERGED_NAME
    videos = instances = 0
    with atomic_open(path) as f:
        f.write("[")
        for t in tasks:
            rp = result_path(out_dir, t)
            head = read_result_header(rp)
            if head is None or (head.get("meta") or {}).get("fingerprint") != fp:
                continue
            doc = json.loads(rp.read_text())
            videos += 1
            for e in doc["instances"]:
                f.write(",\n" if instances else "\n")
                f.write(json.dumps({"video_id": t.video_id, "score": e["score"], "category_id": e["category_id"],
                                    "segmentations": e["segmentations"]}))
                instances += 1
        f.write("\n]\n")
    return {"videos": videos, "instances": instances}


# ---- lock ------------------------------------------------------------------------------------------------------
class OutputLock:
    """An exclusive ``flock`` on ``OUT_DIR/.dvis_batch.lock`` for the duration of a run: two batches writing
    the same folder would redo each other's videos. The kernel drops it when the process dies (no stale locks)."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / LOCK_NAME
        self._fh = None

    def __enter__(self) -> "OutputLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            owner = fh.read().strip() or "?"
            fh.close()
            raise BatchLockedError(f"{self.path.parent}: another dvis batch is writing to this folder (pid {owner}); "
                                   "wait for it or use another output folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self._fh.close()  # closing releases the flock
            self._fh = None
