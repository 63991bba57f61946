"""``VideoSegmenter``: the user-facing predictor (load weights, preprocess, run, post-process)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..config import DVISConfig
from ..models.dvis import OnlineDVIS, build_model
from ..results import FrameInstance, FrameResult, Instance, VideoResult

#: Offline mode: frames the temporal refiner sees at once by default (see ``docs/user_guide.md``, long videos).
DEFAULT_CHUNK_SIZE = 300

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """"auto" -> cuda if available else cpu; a CUDA request without CUDA is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available on this machine; "
                           "use device='cpu' or 'auto'")
    return dev


def _tensor_chunks(x: torch.Tensor, window: int, stride: int, max_frames: Optional[int], start: Optional[float],
                   end: Optional[float]) -> Tuple[Iterator[Tuple[int, torch.Tensor]], dict]:
    """Chunks of a (T, 3, H, W) RGB 0..255 tensor with the same range / stride semantics as ``open_video``."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"a frame tensor must be (T, 3, H, W) RGB, got shape {tuple(x.shape)}")
    if x.is_floating_point() and x.numel() and float(x.max()) <= 1.0 + 1e-6 and float(x.max()) > 0:
        warnings.warn("frame tensor values are all <= 1: frames are expected in 0..255", stacklevel=4)
    first = int(start or 0)
    idx = list(range(first, int(end) if end is not None else x.shape[0], stride))[: max_frames]
    idx = [i for i in idx if i < x.shape[0]]

    def gen():
        for s in range(0, len(idx), window):
            yield s, x[idx[s:s + window]].detach().cpu()

    info = dict(height=int(x.shape[2]), width=int(x.shape[3]), num_frames=len(idx), name="tensor", fps=None, path=None,
                source_index=lambda i: first + i * stride, timestamp=lambda i: None)
    return gen(), info


class VideoSegmenter:
    """Video instance segmentation with a DVIS / DVIS++ model.

    >>> seg = VideoSegmenter.from_official("ovis/DVIS_Plus_Online_R50_16wIter.yaml", "model_final.pth")  # doctest: +SKIP
    >>> result = seg.predict(frames)                                                        # doctest: +SKIP

    Args:
        model: an ``OnlineDVIS`` / ``OfflineDVIS`` (usually built by the ``from_*`` constructors).
        device: "cpu", "cuda", "cuda:N" or "auto". dtype: "fp32", "fp16" or "bf16" (autocast; scores and mask
            up-sampling stay fp32).
        window_size: frames the segmenter runs at once; chunk_size: offline, frames the refiner sees at once.
        mask_buffer_mb: how much mask logit data ``predict`` holds before it encodes masks window by window.
        optimize: apply :func:`dvis_sdk.perf.optimize_model` (parity-tested fast paths); compile: also
            ``torch.compile`` the segmenter (opt-in, slow first call per input shape).
    """

    def __init__(self, model: OnlineDVIS, device: Union[str, torch.device] = "cpu", dtype: str = "fp32",
                 window_size: Optional[int] = None, chunk_size: Optional[int] = None, mask_buffer_mb: float = 1024,
                 compile: bool = False, optimize: bool = True):
        self.device = resolve_device(device)
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        if dtype == "fp16" and self.device.type == "cpu":
            warnings.warn("fp16 is not supported on CPU; falling back to fp32", stacklevel=2)
            dtype = "fp32"
        self.dtype = dtype
        self.model = model.to(self.device).eval()
        if optimize:
            from ..perf import optimize_model

            # the parity-tested fast paths (SDPA attention, gathered deformable attention, channels-last ResNet);
            # torch.compile only on request: its first call per input shape compiles for a long time
            optimize_model(self.model, compile=compile)
        self.window_size = window_size or model.cfg.test.window_size
        if self.window_size < 1 or (chunk_size is not None and chunk_size < 1):
            raise ValueError("window_size and chunk_size must be >= 1")
        self.chunk_size = chunk_size or DEFAULT_CHUNK_SIZE
        # mask logits of all queries are held (on the device) up to this size, so that only the kept instances
        # are up-sampled at the end; longer videos switch to encoding every window as it comes (same result)
        self.mask_buffer_mb = mask_buffer_mb

    @property
    def cfg(self) -> DVISConfig:
        return self.model.cfg

    @classmethod
    def from_config(cls, cfg: DVISConfig, state_dict: Optional[Mapping[str, torch.Tensor]] = None,
                    **kwargs: Any) -> "VideoSegmenter":
        """Build from a :class:`DVISConfig` and a state dict with our key names (strict)."""
        model = build_model(cfg)
        if state_dict is not None:
            load_state_dict_strict(model, state_dict)
        return cls(model, **kwargs)

    @classmethod
    def from_official(cls, cfg: Union[str, Path, Mapping, DVISConfig], checkpoint: Union[str, Path, Mapping],
                      mode: Optional[str] = None, **kwargs: Any) -> "VideoSegmenter":
        """Official yaml (or cfg dict, or DVISConfig) + official checkpoint (path to .pth / .safetensors, or a
        state dict / detectron2 ``{"model": ...}`` dict)."""
        from ..convert import convert_official_state_dict, load_official_checkpoint, load_official_config

        config = cfg if isinstance(cfg, DVISConfig) else load_official_config(cfg, mode=mode)
        sd = load_official_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
        return cls.from_config(config, convert_official_state_dict(sd, config), **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: Optional[Union[str, Path]] = None, mode: Optional[str] = None,
                        cache_dir: Optional[Union[str, Path]] = None, revision: Optional[str] = None,
                        token: Union[str, bool, None] = None, **kwargs: Any) -> "VideoSegmenter":
        """A manifest name (``dvis_sdk.hub.list_models()``; default: the manifest's default model), a directory
        written by :meth:`save_pretrained`, or a Hub repo id holding one. ``mode`` overrides online/offline
        (an offline model runs online without its refiner)."""
        from ..hub import default_model_name, resolve_weights

        resolved = resolve_weights(name_or_path or default_model_name(), cache_dir=cache_dir, revision=revision,
                                   token=token)
        cfg, sd = resolved.config, resolved.state_dict
        if mode is not None and mode != cfg.mode:
            cfg = _with_mode(cfg, mode)
            if mode == "online":
                sd = {k: v for k, v in sd.items() if not k.startswith("refiner.")}
        return cls.from_config(cfg, sd, **kwargs)

    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        """Write ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` reads them back."""
        from ..hub import save_pretrained

        return save_pretrained(self.model, directory, config=self.cfg)

    @property
    def mode(self) -> str:
        """"online" (tracker only) or "offline" (tracker + temporal refiner)."""
        return self.cfg.mode

    # ---- frame sources -------------------------------------------------------------------------------------------
    def _windows(self, frames: Any, *, resize: bool, window: int, stride: int, max_frames: Optional[int],
                 start: Optional[float], end: Optional[float]) -> Tuple[Iterator[Tuple[int, torch.Tensor]], dict]:
        """Open ``frames`` lazily; return an iterator of (start index, (t, 3, h, w) float32 0..255 frames at model
        size) that decodes and resizes in a background thread, and facts about the source."""
        from .preprocess import resize_frame, resized_shape
        from .video_io import open_video, prefetch

        if isinstance(frames, torch.Tensor):
            chunks, info = _tensor_chunks(frames, window, stride, max_frames, start, end)
        else:
            src = open_video(frames, stride=stride, max_frames=max_frames, start=start, end=end)
            info = dict(height=src.height, width=src.width, num_frames=len(src), name=src.name, fps=src.fps,
                        path=str(src.path) if src.path else None, source_index=src.source_index,
                        timestamp=src.timestamp)
            chunks = ((i, torch.from_numpy(c).permute(0, 3, 1, 2)) for i, c in src.iter_chunks(window))
        h, w = info["height"], info["width"]
        size = resized_shape(h, w, self.cfg.input.min_size_test, self.cfg.input.max_size_test) if resize else (h, w)
        info["model_size"] = size

        def prepare(chunks=chunks):
            for i, x in chunks:
                if size != (h, w):
                    arr = x.permute(0, 2, 3, 1).to(torch.uint8).numpy()
                    x = torch.from_numpy(np.stack([resize_frame(f, size) for f in arr])).permute(0, 3, 1, 2)
                # uint8 until it is on the device: a quarter of the bytes to copy
                if self.device.type == "cuda":
                    x = x.pin_memory()
                yield i, x

        return prefetch(prepare()), info

    def _runner(self, info: dict, window_size: Optional[int], chunk_size: Optional[int], use_refiner: bool):
        from .runner import WindowRunner

        return WindowRunner(self.model, self.device, self._autocast, image_size=info["model_size"],
                            output_size=(info["height"], info["width"]), window_size=window_size or self.window_size,
                            chunk_size=chunk_size or self.chunk_size, use_refiner=use_refiner)

    def _run(self, runner, windows, progress: bool, total: Optional[int], desc: str):
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, desc=desc, unit="frame", leave=False, dynamic_ncols=True)
        try:
            for _, x in windows:
                images = self.model.preprocess(x.to(self.device, non_blocking=True))
                yield from runner.run(images)
                if bar is not None:
                    bar.update(x.shape[0])
            yield from runner.finish()
        finally:
            if bar is not None:
                bar.close()
            close = getattr(windows, "close", None)
            if close is not None:
                close()  # stop the decoding thread when the consumer stops early

    # ---- public API ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, frames: Any, resize: bool = True, max_frames: Optional[int] = None, stride: int = 1,
                start: Optional[float] = None, end: Optional[float] = None, progress: bool = False,
                window_size: Optional[int] = None, chunk_size: Optional[int] = None) -> VideoResult:
        """Segment and track the instances of one video.

        Args:
            frames: a video file or a folder of frames (path), a (T, H, W, 3) uint8 RGB array, a list of
                (H, W, 3) arrays, or a (T, 3, H, W) RGB tensor (0..255).
            resize: resize the shortest edge to the model's test size (official pipeline). ``False`` for frames
                already at model size.
            max_frames, stride, start, end: read at most ``max_frames`` frames, every ``stride``-th, of the range
                ``[start, end)`` (seconds for video files, frame indices otherwise).
            window_size: frames the segmenter runs at once (default: the model's; the result does not depend on it).
            chunk_size: offline mode: frames the refiner sees at once (default :attr:`chunk_size`); a video no
                longer than it is refined whole, exactly as the official code.

        Memory does not grow with video length except for the run-length-encoded results. On out-of-memory the
        window (then the refiner chunk) is halved; if even one frame does not fit, :class:`InferenceOOMError` is
        raised with ``.partial``: the result of the frames done so far.
        """
        if self.cfg.variant == "daq":  # DVIS-DAQ: its own whole-clip path for now (not the window runner)
            from .daq_predict import predict_daq
            return predict_daq(self, frames, resize=resize, max_frames=max_frames, stride=stride, start=start, end=end)
        from .runner import InferenceOOMError, ScoreAccumulator

        windows, info = self._windows(frames, resize=resize, window=window_size or self.window_size, stride=stride,
                                      max_frames=max_frames, start=start, end=end)
        runner = self._runner(info, window_size, chunk_size, use_refiner=True)
        acc = ScoreAccumulator(self.cfg.segmenter.num_queries, buffer_bytes=int(self.mask_buffer_mb * 2**20))
        try:
            for w in self._run(runner, windows, progress, info["num_frames"], info["name"]):
                acc.add(w)
        except InferenceOOMError as e:
            e.partial = self._video_result(acc, info, runner, stride, start)
            raise
        if acc.frames == 0:
            raise ValueError(f"{info['name']}: no frames to process (empty range?)")
        return self._video_result(acc, info, runner, stride, start)

    def _video_result(self, acc, info: dict, runner, stride: int, start: Optional[float]) -> VideoResult:
        names = self.cfg.class_names
        h, w = info["height"], info["width"]
        scores, labels, queries = acc.select(self.cfg.test.max_num)
        masks = acc.masks_of(queries)
        instances = [Instance(q, l, s, label_name=names[l] if names else None, rles=masks[q], height=h, width=w)
                     for s, l, q in zip(scores, labels, queries)]
        meta = {"mode": "offline" if runner.offline else "online", "source": info.get("path") or info["name"],
                "fps": info.get("fps"), "stride": stride, "start": start, "model_size": list(info["model_size"]),
                "window_size": runner.window_size, "chunk_size": runner.chunk_size, "dtype": self.dtype,
                "masks_encoded_per_window": acc.streaming}
        return VideoResult(instances=instances, num_frames=acc.frames, height=h, width=w, class_names=names, meta=meta)

    @torch.no_grad()
    def stream(self, frames: Any, score_threshold: float = 0.3, resize: bool = True, max_frames: Optional[int] = None,
               stride: int = 1, start: Optional[float] = None, end: Optional[float] = None,
               window_size: Optional[int] = None, progress: bool = False) -> Iterator[FrameResult]:
        """Online inference yielding one :class:`FrameResult` per frame as soon as its window is processed.

        Each instance is a tracker query (``track_id`` stable across frames) with the class and score of its
        time-averaged logits *so far* (the quantity ``predict`` ranks by at the end of the video); instances with
        a score of at least ``score_threshold`` and a non-empty mask are reported, at most ``max_num`` per frame.
        Memory stays constant however long the video is. An offline model streams with its tracker only (no
        refiner: the refiner needs the whole clip). Use ``window_size=1`` for the lowest latency.
        """
        from .runner import ScoreAccumulator, decode

        if self.cfg.variant == "daq":
            raise NotImplementedError("stream() does not support DVIS-DAQ models yet (a DAQ sequence's score is a mean "
                                      "over all its frames); use predict()")
        windows, info = self._windows(frames, resize=resize, window=window_size or self.window_size, stride=stride,
                                      max_frames=max_frames, start=start, end=end)
        runner = self._runner(info, window_size, None, use_refiner=False)
        acc = ScoreAccumulator(self.cfg.segmenter.num_queries, keep_masks=False)
        names = self.cfg.class_names
        h, w = info["height"], info["width"]
        for res in self._run(runner, windows, progress, info["num_frames"], info["name"]):
            acc.add(res)
            pred_cls, _ = acc.mean_logits()
            scores, labels = torch.softmax(pred_cls, -1)[:, :-1].max(-1)
            order = torch.argsort(scores, descending=True, stable=True).tolist()
            reported = [q for q in order if float(scores[q]) >= score_threshold]
            rles = res.encode(reported)
            for i in range(res.num_frames):
                insts = []
                for q in reported:
                    if len(insts) >= self.cfg.test.max_num:
                        break
                    rle = rles[q][i]
                    if rle is not None:
                        lab = int(labels[q])
                        insts.append(FrameInstance(q, lab, float(scores[q]), decode(rle), names[lab] if names else None))
                idx = res.start + i
                yield FrameResult(idx, insts, h, w, source_index=info["source_index"](idx),
                                  timestamp=info["timestamp"](idx))

    def _autocast(self):
        if self.dtype == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=_DTYPES[self.dtype])

    def predict_folder(self, src: Any, out_dir: Union[str, Path], **kwargs: Any):
        """Segment every video of a folder / glob / list file into ``out_dir``: one result per video, a merged
        YouTube-VIS ``results.json`` and a manifest; resumable and fault-isolated. See
        :func:`dvis_sdk.batch.predict_folder` (keyword arguments) and ``docs/batch.md``."""
        from ..batch import predict_folder

        return predict_folder(self, src, out_dir, **kwargs)


def _with_mode(cfg: DVISConfig, mode: str) -> DVISConfig:
    d = cfg.to_dict()
    d["mode"] = mode
    if mode == "online":
        d["refiner"] = None
    return DVISConfig.from_dict(d)


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing missing / unexpected keys and bad shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shapes:
        def fmt(keys: Sequence[str]) -> str:
            return f"{keys[:10]}{' ...' if len(keys) > 10 else ''}"
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {fmt(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {fmt(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {fmt(shapes)}")
        raise ValueError("weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
