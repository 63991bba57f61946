"""Bounded-memory video inference: windows of frames in, run-length-encoded masks and running class scores out.

The official code keeps the mask logits of every query for every frame until the end of the video and only then
picks the top instances; its memory grows with video length (tens of GB for a few thousand frames). Here each
window's mask logits are up-sampled, thresholded and run-length encoded as soon as the window is done (for every
query, because which queries win is only known at the end), and only per-query running sums of the class logits
are kept. The final selection is the official one (mean logits over time -> top-k of queries x classes), so the
result equals the official whole-video result; memory grows only with the compact RLE results.

Offline models refine bounded *chunks* of frames: the tracker carries identities across chunks and the refiner
sees ``chunk_size`` frames at a time (``chunk_size >= T`` is exactly the official whole-video refinement).

This module holds THE window loop (:meth:`WindowRunner.windows`), the refinement schedule and the out-of-memory
back-off (:meth:`WindowRunner._backoff`); ``VideoSegmenter.predict`` / ``stream``, :func:`forward_video` and
:func:`video_inference` (the official whole-video outputs, for parity checks) all go through it.

Step protocol. The runner talks to the model only through these steps, so another backend (an ONNX Runtime
session, a model with a different tracker) can be run by implementing them:

``segment(images) -> seg``
    (t, 3, Hp, Wp) normalised padded frames of one window -> per-window outputs (opaque to the runner, handed to
    ``track`` and, offline, kept for ``refine``).
``track(seg, state) -> (outputs, state, indices)``
    ``state=None`` starts a video; the state is whatever the backend carries between windows (opaque here).
    ``outputs`` holds ``pred_logits`` (1, t, Q, C+1) and, online, ``pred_masks`` (1, Q, t, h, w) at stride 4
    of the padded input. ``indices``: the backend's matching, only passed through.
``refine(windows) -> outputs`` (offline models only; its presence makes a model offline)
    the :class:`~dvis_sdk.models.dvis.WindowOutput` s of consecutive windows -> ``pred_logits`` / ``pred_masks``
    over all their frames.

``finalize(state, windows) -> outputs`` (optional: models whose output exists only at the end of the video)
    Its presence makes the runner yield nothing per window: ``track`` only advances the state (its ``outputs``
    need just ``pred_logits`` (1, t, Q, C+1), to count frames) and :meth:`WindowRunner.finish` calls
    ``finalize(state, windows)`` once. ``windows``: every tracked :class:`~dvis_sdk.models.dvis.WindowOutput` of
    the video (segmenter outputs kept) when the model has ``refines_at_end = True`` and the refiner is used, else
    ``None``. ``outputs``: ``pred_cls`` (n, C+1), the logits each of the ``n`` output rows is ranked by, and
    ``pred_masks`` (1, n, T, h, w) over all frames (``n`` may vary from video to video, 0 included). DVIS-DAQ
    uses it: its output rows are the instance sequences of its final state (a sequence's score is the mean over
    ALL its stored frames), so the state holds every sequence's per-frame mask logits until the end (memory grows
    with frames x sequences, as in the official code); its offline refiner sees the segmenter outputs of the whole
    video.

Otherwise the score accumulation assumes every window reports the same ``Q`` queries (one per tracked sequence).
"""
from __future__ import annotations

import collections
import contextlib
import warnings
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from ..masks import RLE, decode_rles, encode_masks, encode_masks_colmajor
from ..models.dvis import WindowOutput
from ..oom import InferenceOOMError, free_memory, is_oom
from ..ops import postprocess as _postprocess
from ..ops.postprocess import VISOutput, class_scores, postprocess_vis, select_topk, upsample_masks
from .encoder import FRAME_CHUNK, QUERY_CHUNK, MaskEncoder

_UPSAMPLE = upsample_masks



