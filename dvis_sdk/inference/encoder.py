"""Mask output work off the inference thread: :class:`MaskEncoder`.

Turning a window's mask logits into run-length encodings (up-sample every query to the output size, threshold,
copy to the host, RLE-encode) costs about as much as the model on long videos. Done on the inference thread it
adds to every window; here it runs in background threads while the next windows are in inference:

* on CUDA each worker thread has its own stream, which first waits for the window's logits (an event recorded
  when the window was handed over), up-samples there and copies the masks into a pinned host buffer (reused
  from job to job) with a non-blocking copy; only that worker waits for the copy, never the inference loop;
* the inference loop waits only when ``max_pending`` windows are already queued (bounded memory) and at the end;
* out of memory while up-sampling is backed off here (the chunks of queries, then of frames, are halved, then
  the work moves to the CPU, with a warning handed back to the caller's thread); one query of one frame that
  does not fit even there raises :class:`~dvis_sdk.oom.InferenceOOMError` from :meth:`MaskEncoder.result`.

The encoding itself is the caller's (``job(query_chunk, frame_chunk, host_buffer, on_cpu)``): results are those of the
synchronous path, bit for bit.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch

from ..oom import InferenceOOMError, free_memory, is_oom

#: (query_chunk, frame_chunk, host_buffer, on_cpu) -> encodings; host_buffer(nbytes) gives a pinned uint8 buffer
#: or None; on_cpu: move the logits to the CPU and up-sample there
EncodeJob = Callable[[int, int, Optional[Callable[[int], torch.Tensor]], bool], Any]

QUERY_CHUNK, FRAME_CHUNK = 8, 16


def encode_with_backoff(job: EncodeJob, device: torch.device, what: str,
                        host_buffer: Optional[Callable[[int], torch.Tensor]] = None,
                        query_chunk: int = QUERY_CHUNK, frame_chunk: int = FRAME_CHUNK) -> Tuple[Any, List[str]]:
    """``job`` with the largest chunks that fit: on out-of-memory the query chunk is halved down to 1, then the
    frame chunk; when one query of one frame does not fit on an accelerator, the logits move to the CPU (host
    memory) and the chunks start again there. Returns (result, warnings to show). ``what`` names the work in
    messages."""
    notes: List[str] = []
    on_cpu = device.type == "cpu"
    while True:
        try:
            with torch.no_grad():
                return job(query_chunk, frame_chunk, None if on_cpu else host_buffer, on_cpu), notes
        except Exception as e:  # noqa: BLE001 - only out-of-memory is handled, everything else re-raised
            if not is_oom(e):
                raise
            del e
        free_memory(device)
        where = "the CPU" if on_cpu else str(device)
        if query_chunk == 1 and frame_chunk == 1:
            if on_cpu:
                raise InferenceOOMError(
                    f"out of memory up-sampling the masks of {what} on {device}"
                    f"{'' if device.type == 'cpu' else ' and on the CPU'} even one query and one frame at a time; "
                    "free memory or run with a smaller input (the masks are up-sampled to the video's own size)"
                ) from None
            on_cpu, query_chunk, frame_chunk = True, QUERY_CHUNK, FRAME_CHUNK
            notes.append(f"out of memory up-sampling the masks of {what} on {device} even one query and one frame "
                         "at a time; up-sampling them on the CPU")
            continue
        if query_chunk > 1:
            query_chunk //= 2
        else:
            frame_chunk //= 2
        notes.append(f"out of memory up-sampling the masks of {what} on {where}; retrying {query_chunk} "
                     f"quer{'y' if query_chunk == 1 else 'ies'} x {frame_chunk} frame(s) at a time")


class MaskEncoder:
    """Runs mask-encoding jobs in ``workers`` background threads, in submission order per caller.

    ``submit(job, what)`` returns a ``Future``; :meth:`result` waits for one and re-raises its error (an
    :class:`~dvis_sdk.oom.InferenceOOMError` when even the smallest chunk does not fit) after issuing its
    warnings on the calling thread. ``workers=0`` runs every job at once on the calling thread (the synchronous
    path). Close it (or use it as a context manager) to stop the threads."""

    def __init__(self, device: torch.device, workers: int = 1, max_pending: int = 2):
        self.device = torch.device(device)
        self.max_pending = max(1, int(max_pending))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dvis-mask-encoder") if workers > 0 else None
        self._local = threading.local()
        self.backoffs = 0  # out-of-memory retries so far

    # ---- per-thread CUDA resources --------------------------------------------------------------------------
    def _stream(self) -> "torch.cuda.Stream":
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)
        return stream

    def _host_buffer(self, nbytes: int) -> torch.Tensor:
        """This thread's pinned uint8 buffer of at least ``nbytes`` (grown by doubling, then reused)."""
        buf = getattr(self._local, "buffer", None)
        if buf is None or buf.numel() < nbytes:
            size = max(nbytes, 2 * (0 if buf is None else buf.numel()))
            buf = self._local.buffer = torch.empty(size, dtype=torch.uint8, pin_memory=True)
        return buf[:nbytes]

    # ---- jobs ----------------------------------------------------------------------------------------------
    def _run(self, job: EncodeJob, what: str, ready: Optional["torch.cuda.Event"]) -> Tuple[Any, List[str]]:
        if ready is None:
            return encode_with_backoff(job, self.device, what)
        stream = self._stream()
        stream.wait_event(ready)  # the window's logits are written by the inference stream
        try:
            with torch.cuda.device(self.device), torch.cuda.stream(stream):
                return encode_with_backoff(job, self.device, what, self._host_buffer)
        finally:
            # nothing of this job may still be queued when the job (and with it the last reference to the
            # window's logits, allocated on the inference stream) is released, even after an error
            stream.synchronize()

    def submit(self, job: EncodeJob, what: str) -> "Future":
        """Queue ``job`` (see :data:`EncodeJob`); ``what`` names it in messages (e.g. "frames 300-304")."""
        if self._pool is None:
            fut: Future = Future()
            try:
                fut.set_result(self._run(job, what, None))
            except BaseException as e:  # noqa: BLE001 - handed to result(), as a worker's error would be
                fut.set_exception(e)
            return fut
        ready = None
        if self.device.type == "cuda":
            ready = torch.cuda.Event()
            ready.record(torch.cuda.current_stream(self.device))
        return self._pool.submit(self._run, job, what, ready)

    def result(self, fut: "Future") -> Any:
        """Wait for ``fut``; warn (on this thread) about any out-of-memory retry it needed; its encodings."""
        import warnings

        out, notes = fut.result()
        for note in notes:
            self.backoffs += 1
            warnings.warn(note, RuntimeWarning, stacklevel=3)
        return out

    def close(self) -> None:
        """Stop the worker threads (queued jobs still finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "MaskEncoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def frame_masks(mask_logits: torch.Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                output_size: Tuple[int, int], queries: List[int], max_num: int,
                query_chunk: int = QUERY_CHUNK) -> List[List[Tuple[int, "np.ndarray"]]]:
    """Per frame of a (Q, t, h, w) window, the first ``max_num`` of ``queries`` (in the given order) whose
    thresholded up-sampled mask is not empty, as ``(query, (H, W) bool array)``: what ``stream`` reports. Dense
    masks straight from the up-sampling (no encode / decode round trip); queries are up-sampled a chunk at a time
    and only until every frame has ``max_num``."""
    from ..ops.postprocess import upsample_masks

    t = int(mask_logits.shape[1])
    out: List[List[Tuple[int, np.ndarray]]] = [[] for _ in range(t)]
    if not queries or max_num <= 0:
        return out
    sel = mask_logits[queries]
    # all logits <= 0 stays empty through bilinear up-sampling (a convex combination): skip those queries
    active = [q for q, a in zip(queries, (sel.flatten(1).amax(1) > 0).tolist()) if a]
    for s in range(0, len(active), query_chunk):
        if all(len(f) >= max_num for f in out):
            break
        qs = active[s:s + query_chunk]
        masks = upsample_masks(mask_logits[qs], padded_size, image_size, output_size)
        host = masks.cpu().numpy()  # (k, t, H, W) bool, one copy per chunk
        present = host.reshape(len(qs), t, -1).any(-1)
        for j, q in enumerate(qs):
            for i in range(t):
                if present[j, i] and len(out[i]) < max_num:
                    out[i].append((q, host[j, i]))
    return out
