"""``predict_folder``: segment every video of a folder / glob / list into an output tree; resumable and
fault-isolated. See ``docs/batch.md``."""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from ..io.segmentation import collect_submission
from .discover import VideoTask, discover_videos
from .local import Events, run_inprocess, run_processes
from .store import (
    MANIFEST_NAME,
    MERGED_NAME,
    Manifest,
    OutputLock,
    fingerprint,
    finished,
    result_path,
    write_merged,
    write_videos_json,
)
from .worker import BatchOptions, new_record

PathLike = Union[str, os.PathLike]


class BatchInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM during a batch (``signum`` says which)."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class BatchSummary:
    """What a batch run did. ``records``: one manifest record per video that got a status in this run (by id);
    ``not_processed``: videos an interrupt left untouched; ``interrupted``: the signal number, or None."""

    out_dir: Path
    records: List[dict]
    not_processed: List[str] = field(default_factory=list)
    interrupted: Optional[int] = None
    elapsed: float = 0.0
    merged: Dict[str, int] = field(default_factory=dict)

    def _status(self, s: str) -> List[dict]:
        return [r for r in self.records if r["status"] == s]

    @property
    def ok(self) -> List[dict]:
        return self._status("ok")

    @property
    def failed(self) -> List[dict]:
        return self._status("failed")

    @property
    def skipped(self) -> List[dict]:
        return self._status("skipped")

    @property
    def exit_code(self) -> int:
        """128 + signal if interrupted, else 1 if any video failed, else 0."""
        if self.interrupted is not None:
            return 128 + int(self.interrupted)
        return 1 if self.failed else 0

    @property
    def videos_per_hour(self) -> float:
        """Videos processed (ok) per hour of this run's wall time."""
        return len(self.ok) * 3600.0 / self.elapsed if self.elapsed > 0 else 0.0

    def table(self, max_failures: int = 20) -> str:
        """A human-readable summary: counts per status, throughput, the failures with their reasons."""
        rows = [("status", "videos", "frames", "seconds")]
        for s in ("ok", "skipped", "failed"):
            recs = self._status(s)
            frames = sum(r.get("frames") or 0 for r in recs)
            secs = sum(r.get("seconds") or 0 for r in recs) if s != "skipped" else None
            rows.append((s, str(len(recs)), str(frames) if s != "failed" else "-",
                         f"{secs:.1f}" if secs is not None else "-"))
        if self.not_processed:
            rows.append(("not processed", str(len(self.not_processed)), "-", "-"))
        rows.append(("total", str(len(self.records) + len(self.not_processed)), "", f"{self.elapsed:.1f} wall"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()
                 for r in rows]
        lines.append(f"throughput: {self.videos_per_hour:.0f} videos/hour")
        if self.interrupted is not None:
            lines.append(f"interrupted ({signal.Signals(self.interrupted).name}): finished videos are kept; rerun "
                         "the same command to resume")
        if self.failed:
            lines.append("failed:")
            for r in self.failed[:max_failures]:
                lines.append(f"  {r['error']}")
            if len(self.failed) > max_failures:
                lines.append(f"  ... and {len(self.failed) - max_failures} more (see {MANIFEST_NAME})")
        lines.append(f"results: {Path(self.out_dir) / MERGED_NAME} ({self.merged.get('videos', 0)} videos, "
                     f"{self.merged.get('instances', 0)} instances); per video: {MANIFEST_NAME}")
        dense = self.merged.get("vps_videos", 0) + self.merged.get("vss_videos", 0)
        if dense:  # video panoptic / semantic models: the official submission layout
            lines.append(f"submission: {Path(self.out_dir) / 'submission'} ({dense} videos)")
        return "\n".join(lines)


@contextmanager
def _interrupts() -> Iterator[Dict[str, Any]]:
    """SIGINT and SIGTERM raise :class:`BatchInterrupted` in the main thread while the batch runs; during the
    final writes (``state["deferred"] = True``) they are only noted, so the manifest and merged file complete."""
    state: Dict[str, Any] = {"deferred": False, "signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, frame: Any) -> None:
        if state["deferred"]:
            state["signum"] = state["signum"] or signum
            return
        raise BatchInterrupted(signum)

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, handler)
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Progress(Events):
    def __init__(self, enabled: bool, total: int, manifest: Manifest, records: Dict[int, dict]):
        self.enabled = enabled
        self.manifest = manifest
        self.records = records
        self.failed = 0
        if enabled:
            from tqdm import tqdm
            self.videos = tqdm(total=total, desc="videos", unit="video", position=0, dynamic_ncols=True)
            self.frames = tqdm(total=0, desc="frames", unit="frame", position=1, dynamic_ncols=True)

    def on_start(self, task: VideoTask, num_frames: int) -> None:
        if self.enabled:
            self.frames.total += num_frames
            self.frames.refresh()

    def on_frames(self, n: int) -> None:
        if self.enabled:
            self.frames.update(n)

    def on_record(self, record: dict) -> None:
        self.records[record["video_id"]] = record
        self.manifest.append(record)
        if record["status"] == "failed":
            self.failed += 1
        if self.enabled:
            if record["status"] == "failed":
                self.videos.write(f"failed: {record['error']}", file=sys.stderr)
            self.videos.update(1)
            self.videos.set_postfix(failed=self.failed, refresh=False)

    def close(self) -> None:
        if self.enabled:
            self.frames.close()
            self.videos.close()


def _parse_devices(devices: Union[None, str, Sequence[str]]) -> Optional[List[str]]:
    if devices is None:
        return None
    items = [d.strip() for d in devices.split(",")] if isinstance(devices, str) else [str(d) for d in devices]
    items = [d for d in items if d]
    return items or None


def _check_devices(devices: Sequence[str]) -> None:
    import torch

    from ..runtime import resolve_device

    for d in devices:
        dev = resolve_device(d)
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {d!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def _run_dtype(segmenter: Any, devices: Sequence[str], backend: str) -> str:
    """The dtype the workers run: the segmenter's request resolved for each worker's device (the driver may be a
    CPU feeding GPU workers); the request itself where the driver cannot see the device (a Ray cluster's GPUs)."""
    from ..runtime import resolve_dtype

    asked = getattr(segmenter, "requested_dtype", segmenter.dtype)
    if getattr(segmenter, "backend", "pytorch") != "pytorch":  # an export: its providers decide (fp16 only via TRT)
        return asked
    if backend == "ray" and asked == "auto" and any(d.startswith("cuda") for d in devices):
        return asked
    return ",".join(sorted({resolve_dtype(asked, "cuda" if backend == "ray" and d.startswith("cuda") else d)
                            for d in devices}))


def predict_folder(segmenter: Any, src: Union[PathLike, Sequence[PathLike]], out_dir: PathLike, *,
                   pattern: Union[str, Sequence[str]] = "*.mp4", recursive: bool = False, save_video: bool = False,
                   overwrite: bool = False, workers: int = 1, devices: Union[None, str, Sequence[str]] = None,
                   backend: str = "local", ray_address: Optional[str] = None, progress: bool = True,
                   stride: int = 1, max_frames: Optional[int] = None, score_threshold: float = 0.0,
                   overlap: bool = True, cpus_per_worker: Optional[int] = None,
                   placement_timeout: float = 600.0) -> BatchSummary:
    """Segment every video of ``src`` into ``out_dir``; resumable and fault-isolated (see ``docs/batch.md``).

    Args:
        segmenter: a :class:`~dvis_sdk.VideoSegmenter` (its model, dtype, window and chunk sizes are used).
        src: a folder, a glob (``"data/**/*.mp4"``), a text file listing videos (one per line), or a list of
            paths. Folders holding only images are videos (frame folders) too.
        out_dir: ``<key>/results.json`` per video (``key`` = the input's path relative to ``src`` without its
            suffix; plus ``overlay.mp4`` with ``save_video``), ``results.json`` (all videos, official
            YouTube-VIS submission format), ``videos.json`` (video id -> input), ``manifest.jsonl``.
        pattern, recursive: which files of a folder are videos; ``recursive`` also walks sub-folders.
        overwrite: reprocess videos that already have a result for this model and options.
        workers, devices: ``devices`` (``"cuda:0,cuda:1"`` or a list) runs one worker per entry; otherwise
            ``workers`` workers on the segmenter's device. One worker on the segmenter's device runs in this
            process; more run in worker processes (``backend="local"``) or Ray actors (``backend="ray"``).
        backend, ray_address: ``"ray"`` runs the workers as Ray actors (``ray.init(address=ray_address)`` unless
            Ray is initialised already); results go to the same layout, so ``out_dir`` must be shared storage.
        progress: tqdm bars for videos and frames (stderr) and a line per failed video.
        stride, max_frames, score_threshold: as in :meth:`VideoSegmenter.predict` / ``VideoResult.filter``.
        overlap: open and decode the next video while the current one is in inference.
        cpus_per_worker: CPU threads per worker (default: the cores divided among the workers; Ray: 1).
        placement_timeout: Ray: seconds to wait for every actor to be placed and to load the model (then a
            one-line error instead of waiting forever for GPUs the cluster does not have).

    Returns:
        A :class:`BatchSummary` (``exit_code``, ``table()``). An interrupt (SIGINT / SIGTERM) abandons the videos
        in progress, keeps everything finished, writes the manifest and merged file and returns a summary with
        ``interrupted`` set; rerunning the same call resumes.
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    devs = _parse_devices(devices)
    if devs is not None and workers not in (1, len(devs)):
        raise ValueError(f"workers={workers} with {len(devs)} devices: give one device per worker "
                         "(repeat a device to run several workers on it)")
    devs = devs or [str(segmenter.device)] * workers
    if backend == "local":
        _check_devices(devs)
    t0 = time.perf_counter()
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tasks = discover_videos(src, pattern=pattern, recursive=recursive, exclude=[out])
    tasks = [VideoTask(t.video_id, os.path.abspath(t.path), t.key, t.kind) for t in tasks]
    if not tasks:
        pats = pattern if isinstance(pattern, str) else ", ".join(pattern)
        raise ValueError(f"{src}: no videos found (pattern {pats!r}{', recursive' if recursive else ''}; "
                         "folders of frames count too)")
    options = {"stride": stride, "max_frames": max_frames, "score_threshold": float(score_threshold)}
    opts = BatchOptions(out_dir=str(out.resolve()), fingerprint=fingerprint(segmenter, options, _run_dtype(
        segmenter, devs, backend)), stride=stride,
                        max_frames=max_frames, score_threshold=float(score_threshold), save_video=save_video,
                        overlap=overlap)

    with OutputLock(out), _interrupts() as sig:
        manifest = Manifest(out)
        previous = manifest.previous()
        records: Dict[int, dict] = {}
        todo: List[VideoTask] = []
        for t in tasks:
            head = None if overwrite else finished(out, t, opts.fingerprint, save_video)
            if head is None:
                todo.append(t)
                continue
            prev = previous.get(t.path) or {}
            records[t.video_id] = new_record(t, opts, "skipped", frames=head.get("num_frames"),
                                             instances=prev.get("instances"), seconds=prev.get("seconds"))
        write_videos_json(out, tasks)
        manifest.begin(records.values())
        events = _Progress(progress, len(todo), manifest, records)
        interrupted: Optional[int] = None
        try:
            if backend == "ray":
                from .ray_backend import run_ray
                run_ray(segmenter, todo, opts, events, devs, address=ray_address, cpus_per_worker=cpus_per_worker,
                        placement_timeout=placement_timeout)
            elif len(devs) == 1 and devs[0] == str(segmenter.device):
                run_inprocess(segmenter, todo, opts, events, threads=cpus_per_worker)
            else:
                run_processes(segmenter, todo, opts, events, devs, threads=cpus_per_worker)
        except KeyboardInterrupt as e:
            interrupted = getattr(e, "signum", signal.SIGINT)
        finally:
            sig["deferred"] = True
            events.close()
        # a video finished just before an interrupt may have no record yet: its result file says it is done
        not_processed = []
        for t in tasks:
            if t.video_id in records:
                continue
            head = finished(out, t, opts.fingerprint, save_video)
            if head is not None:
                records[t.video_id] = new_record(t, opts, "ok", frames=head.get("num_frames"))
            else:
                not_processed.append(t.path)
        recs = sorted(records.values(), key=lambda r: r["video_id"])
        manifest.finish(recs)
        merged = write_merged(out, tasks, opts.fingerprint)
        # video panoptic / semantic models: one submission folder over the per-video layouts (docs/panoptic.md)
        merged.update(collect_submission(out, [result_path(out, t) for t in tasks], opts.fingerprint))
        interrupted = interrupted or sig["signum"]
    return BatchSummary(out_dir=out, records=recs, not_processed=not_processed, interrupted=interrupted,
                        elapsed=time.perf_counter() - t0, merged=merged)