@dataclass
class WindowResult:
    """One processed stretch of frames: ``logits`` (t, Q, C+1) float32 for ranking (``aux_logits``: the tracker's,
    offline only) and ``mask_logits`` (Q, t, h, w) at stride 4 of the padded input, on the model's device.
    ``encode`` thresholds them exactly as the official post-processing and run-length encodes them."""

    start: int
    logits: Tensor
    mask_logits: Tensor
    padded_size: Tuple[int, int]
    image_size: Tuple[int, int]
    output_size: Tuple[int, int]
    aux_logits: Optional[Tensor] = None
    outputs: Optional[Dict[str, Tensor]] = None  # the raw step outputs, when the runner keeps them

    @property
    def num_frames(self) -> int:
        return int(self.logits.shape[0])

    def encode(self, queries: Optional[List[int]] = None, query_chunk: int = QUERY_CHUNK,
               frame_chunk: int = FRAME_CHUNK,
               host_buffer: Optional[Callable[[int], Tensor]] = None,
               on_cpu: bool = False) -> Dict[int, List[Optional[RLE]]]:
        """``{q: [rle or None per frame]}`` for ``queries`` (default: all); chunks and ``host_buffer`` as
        :func:`encode_window_masks`; ``on_cpu``: up-sample on the CPU (after the device ran out of memory)."""
        qs = list(range(self.mask_logits.shape[0])) if queries is None else list(queries)
        logits = self.mask_logits[qs].cpu() if on_cpu else self.mask_logits[qs]
        rles = encode_window_masks(logits, self.padded_size, self.image_size, self.output_size,
                                   query_chunk=query_chunk, frame_chunk=frame_chunk, host_buffer=host_buffer)
        return dict(zip(qs, rles))

    def frames_label(self) -> str:
        """"frames a-b": how messages name this window."""
        return f"frames {self.start}-{self.start + self.num_frames - 1}"

    def nbytes(self) -> int:
        return self.mask_logits.numel() * self.mask_logits.element_size()


