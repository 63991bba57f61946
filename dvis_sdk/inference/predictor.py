"""``VideoSegmenter``: the user-facing predictor (load weights, preprocess, run, post-process)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Union

import torch

from ..config import DVISConfig, segmenter_only_config
from ..io import VideoReadError
from ..models.dvis import OnlineDVIS, build_model
from ..models.minvis import SEGMENTER_PREFIXES, segmenter_only
from ..models.optimize import copy_model
from ..models.optimize import optimize as optimize_model
from ..results import FrameInstance, FrameResult, Instance, VideoResult
from ..runtime import DTYPE_REQUESTS, DTYPES, autocast_context, native_bf16, resolve_device, resolve_dtype
from .encoder import MaskEncoder, frame_masks
from .handle import VideoHandle
from .panoptic import dense_predict
from .runner import InferenceOOMError, ScoreAccumulator, WindowRunner, default_window_size

#: Background threads that up-sample and encode masks while inference goes on (``predict``).
MASK_ENCODER_WORKERS = 1
#: Offline mode: frames the temporal refiner sees at once by default (see ``docs/user_guide.md``, long videos).
DEFAULT_CHUNK_SIZE = 300

_DTYPES = DTYPES
_SPEC_KEYS = ("model", "device", "dtype", "window_size", "chunk_size", "mask_buffer_mb", "optimize", "compile",
              "backend", "providers")
_OPEN_DEFAULTS = {"resize": True, "max_frames": None, "stride": 1, "start": None, "end": None}


class VideoSegmenter:
    """Video instance segmentation with a DVIS / DVIS++ / DVIS-DAQ model.

    >>> seg = VideoSegmenter.from_official(  # doctest: +SKIP
    ...     "ovis/DVIS_Plus_Online_R50_16wIter.yaml", "model_final.pth")
    >>> result = seg.predict(frames)                                                        # doctest: +SKIP

    Args:
        model: an ``OnlineDVIS`` / ``OfflineDVIS`` / ``OnlineDAQ`` / ``OfflineDAQ`` (usually built by the
            ``from_*`` constructors).
        device: "cpu", "cuda", "cuda:N" or "auto". dtype: "fp32", "fp16", "bf16" (autocast; scores and mask
            up-sampling stay fp32) or "auto": bf16 on GPUs with native bf16 (compute capability >= 8.0), fp16 on
            older GPUs, fp32 on CPU. fp16 asked on a CPU runs fp32 (:attr:`dtype` says what runs; :meth:`spec`
            keeps the request, so a GPU worker built from it runs fp16).
        window_size: frames the segmenter runs at once; chunk_size: offline, frames the refiner sees at once.
        mask_buffer_mb: how much mask logit data ``predict`` holds before it encodes masks window by window.
        optimize: apply :func:`dvis_sdk.models.optimize.optimize` (parity-tested fast paths); compile: also
            ``torch.compile`` the segmenter (opt-in, slow first call per input shape).

    ``model`` itself is never changed: the segmenter runs a copy of it (``seg.model``). ``model`` may also be any
    backend with the step protocol of :mod:`dvis_sdk.inference.runner` and a ``backend`` name, e.g. an
    :class:`dvis_sdk.export.OnnxDVIS` (``from_pretrained(EXPORT_DIR)`` builds one): :attr:`backend` says which.
    """

    def __init__(self, model: OnlineDVIS, device: Union[str, torch.device] = "cpu", dtype: str = "fp32",
                 window_size: Optional[int] = None, chunk_size: Optional[int] = None, mask_buffer_mb: float = 1024,
                 compile: bool = False, optimize: bool = True):
        # the segmenter works on its own copy: moving, eval mode, fast paths and compilation never touch the
        # caller's model (the from_* constructors hand over a model nobody else holds, without a copy)
        own = copy_model(model) if isinstance(model, torch.nn.Module) else model  # an exported backend is read-only
        self._setup(own, device, dtype, window_size, chunk_size, mask_buffer_mb, compile, optimize)

    @classmethod
    def _owning(cls, model: OnlineDVIS, **kwargs: Any) -> "VideoSegmenter":
        """A segmenter around ``model`` without copying it: for models built here, that no caller holds."""
        seg = cls.__new__(cls)
        seg._setup(model, **kwargs)
        return seg

    def _setup(self, model: OnlineDVIS, device: Union[str, torch.device] = "cpu", dtype: str = "fp32",
               window_size: Optional[int] = None, chunk_size: Optional[int] = None, mask_buffer_mb: float = 1024,
               compile: bool = False, optimize: bool = True) -> None:
        self.device = resolve_device(device)
        if dtype not in DTYPE_REQUESTS:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(DTYPE_REQUESTS)}")
        #: what was asked for ("auto" or a dtype): what :meth:`spec` carries, so that every worker resolves it
        #: for its own device (fp16 on a GPU worker even when the driver that wrote the spec is on a CPU)
        self.requested_dtype = dtype
        #: "pytorch", or the name of the runtime that runs an exported model ("onnxruntime")
        self.backend = str(getattr(model, "backend", "pytorch"))
        if self.backend != "pytorch":
            # the runtime's session options decide its device and precision (see _from_export)
            runs_on = torch.device(getattr(model, "device", "cpu"))
            if self.device != runs_on:
                raise ValueError(f"the {self.backend} model runs on {str(runs_on)!r}, not {str(self.device)!r}: "
                                 f"build it with from_pretrained(EXPORT_DIR, device={str(self.device)!r})")
            dtype = str(getattr(model, "dtype", "fp32"))
        else:
            dtype = resolve_dtype(dtype, self.device)
            if self.requested_dtype == "fp16" and dtype == "fp32":
                warnings.warn("fp16 is not supported on CPU; running fp32 here (a GPU worker given this "
                              "segmenter's spec runs fp16)", stacklevel=3)
            if dtype == "bf16" and self.device.type == "cuda" and not native_bf16(self.device):
                warnings.warn(f"bf16 is emulated on {self.device} (compute capability < 8.0) and slow; "
                              "dtype='fp16' or 'auto' is faster there", stacklevel=3)
        #: the dtype that runs here (see :func:`dvis_sdk.runtime.resolve_dtype`)
        self.dtype = dtype
        self.model = model.to(self.device).eval() if self.backend == "pytorch" else model
        self.optimize, self.compile = bool(optimize), bool(compile)
        self._source: Optional[Dict[str, Any]] = None  # how to load these weights again (see spec())
        if optimize and self.backend == "pytorch":
            # the parity-tested fast paths (SDPA attention, gathered deformable attention, channels-last ResNet);
            # torch.compile only on request: its first call per input shape compiles for a long time
            optimize_model(self.model, compile=compile)
        self.window_size = window_size or default_window_size(model)
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
        return cls._owning(model, **kwargs)

    @classmethod
    def from_official(cls, cfg: Union[str, Path, Mapping, DVISConfig], checkpoint: Union[str, Path, Mapping],
                      mode: Optional[str] = None, trust_pickle: bool = False, **kwargs: Any) -> "VideoSegmenter":
        """Official yaml (or cfg dict, or DVISConfig) + official checkpoint (path to .pth / .pkl / .safetensors, or a
        state dict / detectron2 ``{"model": ...}`` dict). ``trust_pickle``: read a pickle-based checkpoint with no
        restriction on what it may reference (only for a file from a source you trust; see
        :func:`dvis_sdk.official.load_official_checkpoint`); :meth:`spec` carries it, so workers read it alike."""
        from ..official import convert_official_state_dict, load_official_checkpoint, load_official_config

        config = cfg if isinstance(cfg, DVISConfig) else load_official_config(cfg, mode=mode)
        sd = (load_official_checkpoint(checkpoint, trust_pickle=trust_pickle) if isinstance(checkpoint, (str, Path))
              else checkpoint)
        seg = cls.from_config(config, convert_official_state_dict(sd, config), **kwargs)
        if isinstance(cfg, (str, Path)) and isinstance(checkpoint, (str, Path)):
            seg._source = {"official": str(Path(cfg).resolve()) if Path(cfg).exists() else str(cfg),
                           "checkpoint": str(Path(checkpoint).resolve()), "mode": mode,
                           "trust_pickle": bool(trust_pickle)}
        return seg

    @classmethod
    def from_pretrained(cls, name_or_path: Optional[Union[str, Path]] = None, mode: Optional[str] = None,
                        cache_dir: Optional[Union[str, Path]] = None, revision: Optional[str] = None,
                        token: Union[str, bool, None] = None, backend: Optional[str] = None,
                        providers: Optional[Sequence[str]] = None, **kwargs: Any) -> "VideoSegmenter":
        """A manifest name (``dvis_sdk.weights.list_models()``; default: the manifest's default model), a directory
        written by :meth:`save_pretrained`, or a Hub repo id holding one. ``mode`` overrides online/offline
        (an offline model runs online without its refiner).

        A folder written by ``dvis export MODEL --format onnx`` runs on ONNX Runtime (``backend="onnxruntime"``,
        needs ``dvis_sdk[onnx]``, no PyTorch weights); ``providers`` chooses its execution providers (default CPU;
        e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``). ``backend`` (default: from the folder)
        insists on one."""
        from ..export.onnx_export import is_onnx_export
        from ..weights import default_model_name, resolve_weights

        name = str(name_or_path or default_model_name())
        local = Path(name).expanduser()
        if is_onnx_export(local) or backend == "onnxruntime":
            return cls._from_export(local, backend, providers, mode, **kwargs)
        if backend not in (None, "pytorch") or providers is not None:
            raise ValueError(f"backend={backend!r} / providers=... need an ONNX export folder, got {name!r}: "
                             "export one with `dvis export MODEL --format onnx --out DIR`")
        resolved = resolve_weights(name_or_path or default_model_name(), cache_dir=cache_dir, revision=revision,
                                   token=token)
        cfg, sd = resolved.config, resolved.state_dict
        if mode is not None and mode != cfg.mode:
            cfg = _with_mode(cfg, mode)
            if mode == "online":
                sd = {k: v for k, v in sd.items() if not k.startswith("refiner.")}
            elif mode == "segmenter":
                sd = {k: v for k, v in sd.items() if k.startswith(SEGMENTER_PREFIXES)}
        seg = cls.from_config(cfg, sd, **kwargs)
        # a token is never written into a spec: workers read it from the environment (HF_TOKEN) if needed
        seg._source = {"pretrained": str(local.resolve()) if local.exists() else name, "mode": mode,
                       "cache_dir": None if cache_dir is None else str(cache_dir), "revision": revision}
        return seg

    @classmethod
    def _from_export(cls, path: Path, backend: Optional[str], providers: Optional[Sequence[str]],
                     mode: Optional[str], **kwargs: Any) -> "VideoSegmenter":
        from ..export import OnnxDVIS, is_onnx_export

        if backend not in (None, "onnxruntime"):
            raise ValueError(f"{path} is an ONNX export: it runs with backend='onnxruntime', not {backend!r}")
        if not is_onnx_export(path):
            raise ValueError(f"backend='onnxruntime' needs a folder written by `dvis export MODEL --format onnx "
                             f"--out DIR`; {str(path)!r} is not one")
        kwargs.pop("optimize", None), kwargs.pop("compile", None)  # PyTorch-only settings, kept in specs
        device = resolve_device(_export_device(kwargs.get("device"), providers))
        kwargs["device"] = device
        runtime = OnnxDVIS(path, providers=providers, mode=mode, device=device,
                           dtype=_export_dtype(kwargs.get("dtype", "fp32"), device, providers),
                           window_size=kwargs.get("window_size"), chunk_size=kwargs.get("chunk_size"))
        seg = cls._owning(runtime, optimize=False, **kwargs)
        seg._source = {"pretrained": str(path.resolve()), "mode": mode}
        return seg

    # ---- spec: every setting, to rebuild this segmenter elsewhere (batch workers, Ray actors) ----------------------
    def spec(self) -> Dict[str, Any]:
        """A plain, JSON-able description of this segmenter: every constructor setting and where the weights come
        from, so that :meth:`from_spec` rebuilds an equivalent one (in another process, on another machine).

        ``spec["model"]`` is ``{"pretrained": name or folder, "mode", "cache_dir", "revision"}`` or ``{"official":
        yaml, "checkpoint": path, "mode", "trust_pickle"}`` when the weights were loaded from there, else
        ``{"config": config dict}`` (then give the weights to :meth:`from_spec`:
        ``state_dict=seg.model.state_dict()``). Replace ``"model"`` (e.g. by ``{"pretrained": folder}`` after
        :meth:`save_pretrained`) or ``"device"`` to place a copy."""
        return {"model": dict(self._source) if self._source else {"config": self.cfg.to_dict()},
                "device": str(self.device), "dtype": self.requested_dtype, "window_size": self.window_size,
                "chunk_size": self.chunk_size, "mask_buffer_mb": self.mask_buffer_mb, "optimize": self.optimize,
                "compile": self.compile, "backend": self.backend,
                "providers": list(getattr(self.model, "providers", None) or []) or None}

    def settings(self) -> Dict[str, Any]:
        """:meth:`spec` without the model: the inference settings only."""
        return {k: v for k, v in self.spec().items() if k != "model"}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any],
                  state_dict: Optional[Mapping[str, torch.Tensor]] = None) -> "VideoSegmenter":
        """Rebuild a segmenter from :meth:`spec` (``state_dict``: the weights, for a ``{"config": ...}`` model)."""
        spec = dict(spec)
        unknown = set(spec) - set(_SPEC_KEYS)
        if unknown or "model" not in spec:
            raise ValueError(f"not a VideoSegmenter spec: unknown key(s) {sorted(unknown)}" if unknown else
                             "not a VideoSegmenter spec: it has no 'model'")
        model = dict(spec.pop("model"))
        backend, providers = spec.pop("backend", None), spec.pop("providers", None)
        if backend not in (None, "pytorch") or providers:
            if "pretrained" not in model:
                raise ValueError(f"a {backend} spec needs model={{'pretrained': EXPORT_DIR}}, got keys {sorted(model)}")
            return cls.from_pretrained(model.pop("pretrained"), **model, backend=backend, providers=providers, **spec)
        if "pretrained" in model:
            return cls.from_pretrained(model.pop("pretrained"), **model, **spec)
        if "official" in model:
            return cls.from_official(model.pop("official"), model.pop("checkpoint"), **model, **spec)
        if "config" in model:
            if state_dict is None:
                raise ValueError("this spec's model is a bare config: pass its weights, "
                                 "from_spec(spec, state_dict=...)")
            return cls.from_config(DVISConfig.from_dict(model["config"]), state_dict, **spec)
        raise ValueError(f"spec['model'] must have 'pretrained', 'official' or 'config', got keys {sorted(model)}")

    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (an exported backend: a copy of its export folder);
        :meth:`from_pretrained` reads them back."""
        from ..weights import save_pretrained

        if self.backend != "pytorch":
            import shutil

            return Path(shutil.copytree(self.model.path, directory, dirs_exist_ok=True))

        return save_pretrained(self.model, directory, config=self.cfg)

    def segmenter_only(self, class_names: Optional[Sequence[str]] = None, max_num: Optional[int] = 10,
                       match_embedding: Optional[str] = None) -> "VideoSegmenter":
        """A new segmenter (same settings) running this model's segmenter alone, its queries matched frame to frame
        as the official MinVIS / CTMinVIS (:func:`dvis_sdk.models.minvis.segmenter_only`; arguments as there).
        This segmenter is left unchanged."""
        if self.backend != "pytorch":
            raise ValueError(f"segmenter_only() needs a PyTorch model, not the {self.backend} backend: export the "
                             "segmenter-only model instead (dvis export MODEL --mode segmenter)")
        model = segmenter_only(self.model, class_names=class_names, max_num=max_num, match_embedding=match_embedding)
        seg = type(self)._owning(model, **{k: v for k, v in self.settings().items()
                                           if k not in ("backend", "providers")})
        return seg

    @property
    def mode(self) -> str:
        """"online" (tracker only), "offline" (tracker + temporal refiner) or "segmenter" (the segmenter alone,
        queries matched frame to frame: the official MinVIS / CTMinVIS)."""
        return self.cfg.mode

    # ---- frame sources -------------------------------------------------------------------------------------------
    def open(self, frames: Any, resize: bool = True, max_frames: Optional[int] = None, stride: int = 1,
             start: Optional[float] = None, end: Optional[float] = None,
             window_size: Optional[int] = None) -> VideoHandle:
        """Open a video for :meth:`predict` / :meth:`stream` (arguments as :meth:`predict`): decoding and resizing
        start now, in a background thread, so the next video can decode while this one is in inference."""
        return VideoHandle(frames, min_size=self.cfg.input.min_size_test, max_size=self.cfg.input.max_size_test,
                           pin=self.device.type == "cuda", resize=resize, window_size=window_size or self.window_size,
                           stride=stride, max_frames=max_frames, start=start, end=end)

    def _handle(self, frames: Any, window_size: Optional[int], **open_args: Any) -> VideoHandle:
        if not isinstance(frames, VideoHandle):
            return self.open(frames, window_size=window_size, **open_args)
        given = [k for k, v in open_args.items() if v != _OPEN_DEFAULTS[k]]
        if given:
            raise ValueError(f"{', '.join(given)} of an opened video are set by open(); pass them there")
        return frames

    def _runner(self, info: dict, window_size: Optional[int], chunk_size: Optional[int], use_refiner: bool):
        return WindowRunner(self.model, self.device, self._autocast, image_size=info["model_size"],
                            output_size=(info["height"], info["width"]), window_size=window_size or self.window_size,
                            chunk_size=chunk_size or self.chunk_size, use_refiner=use_refiner)

    def _run(self, runner, handle: VideoHandle, progress: bool, on_frames: Optional[Callable[[int], None]]):
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=handle.num_frames, desc=handle.name, unit="frame", leave=False, dynamic_ncols=True)
        windows = handle.windows(on_frames)
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
            windows.close()  # stop the decoding thread when the consumer stops early

    # ---- public API ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, frames: Any, resize: bool = True, max_frames: Optional[int] = None, stride: int = 1,
                start: Optional[float] = None, end: Optional[float] = None, progress: bool = False,
                window_size: Optional[int] = None, chunk_size: Optional[int] = None,
                on_frames: Optional[Callable[[int], None]] = None) -> VideoResult:
        """Segment and track the instances of one video.

        Args:
            frames: a video file or a folder of frames (path), a (T, H, W, 3) uint8 RGB array, a list of
                (H, W, 3) arrays, a (T, 3, H, W) RGB tensor (0..255), or a :class:`VideoHandle` from :meth:`open`
                (then ``resize`` ... ``end`` were given to ``open``).
            resize: resize the shortest edge to the model's test size (official pipeline). ``False`` for frames
                already at model size.
            max_frames, stride, start, end: read at most ``max_frames`` frames, every ``stride``-th, of the range
                ``[start, end)`` (seconds for video files, frame indices otherwise).
            window_size: frames the segmenter runs at once (default: the model's; the result does not depend on it).
            chunk_size: offline mode: frames the refiner sees at once (default :attr:`chunk_size`); a video no
                longer than it is refined whole, exactly as the official code.
                DVIS-DAQ models ignore it: their refiner sees the whole video, as the official code
                (``docs/daq.md``: what grows with the video).
            on_frames: called with the number of frames of each window once it is through inference.

        Memory does not grow with video length except for the run-length-encoded results. On out-of-memory the
        window (then the refiner chunk) is halved; if even one frame does not fit, :class:`InferenceOOMError` is
        raised with ``.partial``: the result of the frames done so far.
        """
        handle = self._handle(frames, window_size, resize=resize, max_frames=max_frames, stride=stride, start=start,
                              end=end)
        info = handle.info
        runner = self._runner(info, window_size or handle.window_size, chunk_size, use_refiner=True)
        if self.cfg.test.task != "vis":  # video panoptic / semantic: whole-video maps (inference/panoptic.py)
            return dense_predict(self._run(runner, handle, progress, on_frames), runner, info, self.cfg,
                                 int(self.mask_buffer_mb * 2**20), handle.stride, handle.start, self.dtype)
        # masks are up-sampled and encoded in a background thread while the next windows are in inference
        with MaskEncoder(self.device, workers=MASK_ENCODER_WORKERS) as encoder:
            acc = ScoreAccumulator(None if runner.final else self.cfg.segmenter.num_queries,
                                   buffer_bytes=int(self.mask_buffer_mb * 2**20), encoder=encoder)
            try:
                for w in self._run(runner, handle, progress, on_frames):
                    acc.add(w)
                if acc.frames == 0:
                    raise VideoReadError(f"{info.get('path') or info['name']}: no frames to process (empty range?)")
                return self._video_result(acc, info, runner, handle.stride, handle.start)
            except InferenceOOMError as e:
                e.partial = self._video_result(acc, info, runner, handle.stride, handle.start, partial=True)
                raise

    def _video_result(self, acc, info: dict, runner, stride: int, start: Optional[float],
                      partial: bool = False) -> VideoResult:
        """The result of what ``acc`` holds; ``partial`` (after an out-of-memory error): every frame done, with
        the masks of those that could be encoded (``meta["masks_encoded_frames"]``; ``None`` after them)."""
        names = self.cfg.class_names
        h, w = info["height"], info["width"]
        scores, labels, queries = acc.select(self.cfg.test.max_num)
        masks = acc.masks_of(queries, partial=partial)
        instances = [Instance(q, lab, s, label_name=names[lab] if names else None, rles=masks[q], height=h, width=w)
                     for s, lab, q in zip(scores, labels, queries)]
        mode = "offline" if runner.offline else ("segmenter" if self.cfg.mode == "segmenter" else "online")
        meta = {"mode": mode, "source": info.get("path") or info["name"],
                "fps": info.get("fps"), "stride": stride, "start": start, "model_size": list(info["model_size"]),
                "window_size": runner.window_size, "chunk_size": runner.chunk_size, "dtype": self.dtype,
                "masks_encoded_per_window": acc.streaming}
        if partial and acc.encoded_frames < acc.frames:
            meta["masks_encoded_frames"] = acc.encoded_frames
        return VideoResult(instances=instances, num_frames=acc.frames, height=h, width=w, class_names=names,
                           meta=meta)

    @torch.no_grad()
    def stream(self, frames: Any, score_threshold: float = 0.3, resize: bool = True, max_frames: Optional[int] = None,
               stride: int = 1, start: Optional[float] = None, end: Optional[float] = None,
               window_size: Optional[int] = None, progress: bool = False) -> Iterator[FrameResult]:
        """Online inference yielding one :class:`FrameResult` per frame as soon as its window is processed.

        Each instance is a tracker query (``track_id`` stable across frames) with the class and score of its
        time-averaged logits *so far* (the quantity ``predict`` ranks by at the end of the video); instances with
        a score of at least ``score_threshold`` and a non-empty mask are reported, at most ``max_num`` per frame.
        Memory stays constant however long the video is. An offline model streams with its tracker only (no
        refiner: the refiner needs the whole clip). Use ``window_size=1`` for the lowest latency. ``frames``: as
        :meth:`predict` (a :class:`VideoHandle` from :meth:`open` too). DVIS-DAQ models raise
        ``NotImplementedError``: their output only exists at the end of the video (use :meth:`predict`).
        """
        if self.cfg.test.task != "vis":
            raise NotImplementedError(
                f"stream() is not available for video {'panoptic' if self.cfg.test.task == 'vps' else 'semantic'} "
                "models: the official maps exist only at the end of the video (time-averaged class scores, "
                "segments kept by their area over all frames); use predict()")
        if callable(getattr(self.model, "finalize", None)):
            family = "DVIS-DAQ" if self.cfg.variant == "daq" else self.cfg.variant
            raise NotImplementedError(
                f"stream() is not available for {family} models: their official output exists only at the end of "
                "the video (a sequence's score is the mean over all its frames); use predict()")
        handle = self._handle(frames, window_size, resize=resize, max_frames=max_frames, stride=stride, start=start,
                              end=end)
        info = handle.info
        runner = self._runner(info, window_size or handle.window_size, None, use_refiner=False)
        acc = ScoreAccumulator(self.cfg.segmenter.num_queries, keep_masks=False)
        names = self.cfg.class_names
        h, w = info["height"], info["width"]
        for res in self._run(runner, handle, progress, None):
            acc.add(res)
            scores, labels = acc.query_scores()
            order = torch.argsort(scores, descending=True, stable=True)
            # one device -> host read per window for every query's score, label and rank
            score_l, label_l, order_l = torch.stack([scores.double(), labels.double(), order.double()]).tolist()
            reported = [int(q) for q in order_l if score_l[int(q)] >= score_threshold]
            per_frame = frame_masks(res.mask_logits, res.padded_size, res.image_size, res.output_size, reported,
                                    self.cfg.test.max_num)
            for i, found in enumerate(per_frame):
                insts = [FrameInstance(q, int(label_l[q]), score_l[q], mask,
                                       names[int(label_l[q])] if names else None) for q, mask in found]
                idx = res.start + i
                yield FrameResult(idx, insts, h, w, source_index=info["source_index"](idx),
                                  timestamp=info["timestamp"](idx))

    def _autocast(self):
        return autocast_context(self.device, self.dtype)

    def predict_folder(self, *args: Any, **kwargs: Any) -> None:
        """Moved: batch processing lives in :mod:`dvis_sdk.batch` (it uses the predictor, not the reverse)."""
        raise AttributeError("VideoSegmenter.predict_folder moved to dvis_sdk.predict_folder(seg, src, out_dir, "
                             "**options) (also dvis_sdk.batch.predict_folder)")


