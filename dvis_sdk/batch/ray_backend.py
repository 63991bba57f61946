"""Ray backend: one actor per GPU (or CPU actors), placed by Ray's scheduler, restarted and retried by Ray.

The model goes into Ray's object store once; every actor builds its ``VideoSegmenter`` from it and writes the
per-video results itself, so ``out_dir`` and the input paths must be visible at the same paths on every node
(shared storage). The driver only reads result headers (resume), dispatches tasks and writes the manifest and the
merged file. Each actor runs two calls at once (``max_concurrency=2``) with inference under a lock, so one
video decodes while the other is in inference. An actor that dies is restarted (``max_restarts``) and its calls
retried (``max_task_retries``); a video that keeps killing its actor fails alone.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from .discover import VideoTask
from .local import Events
from .worker import BatchOptions, Prepared, new_record, process_video

MAX_RESTARTS = 3
MAX_TASK_RETRIES = 2
#: seconds the driver waits for every actor to be placed and to load the model before giving up
PLACEMENT_TIMEOUT = 600.0


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray backend needs ray: pip install 'dvis_sdk[ray]'") from None
    return ray


class _Worker:
    """The actor: a VideoSegmenter rebuilt from the driver's ``spec()`` and weights (in the object store)."""

    def __init__(self, spec: dict, state_dict: dict, threads: Optional[int], opts: BatchOptions):
        import torch

        from ..inference.predictor import VideoSegmenter

        if threads:
            torch.set_num_threads(threads)
        self.seg = VideoSegmenter.from_spec(spec, state_dict=state_dict)
        self.opts = opts
        self._infer = threading.Lock()

    def process(self, task: VideoTask) -> dict:
        # opening (decode of the first windows) happens outside the lock, overlapping the other call's inference
        prepared = Prepared.now(self.seg, task, self.opts) if self.opts.overlap else None
        with self._infer:
            return process_video(self.seg, task, self.opts, prepared)

    def ping(self) -> bool:
        return True


def _wait_placed(ray: Any, actors: List[Any], devices: Sequence[str], timeout: float) -> None:
    """Wait until every actor answers; actors Ray cannot place (no free GPU) would otherwise leave the driver
    waiting forever: after ``timeout`` seconds that is a one-line error."""
    import ray.exceptions as rex

    timeouts = (getattr(rex, "GetTimeoutError", TimeoutError), TimeoutError)
    try:
        ray.get([a.ping.remote() for a in actors], timeout=timeout)
    except getattr(rex, "RayActorError", ()) as e:  # the constructor failed (e.g. the model does not load there)
        raise RuntimeError(f"a Ray worker could not start: {' '.join(str(e).split())[:500]}") from None
    except timeouts:
        gpus = sum(str(d).startswith("cuda") for d in devices)
        have = getattr(ray, "cluster_resources", dict)().get("GPU", 0)
        raise RuntimeError(f"Ray did not start {len(actors)} worker(s) within {timeout:.0f} s: {gpus} need a GPU "
                           f"each and the cluster has {have:g} GPU(s); ask for fewer devices, free or add GPUs, or "
                           "raise placement_timeout if loading the model is slow") from None


def run_ray(seg: Any, tasks: Sequence[VideoTask], opts: BatchOptions, events: Events, devices: Sequence[str],
            address: Optional[str] = None, cpus_per_worker: Optional[int] = None,
            placement_timeout: float = PLACEMENT_TIMEOUT) -> None:
    """Run ``tasks`` on Ray actors: one per entry of ``devices`` (a CUDA entry asks Ray for one GPU, a CPU entry
    for ``cpus_per_worker`` CPUs, default 1). Connects to ``address`` (or starts a local Ray) unless Ray is
    already initialised. Actors not placed and ready within ``placement_timeout`` seconds stop the batch with a
    one-line error. Each actor resolves the segmenter's dtype for its own device (its spec carries the request)
    and an ONNX export's GPU providers run on the actor's GPU."""
    ray = require_ray()
    from ray.exceptions import RayActorError, RayTaskError

    if not tasks:
        return
    started = False
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True)
        started = True
    actors: List[Any] = []
    try:
        if seg.backend == "pytorch":
            sd = {k: v.detach().to("cpu") for k, v in seg.model.state_dict().items()}
            weights_ref = ray.put(sd)
            del sd
            # every setting of the driver's segmenter; the weights exactly as in the driver's memory
            spec = dict(seg.spec(), model={"config": seg.cfg.to_dict()})
        else:  # an export folder (ONNX Runtime): the actors load it from its path (shared storage)
            weights_ref, spec = None, seg.spec()
        per_actor = 2 if opts.overlap else 1
        for dev in devices:
            gpu = str(dev).startswith("cuda")
            cpus = 1 if gpu else (cpus_per_worker or 1)
            cls = ray.remote(_Worker).options(num_cpus=cpus, num_gpus=1 if gpu else 0, max_restarts=MAX_RESTARTS,
                                              max_task_retries=MAX_TASK_RETRIES, max_concurrency=per_actor)
            # Ray assigns the GPU (CUDA_VISIBLE_DEVICES), so inside the actor it is always "cuda"
            actors.append(cls.remote(dict(spec, device="cuda" if gpu else "cpu"), weights_ref, None if gpu else cpus,
                                     opts))

        _wait_placed(ray, actors, devices, placement_timeout)
        pending: Deque[VideoTask] = deque(tasks)
        inflight: Dict[Any, Tuple[VideoTask, int]] = {}
        alive = set(range(len(actors)))

        def submit(ai: int) -> None:
            if pending and ai in alive:
                t = pending.popleft()
                inflight[actors[ai].process.remote(t)] = (t, ai)

        for ai in range(len(actors)):
            for _ in range(per_actor):
                submit(ai)
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in done:
                task, ai = inflight.pop(ref)
                try:
                    rec = ray.get(ref)
                except RayActorError as e:
                    rec = new_record(task, opts, "failed", error=f"{task.path}: Ray worker died while processing "
                                     f"this video ({type(e).__name__}, after {MAX_TASK_RETRIES} retries)")
                    try:
                        ray.get(actors[ai].ping.remote(), timeout=120)
                    except Exception:  # noqa: BLE001 - out of restarts: stop using this actor
                        alive.discard(ai)
                except RayTaskError as e:
                    rec = new_record(task, opts, "failed", error=f"{task.path}: {type(e).__name__}: "
                                     f"{' '.join(str(e).split())[:500]}")
                if rec.get("frames"):
                    events.on_frames(rec["frames"])
                events.on_record(rec)
                submit(ai)
            if not alive and pending:
                while pending:
                    t = pending.popleft()
                    events.on_record(new_record(t, opts, "failed", error="no Ray worker left (they kept dying)"))
    finally:
        for a in actors:  # on an interrupt this abandons the videos in progress
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        if started:
            ray.shutdown()