@dataclass
class ScoreAccumulator:
    """Running per-query sums of the class logits (float64, so thousands of frames do not drift from the official
    mean) and, with ``keep_masks``, every query's masks so far.

    Masks are kept as raw mask logits while they fit in ``buffer_bytes`` (then, at the end, only the kept
    instances are up-sampled and encoded, like the official post-processing); beyond that, every window is
    encoded for all queries as it arrives so memory stops growing except for the RLE results. Both give the same
    masks. ``encoder``: a :class:`~dvis_sdk.inference.encoder.MaskEncoder` that does that work in background
    threads (default: a synchronous one); at most ``encoder.max_pending`` windows wait for it. An out-of-memory
    error that even one query of one frame does not survive raises
    :class:`~dvis_sdk.oom.InferenceOOMError`; ``masks_of(..., partial=True)`` then gives the masks of the frames
    encoded so far (``encoded_frames``) and ``None`` after them."""

    num_queries: Optional[int] = None  # None: taken from the first window (a finalizing model's row count)
    keep_masks: bool = True
    buffer_bytes: int = 1 << 30
    encoder: Optional[MaskEncoder] = None
    frames: int = 0
    logit_sum: Optional[Tensor] = None
    aux_sum: Optional[Tensor] = None
    buffered: List[WindowResult] = field(default_factory=list)
    rles: List[List[Optional[RLE]]] = field(default_factory=list)
    encoded_frames: int = 0  # frames whose masks (all queries) are in ``rles``
    pending: Deque[Tuple[int, Future]] = field(default_factory=collections.deque)  # (frames, encoding) in order

    def __post_init__(self) -> None:
        if self.encoder is None:
            self.encoder = MaskEncoder(torch.device("cpu"), workers=0)

    def add(self, w: WindowResult) -> None:
        if self.num_queries is None:
            self.num_queries = int(w.logits.shape[1])
        s = w.logits.double().sum(0)
        self.logit_sum = s if self.logit_sum is None else self.logit_sum + s
        if w.aux_logits is not None:
            a = w.aux_logits.double().sum(0)
            self.aux_sum = a if self.aux_sum is None else self.aux_sum + a
        self.frames += w.num_frames
        if not self.keep_masks:
            return
        if self.rles:  # already streaming
            self._submit(w)
            return
        self.buffered.append(w)
        if sum(b.nbytes() for b in self.buffered) > self.buffer_bytes:
            self.rles = [[] for _ in range(self.num_queries)]
            buffered, self.buffered = self.buffered, []
            for b in buffered:
                self._submit(b)

    def _submit(self, w: WindowResult) -> None:
        self.pending.append((w.num_frames, self.encoder.submit(_encode_job(w, None), w.frames_label())))
        while len(self.pending) > self.encoder.max_pending:  # back-pressure: bounded memory
            self._collect()

    def _collect(self) -> None:
        frames, fut = self.pending[0]
        enc = self.encoder.result(fut)
        self.pending.popleft()
        for q in range(self.num_queries):
            self.rles[q].extend(enc[q])
        self.encoded_frames += frames

    def flush(self) -> None:
        """Wait until every window handed over so far is encoded."""
        while self.pending:
            self._collect()

    @property
    def streaming(self) -> bool:
        """True once the buffer overflowed and masks are encoded window by window."""
        return bool(self.rles)

    def masks_of(self, queries: List[int], partial: bool = False) -> Dict[int, List[Optional[RLE]]]:
        """Every frame's RLE of each query in ``queries``. ``partial``: after an out-of-memory error, never
        raising another one: the masks of the first ``encoded_frames`` frames, ``None`` after them."""
        if self.streaming:
            try:
                self.flush()
            except InferenceOOMError:
                if not partial:
                    raise
                self.pending.clear()
            return {q: self._padded(self.rles[q][:self.encoded_frames]) for q in queries}
        out: Dict[int, List[Optional[RLE]]] = {q: [] for q in queries}
        uniq = sorted(set(queries))
        futures = [(b.num_frames, self.encoder.submit(_encode_job(b, uniq), b.frames_label())) for b in self.buffered]
        self.encoded_frames = 0
        for frames, fut in futures:  # every window is queued at once: the workers overlap them
            try:
                enc = self.encoder.result(fut)
            except InferenceOOMError:
                if not partial:
                    raise
                break
            for q in uniq:
                out[q].extend(enc[q])
            self.encoded_frames += frames
        return {q: self._padded(out[q][:self.encoded_frames]) for q in queries}

    def _padded(self, rles: List[Optional[RLE]]) -> List[Optional[RLE]]:
        return rles + [None] * (self.frames - len(rles))

    def mean_logits(self) -> Tuple[Tensor, Optional[Tensor]]:
        aux = None if self.aux_sum is None else (self.aux_sum / self.frames).float()
        return (self.logit_sum / self.frames).float(), aux

    def query_scores(self) -> Tuple[Tensor, Tensor]:
        """Per query, the best class so far and its score (what ``stream`` reports), from the same class scores
        :meth:`select` ranks."""
        pred_cls, aux = self.mean_logits()
        return class_scores(pred_cls, aux).max(-1)

    def select(self, max_num: int) -> Tuple[List[float], List[int], List[int]]:
        """The official top-k over queries x classes: (scores, labels, query ids), by decreasing score."""
        if self.frames == 0 or not self.num_queries:
            return [], [], []
        pred_cls, aux = self.mean_logits()
        logits = pred_cls if aux is None else torch.cat([pred_cls, aux], -1)
        bad = ~torch.isfinite(logits).all(-1)
        if bool(bad.any()):  # one read per video
            warnings.warn(f"{int(bad.sum())} queries have non-finite class logits (half-precision overflow?); "
                          "they score 0: try dtype='bf16' or 'fp32'", RuntimeWarning, stacklevel=3)
        scores, labels, queries = select_topk(pred_cls, max_num, aux)
        order = torch.argsort(scores, descending=True, stable=True)
        return scores[order].tolist(), labels[order].tolist(), queries[order].tolist()