def _export_device(device: Any, providers: Optional[Sequence[str]]) -> str:
    """An export's device: as given, else ("auto" / None) CUDA when the first provider is a GPU one and PyTorch sees
    a GPU (tensors then stay on it between graphs), else the CPU (ONNX Runtime copies to its GPU 0 itself)."""
    if device not in (None, "auto"):
        return str(device)
    gpu = bool(providers) and providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
    return "cuda" if gpu and torch.cuda.is_available() else "cpu"


def _export_dtype(dtype: str, device: torch.device, providers: Optional[Sequence[str]]) -> str:
    """ONNX Runtime runs the exported fp32 graphs; fp16 only through TensorRT (its builder's fp16 mode)."""
    trt = "TensorrtExecutionProvider" in (providers or [])
    if dtype in ("auto", "fp16") and trt and device.type == "cuda":
        return "fp16"
    if dtype in ("auto", "fp32") or (dtype == "fp16" and device.type == "cpu"):  # CPU fp16: fp32, as PyTorch
        return "fp32"
    raise ValueError(f"dtype={dtype!r} with the onnxruntime backend: it runs fp32 (device='cpu' or 'cuda:N'), or "
                     "fp16 with the TensorRT provider on a GPU (providers=['TensorrtExecutionProvider', ...])")


def _with_mode(cfg: DVISConfig, mode: str) -> DVISConfig:
    if mode == "segmenter":
        return segmenter_only_config(cfg)
    if cfg.mode == "segmenter":
        raise ValueError(f"a segmenter-only model has no tracker: it cannot run with mode={mode!r}")
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
