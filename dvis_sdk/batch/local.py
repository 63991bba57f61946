"""Local backends: in this process (one device), or one worker process per device (``spawn``).

In both, the next video is opened and starts decoding in a background thread while the current one is in
inference. Worker processes ignore SIGINT (the main process decides what an interrupt means), exit when the main
process dies, and a worker that dies (a crash, the kernel's OOM killer) fails only the video it was on: the
videos it had taken ahead are handed to the others and a replacement worker starts.
"""
from __future__ import annotations

import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence

from .discover import VideoTask
from .worker import BatchOptions, Opening, Prepared, new_record, process_video


class Events:
    """Callbacks of a running batch (progress bars, manifest)."""

    def on_start(self, task: VideoTask, num_frames: int) -> None:  # a video's decoding started
        pass

    def on_frames(self, n: int) -> None:  # n more frames went through inference
        pass

    def on_record(self, record: dict) -> None:  # a video is finished (ok or failed)
        pass


def run_inprocess(seg: Any, tasks: Sequence[VideoTask], opts: BatchOptions, events: Events,
                  threads: Optional[int] = None) -> None:
    """Process ``tasks`` in order with ``seg``, opening video i+1 while video i is in inference. ``threads``:
    torch CPU threads for the duration (restored after)."""
    import torch

    nxt: Optional[Prepared] = None
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for i, task in enumerate(tasks):
            cur, nxt = nxt, None
            if opts.overlap and i + 1 < len(tasks):
                nxt = Opening(seg, tasks[i + 1], opts)
            events.on_record(process_video(seg, task, opts, cur, events.on_start, events.on_frames))
    finally:
        if nxt is not None:
            nxt.discard()
        torch.set_num_threads(old_threads)


# ---- worker processes ------------------------------------------------------------------------------------------
def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)  # the main process is gone (killed): abandon the video, write nothing more
            time.sleep(0.5)
    threading.Thread(target=watch, name="dvis-batch-parent-watch", daemon=True).start()


def _worker_main(wid: int, spec: dict, threads: int, opts: BatchOptions, task_q: Any, msg_q: Any,
                 parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch_parent(parent)
    import torch

    from ..inference.predictor import VideoSegmenter

    torch.set_num_threads(threads)
    try:
        seg = VideoSegmenter.from_spec(spec)
    except Exception as e:  # noqa: BLE001 - reported to the main process, which stops the batch
        msg_q.put(("fatal", wid, f"worker {wid} ({spec['device']}) could not load the model: {e}"))
        return
    msg_q.put(("ready", wid, os.getpid()))

    def on_start(task: VideoTask, n: int) -> None:
        msg_q.put(("start", wid, task.video_id, n))

    def on_frames(n: int) -> None:
        msg_q.put(("frames", wid, n))

    ahead = None  # (task, Opening) taken from the queue early to decode it during the current inference
    while True:
        if ahead is None:
            task = task_q.get()
            if task is None:
                return
            msg_q.put(("take", wid, task.video_id))
            prepared = None
        else:
            (task, prepared), ahead = ahead, None
        if opts.overlap:
            try:
                t2 = task_q.get_nowait()
            except queue.Empty:
                t2 = None
            if t2 is not None:
                msg_q.put(("take", wid, t2.video_id))
                ahead = (t2, Opening(seg, t2, opts))
        msg_q.put(("done", wid, process_video(seg, task, opts, prepared, on_start, on_frames)))


@contextmanager
def _main_not_reimported() -> Iterator[None]:
    """``spawn`` re-runs the ``__main__`` script in each child unless it is guarded by ``if __name__ ==
    "__main__"``. The workers need nothing from it, so hide its path while starting them: unguarded scripts
    then work too (a ``python -m`` module is imported by name, which is harmless)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def run_processes(seg: Any, tasks: Sequence[VideoTask], opts: BatchOptions, events: Events, devices: Sequence[str],
                  threads: Optional[int] = None, max_restarts: Optional[int] = None) -> None:
    """One worker process per entry of ``devices``; tasks are pulled from a shared queue."""
    import multiprocessing as mp

    if not tasks:
        return
    ctx = mp.get_context("spawn")  # fork + torch threads / CUDA is unsafe
    n = len(devices)
    threads = threads or max(1, (os.cpu_count() or 1) // n)
    model_dir = tempfile.mkdtemp(prefix="dvis-batch-model-")
    # every setting of the driver's segmenter; the weights exactly as in the driver's memory, through a folder
    spec = dict(seg.spec(), model={"pretrained": model_dir})
    restarts_left = n + 2 if max_restarts is None else max_restarts
    task_q, msg_q = ctx.Queue(), ctx.Queue()
    by_id = {t.video_id: t for t in tasks}
    todo = set(by_id)
    held: Dict[int, List[int]] = {}
    procs: Dict[int, Any] = {}

    def start(wid: int, device: str) -> None:
        p = ctx.Process(target=_worker_main, name=f"dvis-batch-worker-{wid}", daemon=True,
                        args=(wid, dict(spec, device=device), threads, opts, task_q, msg_q, os.getpid()))
        with _main_not_reimported():
            p.start()
        procs[wid], held[wid] = p, []

    def finish(rec: dict) -> None:
        if rec["video_id"] in todo:
            todo.discard(rec["video_id"])
            events.on_record(rec)

    def handle(msg: tuple) -> None:
        kind, wid = msg[0], msg[1]
        if kind == "take":
            held[wid].append(msg[2])
        elif kind == "start":
            events.on_start(by_id[msg[2]], msg[3])
        elif kind == "frames":
            events.on_frames(msg[2])
        elif kind == "done":
            if msg[2]["video_id"] in held[wid]:
                held[wid].remove(msg[2]["video_id"])
            finish(msg[2])
        elif kind == "fatal":
            raise RuntimeError(msg[2])

    try:
        seg.save_pretrained(model_dir)
        for t in tasks:
            task_q.put(t)
        devs = list(devices)
        for wid, dev in enumerate(devs):
            start(wid, dev)
        next_wid = n
        while todo:
            try:
                handle(msg_q.get(timeout=0.2))
                continue
            except queue.Empty:
                pass
            for wid, p in list(procs.items()):
                if p.is_alive():
                    continue
                code = p.exitcode
                lost = held.pop(wid, [])
                del procs[wid]
                if lost:  # the first held video is the one it was on; the others were only taken ahead
                    finish(new_record(by_id[lost[0]], opts, "failed",
                                      error=f"{by_id[lost[0]].path}: worker process died (exit code {code}) while "
                                            "processing this video"))
                    for vid in lost[1:]:
                        task_q.put(by_id[vid])
                if todo and restarts_left > 0:
                    restarts_left -= 1
                    start(next_wid, devs[wid % n])
                    next_wid += 1
            if todo and not procs:
                for vid in sorted(todo):
                    finish(new_record(by_id[vid], opts, "failed", error="no worker process left (they kept dying)"))
        for _ in procs:
            task_q.put(None)
        for p in procs.values():
            p.join(timeout=30)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()  # interrupt: abandon the videos in progress (nothing half-written survives)
        for p in procs.values():
            p.join(timeout=10)
        try:  # records of videos finished before the interrupt
            while True:
                msg = msg_q.get(timeout=0.05)
                if msg[0] == "done":
                    finish(msg[2])
        except Exception:  # noqa: BLE001 - queue empty, or a message torn by a terminated worker
            pass
        task_q.cancel_join_thread()
        msg_q.cancel_join_thread()
        shutil.rmtree(model_dir, ignore_errors=True)