def _encode_job(w: WindowResult, queries: Optional[List[int]]) -> Callable[..., Dict[int, List[Optional[RLE]]]]:
    def job(query_chunk: int, frame_chunk: int, host_buffer: Optional[Callable[[int], Tensor]], on_cpu: bool):
        # only what differs from the defaults: the first try is the plain ``w.encode(queries)``
        given = dict(query_chunk=query_chunk, frame_chunk=frame_chunk, host_buffer=host_buffer, on_cpu=on_cpu)
        defaults = dict(query_chunk=QUERY_CHUNK, frame_chunk=FRAME_CHUNK, host_buffer=None, on_cpu=False)
        return w.encode(queries, **{k: v for k, v in given.items() if v != defaults[k]})
    return job


def encode_window_masks(mask_logits: Tensor, padded_size: Tuple[int, int], image_size: Tuple[int, int],
                        output_size: Tuple[int, int], query_chunk: int = QUERY_CHUNK, frame_chunk: int = FRAME_CHUNK,
                        host_buffer: Optional[Callable[[int], Tensor]] = None) -> List[List[Optional[RLE]]]:
    """(Q, t, h, w) mask logits -> ``rles[q][i]``, thresholded exactly as the official post-processing.

    Queries whose logits are all <= 0 are empty after bilinear up-sampling (a convex combination), so they are
    skipped without up-sampling; the others are up-sampled ``query_chunk`` queries x ``frame_chunk`` frames at a
    time to bound the full-size intermediates. Masks on an accelerator are transposed to column-major order (the
    order RLE counts in) there, so the host receives exactly what pycocotools reads, with no conversion.
    ``host_buffer(nbytes)``: a pinned uint8 buffer to copy device masks into without blocking other streams
    (:class:`~dvis_sdk.inference.encoder.MaskEncoder` passes one); by default ``.cpu()``."""
    q_total, t = mask_logits.shape[:2]
    rles: List[List[Optional[RLE]]] = [[None] * t for _ in range(q_total)]
    # the up-sampler is looked up at call time, in this module then in ops.postprocess, so that a replacement
    # installed in either (a custom up-sampler, a fault injector) is the one used
    upsample = upsample_masks if upsample_masks is not _UPSAMPLE else _postprocess.upsample_masks
    active = torch.nonzero(mask_logits.flatten(1).amax(1) > 0).flatten().tolist()
    for s in range(0, len(active), query_chunk):
        qs = active[s:s + query_chunk]
        chunking = {} if frame_chunk == FRAME_CHUNK else {"frame_chunk": frame_chunk}  # the default: not passed
        masks = upsample(mask_logits[qs], padded_size, image_size, output_size, **chunking)
        if masks.device.type == "cpu":  # numpy makes the column-major copy faster than torch on a CPU
            for q, m in zip(qs, masks.numpy()):
                rles[q] = encode_masks(m)
            continue
        cols = masks.transpose(-1, -2).contiguous().view(torch.uint8)  # (k, t, W, H): (H, W) column-major
        if host_buffer is not None:
            host = host_buffer(cols.numel()).view(cols.shape)
            host.copy_(cols, non_blocking=True)
            torch.cuda.current_stream(cols.device).synchronize()  # this thread's stream only
            cols = host
        for q, m in zip(qs, cols.cpu().numpy()):
            rles[q] = encode_masks_colmajor(m)
    return rles


class WindowRunner:
    """Runs a model (anything with the step protocol of this module) over a stream of prepared windows with an
    explicit tracker state and OOM back-off.

    ``images`` given to :meth:`run` are normalised, padded (t, 3, Hp, Wp) tensors on the model's device.
    On out-of-memory a window is split in halves (the segmenter is per frame and the tracker is sequential, so the
    result is unchanged) and later windows use the smaller size; a refiner chunk is split the same way. At one
    frame (one window) it raises :class:`InferenceOOMError`. ``keep_outputs``: results carry the raw step outputs.
    """

    def __init__(self, model: Any, device: torch.device, autocast: Callable[[], Any],
                 image_size: Tuple[int, int], output_size: Tuple[int, int], window_size: int,
                 chunk_size: Optional[int] = None, use_refiner: bool = True, keep_outputs: bool = False):
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        self.model = model
        self.device = device
        self.autocast = autocast
        self.image_size = tuple(image_size)
        self.output_size = tuple(output_size)
        self.window_size = window_size
        self.final = callable(getattr(model, "finalize", None))  # output only at the end (step ``finalize``)
        refines = getattr(model, "refines_at_end", False) if self.final else callable(getattr(model, "refine", None))
        self.offline = use_refiner and bool(refines)
        # a finalizing model refines the whole video at once: there are no chunks
        self.chunk_size = max(chunk_size or window_size, window_size) if self.offline and not self.final else None
        self.keep_outputs = keep_outputs
        self.state: Any = None
        self.frames_done = 0
        self._pending: List[WindowOutput] = []  # offline: tracked windows waiting for the refiner
        self._pending_frames = 0
        self.oom_events = 0
        self._padded: Tuple[int, int] = (0, 0)

    # ---- OOM back-off (the one copy) -----------------------------------------------------------------------------
    def _backoff(self, items: Sequence[Any], fn: Callable[[Sequence[Any]], List[Any]],
                 shrink: Callable[[Sequence[Any], int], str], fatal: Callable[[], Tuple[str, int]],
                 round_up: bool = True) -> List[Any]:
        """``fn(items)``; on out-of-memory, ``fn`` of each half (recursively) after ``shrink(items, len(first
        half))``, which lowers the size used from now on and returns the warning. One item that does not fit
        raises :class:`InferenceOOMError` with ``fatal()`` = (message, frames done)."""
        try:
            return fn(items)
        except Exception as e:  # noqa: BLE001 - only OOM is handled, everything else re-raised
            if not is_oom(e):
                raise
            del e
        free_memory(self.device)
        self.oom_events += 1
        if len(items) == 1:
            message, done = fatal()
            raise InferenceOOMError(message, frames_done=done) from None
        half = (len(items) + round_up) // 2
        warnings.warn(shrink(items, half), RuntimeWarning, stacklevel=3)
        return (self._backoff(items[:half], fn, shrink, fatal, round_up)
                + self._backoff(items[half:], fn, shrink, fatal, round_up))

    # ---- the window loop -----------------------------------------------------------------------------------------
    def _track_window(self, images: Tensor) -> List[WindowOutput]:
        with self.autocast():
            seg = self.model.segment(images)
            trk, state, indices = self.model.track(seg, self.state)
        if not self.keep_outputs:
            if self.offline:
                trk.pop("pred_masks", None)  # the refiner predicts its own masks
            else:
                seg = {}  # mask features are not needed any more: free them now
        self.state = state
        return [WindowOutput(start=self.frames_done, segmenter=seg, tracker=trk, indices=indices, state=state)]

    def _shrink_window(self, images: Tensor, half: int) -> str:
        self.window_size = min(self.window_size, half)
        return (f"out of memory with a window of {images.shape[0]} frames on {self.device}; "
                f"retrying with windows of {half}")

    def _window_fatal(self) -> Tuple[str, int]:
        return (f"out of memory in the segmenter/tracker on frame {self.frames_done} even with a window of 1 frame "
                f"(input {self.image_size[0]}x{self.image_size[1]} on {self.device}); try dtype='fp16' or 'bf16', "
                "a smaller input size, device='cpu', or free memory", self.frames_done)

    def windows(self, images: Tensor) -> Iterator[WindowOutput]:
        """THE window loop: segment and track (t, 3, Hp, Wp) frames ``window_size`` at a time, carrying the tracker
        state across windows and calls; yields every tracked window (halves of it after an OOM back-off)."""
        for s in range(0, images.shape[0], self.window_size):
            win = images[s:s + self.window_size]
            for w in self._backoff(win, self._track_window, self._shrink_window, self._window_fatal):
                yield w
                self.frames_done += w.tracker["pred_logits"].shape[1]

    # ---- public --------------------------------------------------------------------------------------------------
    def run(self, images: Tensor) -> Iterator[WindowResult]:
        """Process (t, 3, Hp, Wp) frames; yields results as soon as they are final (online: every window; offline:
        every completed chunk)."""
        self._padded = (int(images.shape[-2]), int(images.shape[-1]))
        for w in self.windows(images):
            if self.final:
                if self.offline:
                    self._pending.append(w)  # the refiner needs the whole video's segmenter outputs
                continue
            if self.offline:
                w.start = self._pending_frames
                self._pending.append(w)
                self._pending_frames += w.tracker["pred_logits"].shape[1]
                if self._pending_frames >= self.chunk_size:
                    yield from self._refine_pending(extra=w.tracker["pred_logits"].shape[1])
            else:
                yield self._result(self.frames_done, w.tracker["pred_logits"], w.tracker["pred_masks"],
                                   outputs=w.tracker)

    def finish(self) -> Iterator[WindowResult]:
        """Flush what is still buffered (offline: the last, partial chunk; a finalizing model: its one result)."""
        if self.final:
            if self.state is not None:
                yield self._finalize()
            return
        if self.offline and self._pending:
            yield from self._refine_pending()

    def _result(self, start: int, logits: Tensor, mask_logits: Tensor, aux: Optional[Tensor] = None,
                outputs: Optional[Dict[str, Tensor]] = None) -> WindowResult:
        return WindowResult(start=start, logits=logits[0].float(), mask_logits=mask_logits[0],
                            padded_size=self._padded, image_size=self.image_size, output_size=self.output_size,
                            aux_logits=aux, outputs=outputs if self.keep_outputs else None)

    def _finalize(self) -> WindowResult:
        windows, self._pending = self._pending, []
        with self.autocast():
            out = self.model.finalize(self.state, windows if self.offline else None)
        frames = int(out["pred_masks"].shape[2])
        # every frame carries the row's ranking logits: the accumulator's time-mean gives them back exactly
        logits = out["pred_cls"].float().unsqueeze(0).expand(frames, -1, -1)
        return WindowResult(start=0, logits=logits, mask_logits=out["pred_masks"][0], padded_size=self._padded,
                            image_size=self.image_size, output_size=self.output_size,
                            outputs=out if self.keep_outputs else None)

    # ---- refinement ----------------------------------------------------------------------------------------------
    def _refine_pending(self, extra: int = 0) -> Iterator[WindowResult]:
        """Refine the pending windows. ``extra``: frames of the last window that the window loop has not counted
        yet (it counts a window once the consumer is done with it)."""
        windows, self._pending, self._pending_frames = self._pending, [], 0
        start = self.frames_done + extra - sum(_frames(w) for w in windows)
        chunks = [start]

        def refine(ws: Sequence[WindowOutput]) -> List[WindowResult]:
            with self.autocast():
                refined = self.model.refine(list(ws))
            online = torch.cat([w.tracker["pred_logits"] for w in ws], dim=1)
            out = self._result(chunks[0], refined["pred_logits"], refined["pred_masks"], online[0].float(),
                               outputs=dict(refined, online_pred_logits=online))
            chunks[0] += sum(_frames(w) for w in ws)
            return [out]

        def shrink(ws: Sequence[WindowOutput], half: int) -> str:
            self.chunk_size = max(self.window_size, sum(_frames(w) for w in ws[:half]))
            return (f"out of memory refining {len(ws)} windows; refining in chunks of {self.chunk_size} frames "
                    "from now on")

        def fatal() -> Tuple[str, int]:
            return (f"out of memory in the refiner at frame {chunks[0]} even for one window; try a smaller "
                    "window_size, dtype='fp16' or 'bf16', mode='online', or device='cpu'", chunks[0])

        # halves rounded down here (a window is split rounded up), as the refiner back-off always did
        yield from self._backoff(windows, refine, shrink, fatal, round_up=False)


def _frames(w: WindowOutput) -> int:
    return int(w.tracker["pred_logits"].shape[1])


# ---- whole-video helpers (the official model outputs, through the same loop) -----------------------------------
def forward_video(model: Any, images: Tensor, window_size: Optional[int] = None) -> Dict[str, Tensor]:
    """The official whole-video raw outputs of (T, 3, Hp, Wp) preprocessed frames, through :class:`WindowRunner`
    (the whole video refined at once). Online: the tracker's ``pred_logits`` (1, T, Q, C+1) / ``pred_masks``
    (1, Q, T, h, w); offline: the refiner's (+ ``pred_embds``) and the tracker's ``online_pred_logits``; both:
    ``pred_cls`` (Q, C+1), the time-averaged logits the post-processing ranks by (offline also ``aux_pred_cls``)."""
    size = (int(images.shape[-2]), int(images.shape[-1]))
    runner = WindowRunner(model, images.device, contextlib.nullcontext, image_size=size, output_size=size,
                          window_size=window_size or default_window_size(model), chunk_size=int(images.shape[0]),
                          keep_outputs=True)
    outs = [r.outputs for r in list(runner.run(images)) + list(runner.finish())]
    if runner.final:  # the model's own whole-video read-out (see the step ``finalize``)
        return outs[0]
    pred_logits = torch.cat([o["pred_logits"] for o in outs], dim=1)
    result = {"pred_logits": pred_logits, "pred_masks": torch.cat([o["pred_masks"] for o in outs], dim=2)}
    if runner.offline:
        online = torch.cat([o["online_pred_logits"] for o in outs], dim=1)
        result.update(pred_embds=torch.cat([o["pred_embds"] for o in outs], dim=2), online_pred_logits=online,
                      aux_pred_cls=online[0].float().mean(0))
    result["pred_cls"] = pred_logits[0].float().mean(0)
    return result


@torch.no_grad()
def video_inference(model: Any, frames: Tensor, output_size: Optional[Tuple[int, int]] = None,
                    window_size: Optional[int] = None, max_num: Optional[int] = None) -> VISOutput:
    """Official VIS inference on (T, 3, H, W) RGB 0..255 frames already at model size (dense masks: for parity
    checks and short clips; :class:`dvis_sdk.VideoSegmenter` is the bounded-memory path)."""
    image_size = tuple(frames.shape[-2:])
    images = model.preprocess(frames)
    out = forward_video(model, images, window_size)
    if out["pred_cls"].shape[0] == 0:  # a finalizing model may have no output row at all
        h, w = output_size or image_size
        return VISOutput(scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long),
                         ids=torch.zeros(0, dtype=torch.long),
                         masks=torch.zeros((0, frames.shape[0], h, w), dtype=torch.bool))
    return postprocess_vis(out["pred_cls"], out["pred_masks"][0], tuple(images.shape[-2:]), image_size,
                           output_size or image_size, max_num or model.cfg.test.max_num,
                           aux_pred_cls=out.get("aux_pred_cls"))


def default_window_size(model: Any) -> int:
    """The model's own window (``default_window_size``, e.g. DVIS-DAQ's official 5) or its config's."""
    return int(getattr(model, "default_window_size", None) or model.cfg.test.window_size)


def decode(rle: RLE) -> np.ndarray:
    return decode_rles(rle)
