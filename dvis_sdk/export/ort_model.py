"""``OnnxDVIS``: a DVIS model exported by :func:`~dvis_sdk.export.export_onnx`, run with ONNX Runtime.

It implements the step protocol of :mod:`dvis_sdk.inference.runner` over ONNX Runtime sessions, so
``VideoSegmenter`` runs it through the same window loop, post-processing, streaming and batch code as a PyTorch
model: :meth:`OnnxDVIS.preprocess`, :meth:`OnnxDVIS.segment` (one window), :meth:`OnnxDVIS.track` (the tracker's
frame loop: Hungarian matching in scipy between graph calls, explicit :class:`OnnxTrackerState`) and, for offline
exports, :meth:`OnnxOfflineDVIS.refine`; a segmenter-only export (MinVIS / CTMinVIS) is an :class:`OnnxMinVIS`
(the segmenter graph, the frame-to-frame matching in Python).
The steps accept numpy arrays or CPU tensors and return CPU tensors
(zero-copy views of ONNX Runtime's outputs); the graph work is ONNX Runtime's, no PyTorch weights are read.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..config import DVISConfig
from ..models.minvis import MatchState, associate
from ..ops.preprocess import normalize_and_pad
from .providers import GPU_PROVIDERS, TENSORRT, TRT_CACHE_DIR, default_providers, provider_options

Arrays = Dict[str, np.ndarray]


@dataclass(frozen=True)
class OnnxTrackerState:
    """The tracker memory between windows of one video (numpy twin of ``models.tracker.TrackerState``).

    ``last_output`` (Q, 1, C): the last frame's last tracker layer output (the next frame's query comes from
    it); ``last_frame_embeds`` (Q, 1, C): the last frame's segmenter embeds in tracked order (the next frame is
    matched against it); ``num_frames``: frames tracked so far. With I/O binding ``last_output`` is a tensor on the
    GPU (it feeds the next frame's graph where it is)."""

    last_output: Any
    last_frame_embeds: np.ndarray
    num_frames: int


def cosine_cost(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """``1 - cos`` between (..., Q, C) sets in float32 (as the PyTorch tracker), NaN -> 0, returned as float64."""
    ref = ref.astype(np.float32)
    cur = cur.astype(np.float32)
    ref = ref / (np.linalg.norm(ref, axis=-1, keepdims=True) + np.float32(1e-6))
    cur = cur / (np.linalg.norm(cur, axis=-1, keepdims=True) + np.float32(1e-6))
    cost = np.float32(1) - ref @ np.swapaxes(cur, -1, -2)
    return np.nan_to_num(cost, nan=0.0).astype(np.float64)


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, Tensor):
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


def _as_tensor(x: Any) -> Tensor:
    if isinstance(x, Tensor):
        return x
    return torch.from_numpy(x if x.flags.writeable else x.copy())


def _from_ort(value: Any, device: torch.device) -> Tensor:
    """An ONNX Runtime ``OrtValue`` as a tensor on ``device``, without a copy where DLPack is available."""
    try:
        t = torch.from_dlpack(value)
    except (TypeError, AttributeError, RuntimeError, BufferError):
        try:  # builds whose OrtValue has to_dlpack() but not the __dlpack__ protocol
            t = torch.utils.dlpack.from_dlpack(value.to_dlpack())
        except (TypeError, AttributeError, RuntimeError, BufferError):
            t = torch.from_numpy(value.numpy())  # through the host
    return t if t.device == device else t.to(device)


def _stack(items: Sequence[Any]) -> Any:
    return torch.stack(list(items), 0) if isinstance(items[0], Tensor) else np.stack(items, 0)


def _cat(items: Sequence[Any], axis: int) -> Any:
    if any(isinstance(x, Tensor) and x.device.type != "cpu" for x in items):
        return torch.cat([torch.as_tensor(x) for x in items], axis)
    return np.concatenate([_as_numpy(x) for x in items], axis)


def _export_kind(path: Union[str, Path]) -> str:
    """"offline" (a refiner graph), "segmenter" (a segmenter-only model) or "online"."""
    try:
        meta = json.loads((Path(path) / "config.json").read_text())
        if meta.get("mode") == "segmenter":
            return "segmenter"
        return "offline" if "refiner" in meta.get("graphs", {}) else "online"
    except (OSError, ValueError, AttributeError):
        return "online"


def available_providers() -> List[str]:
    """The execution providers this ONNX Runtime build offers (e.g. CPU, CUDA, TensorRT)."""
    from .onnx_export import require_onnx

    require_onnx()
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxDVIS:
    """Run an exported DVIS folder with ONNX Runtime (an offline export gives an :class:`OnnxOfflineDVIS`).

    Args:
        path: the folder written by ``export_onnx`` / ``dvis export``.
        providers: ONNX Runtime execution providers, in order of preference (default: CPU; e.g.
            ``["CUDAExecutionProvider", "CPUExecutionProvider"]``); one this build lacks is a one-line error.
        threads: intra-op threads per session (None: ONNX Runtime's default).
        mode: ``"online"`` runs an offline export without its refiner (as ``from_pretrained(mode="online")``).
        device: ``"cuda:N"`` runs the CUDA / TensorRT providers on GPU N (their ``device_id``; default providers
            then CUDA, CPU) and, with a GPU provider first, keeps tensors on that GPU between graphs (I/O binding:
            ``io_binding``, default on there); ``"cpu"``: tensors on the host (a GPU provider then uses GPU 0).
        dtype: ``"fp16"`` builds TensorRT engines in fp16 (TensorRT provider only); otherwise fp32.
        trt_cache: TensorRT engine cache folder (default ``<path>/trt_cache``: engines are built once, reused by
            later processes). window_size, chunk_size: the largest T the runner feeds (TensorRT shape profiles).
    """

    backend = "onnxruntime"

    def __new__(cls, path: Union[str, Path], *args: Any, **kwargs: Any) -> "OnnxDVIS":
        mode = kwargs.get("mode", args[2] if len(args) > 2 else None)
        kind = _export_kind(path) if cls is OnnxDVIS else None
        if kind == "segmenter":
            cls = OnnxMinVIS
        elif kind == "offline" and mode != "online":
            cls = OnnxOfflineDVIS
        return super().__new__(cls)

    def __init__(self, path: Union[str, Path], providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None, mode: Optional[str] = None, *,
                 device: Union[str, torch.device] = "cpu", dtype: str = "fp32",
                 trt_cache: Optional[Union[str, Path]] = None, window_size: Optional[int] = None,
                 chunk_size: Optional[int] = None, io_binding: Optional[bool] = None):
        from .onnx_export import FORMAT, require_onnx

        require_onnx()
        import onnxruntime as ort

        self.path = Path(path)
        meta_path = self.path / "config.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: export a model first (dvis export MODEL --format onnx "
                                    f"--out {self.path})")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a DVIS ONNX export (config.json has no \"format\": \"{FORMAT}\"); "
                             "export one with `dvis export MODEL --format onnx --out DIR`")
        if mode not in (None, "online", "offline", "segmenter"):
            raise ValueError(f"mode must be 'online', 'offline' or 'segmenter', got {mode!r}")
        if (mode == "segmenter") != (self.meta.get("mode") == "segmenter") and mode is not None:
            raise ValueError(f"{self.path} holds a {self.meta.get('mode')} model: it cannot run with mode={mode!r} "
                             "(export the model with --mode segmenter for a segmenter-only export)")
        if mode == "offline" and "refiner" not in self.meta["graphs"]:
            raise ValueError(f"{self.path} holds an online model: it cannot run offline (export an offline model)")
        cfg = dict(self.meta["model_config"])
        if mode == "online" and cfg.get("mode") != "online":
            cfg.update(mode="online", refiner=None)
        self.cfg = DVISConfig.from_dict(cfg)
        self.plus = self.meta["variant"] == "dvis++"
        self._inverse = bool(self.meta["tracker"].get("inverse_matching", False))
        self._permute_first = bool(self.meta["tracker"].get("permute_first_reference", False))
        #: where the tensors live between graphs ("cuda:N": the GPU providers run on GPU N)
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"the onnxruntime backend runs on 'cpu' or 'cuda:N', got {str(self.device)!r}")
        if dtype not in ("fp32", "fp16"):
            raise ValueError(f"the onnxruntime backend runs fp32 (fp16 through TensorRT), got dtype={dtype!r}")
        have = ort.get_available_providers()
        self.providers = list(providers or default_providers(self.device.type))
        missing = [p for p in self.providers if p not in have]
        if missing:
            raise ValueError(f"execution provider(s) {missing} not available in this onnxruntime build (it has "
                             f"{have}); install onnxruntime-gpu for CUDA / TensorRT")
        if dtype == "fp16" and TENSORRT not in self.providers:
            raise ValueError("fp16 with onnxruntime needs the TensorRT provider (providers="
                             "['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider'])")
        self.dtype = dtype
        #: the GPU the CUDA / TensorRT providers use: the device's index (a CPU device: GPU 0, copies via the host)
        self.device_id = self.device.index or 0
        gpu_first = self.providers[0] in GPU_PROVIDERS
        # I/O binding: inputs and outputs stay where the first provider computes (device memory on a GPU), so
        # graph outputs feed the next graph without a round trip through host numpy
        self.io_binding = bool(gpu_first and self.device.type == "cuda") if io_binding is None else bool(io_binding)
        if self.device.type == "cuda" and not (gpu_first and self.io_binding):
            raise ValueError(f"device={str(self.device)!r} runs the graphs on that GPU: put a GPU provider first "
                             f"(providers=['CUDAExecutionProvider', 'CPUExecutionProvider']), got {self.providers}")
        self.threads = threads
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        cache = Path(trt_cache) if trt_cache else self.path / TRT_CACHE_DIR
        if TENSORRT in self.providers:
            cache.mkdir(parents=True, exist_ok=True)
        names = [n for n in self.meta["graphs"] if self.offline or n not in ("refiner", "frame_forward")]
        self.sessions = {
            name: ort.InferenceSession(
                str(self.path / self.meta["graphs"][name]["file"]), opts,
                providers=provider_options(self.providers, self.meta, name, self.device_id, fp16=dtype == "fp16",
                                           trt_cache=cache, window_size=window_size, chunk_size=chunk_size))
            for name in names}

    @property
    def offline(self) -> bool:
        return isinstance(self, OnnxOfflineDVIS)

    @property
    def num_classes(self) -> int:
        return self.cfg.segmenter.num_classes

    def digest(self) -> str:
        """sha256 of the graph files and config.json (what decides the results; batch fingerprints use it)."""
        import hashlib

        h = hashlib.sha256()
        for name in ["config.json"] + sorted(g["file"] for g in self.meta["graphs"].values()):
            h.update(name.encode() + b"|" + (self.path / name).read_bytes())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, providers={self.providers})"

    def _run(self, name: str, **inputs: Any) -> Dict[str, Any]:
        """One graph: numpy outputs, or with I/O binding tensors on :attr:`device` (inputs bound where they are)."""
        g = self.meta["graphs"][name]
        if self.io_binding:
            return self._run_bound(name, g, inputs)
        feed = {k: np.ascontiguousarray(_as_numpy(inputs[k]), dtype=np.float32) for k in g["inputs"]}
        return dict(zip(g["outputs"], self.sessions[name].run(None, feed)))

    def _run_bound(self, name: str, g: Dict[str, Any], inputs: Dict[str, Any]) -> Dict[str, Tensor]:
        session = self.sessions[name]
        binding = session.io_binding()
        kind, index = self.device.type, self.device_id
        keep = []  # the bound buffers must outlive the run
        for k in g["inputs"]:
            x = inputs[k]
            x = torch.from_numpy(np.asarray(x)) if not isinstance(x, Tensor) else x
            x = x.detach().to(self.device, torch.float32).contiguous()
            keep.append(x)
            binding.bind_input(k, kind, index, np.float32, list(x.shape), x.data_ptr())
        for k in g["outputs"]:
            binding.bind_output(k, kind, index)
        if kind == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # PyTorch's writes to the inputs are done
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return {k: _from_ort(v, self.device) for k, v in zip(g["outputs"], binding.get_outputs())}

    # --- steps (the runner's protocol) ----------------------------------------------------------------------------
    def preprocess(self, frames: Any) -> Tensor:
        """(T, 3, H, W) RGB 0..255 -> (x - mean) / std, zero-padded bottom/right to the graph's size multiple
        (the PyTorch model's own preprocessing)."""
        x = frames if isinstance(frames, Tensor) else torch.from_numpy(np.asarray(frames))
        inp = self.meta["input"]
        x = x.to(self.device) if self.io_binding else x.cpu()  # bound graphs read it where it is
        return normalize_and_pad(x, inp["pixel_mean"], inp["pixel_std"], int(inp["size_divisibility"]))

    def segment(self, images: Any) -> Dict[str, Tensor]:
        """(t, 3, Hp, Wp) normalised padded frames -> ``pred_logits``, ``pred_masks``, ``pred_embds``,
        ``pred_embds_without_norm`` and ``mask_features`` (layouts as ``OnlineDVIS.segment``)."""
        fixed = self.meta["graphs"]["segmenter"].get("fixed_size")
        if fixed and list(images.shape[-2:]) != list(fixed):
            raise ValueError(f"this export only runs at {fixed[0]}x{fixed[1]} (padded) frames, got "
                             f"{images.shape[-2]}x{images.shape[-1]}: export again with --size "
                             f"{images.shape[-2]}x{images.shape[-1]}")
        return {k: _as_tensor(v) for k, v in self._run("segmenter", images=images).items()}

    def track(self, seg: Dict[str, Any], state: Optional[OnnxTrackerState]
              ) -> Tuple[Dict[str, Tensor], OnnxTrackerState, Tensor]:
        """The tracker on one window (as ``OnlineDVIS.track``): returns (``pred_logits`` (1, t, Q, K+1),
        ``pred_masks`` (1, Q, t, h, w), ``pred_embds`` (1, C, t, Q)), the new state and the (t, Q) indices."""
        embeds = np.transpose(_as_numpy(seg["pred_embds"]), (2, 3, 0, 1))  # (t, Q, 1, C)
        no_norm = np.transpose(_as_numpy(seg["pred_embds_without_norm"]), (2, 3, 0, 1))
        n_frame, n_q = embeds.shape[:2]
        if state is not None and state.last_frame_embeds.shape[0] != n_q:
            raise ValueError(f"state was built for Q={state.last_frame_embeds.shape[0]} queries, got Q={n_q}")
        first_ref = embeds[0] if state is None else state.last_frame_embeds
        refs = np.concatenate([first_ref[None], embeds[:-1]], 0)
        raw_cost = cosine_cost(refs[:, :, 0], embeds[:, :, 0])  # (t, Q, Q)
        ref_rows = np.arange(n_q)
        prev = None if state is None else state.last_output
        last_frame_embeds = first_ref
        outputs, references, applied = [], [], []
        for i in range(n_frame):
            cost = raw_cost[i][ref_rows]
            matched = linear_sum_assignment(cost.T if self._inverse else cost)[1].astype(np.int64)
            identity = no_norm[i][matched]
            applied.append(matched)
            if i == 0 and state is None and not self._permute_first:
                ref_rows, last_frame_embeds = np.arange(n_q), embeds[i]
            else:
                ref_rows, last_frame_embeds = matched, embeds[i][matched]
            if prev is None:
                out = (self._run("tracker_start", key=no_norm[i], identity=identity) if self.plus
                       else self._run("tracker_start", embeds=embeds[i]))
            else:
                out = self._run("tracker_step", key=no_norm[i], identity=identity, prev_output=prev)
            prev = out["output"]
            outputs.append(prev)
            if self.plus:
                references.append(out["reference"])
        heads_in = {"outputs": _stack(outputs), "mask_features": seg["mask_features"]}
        if self.plus:
            heads_in["references"] = _stack(references)
        result = {k: _as_tensor(v) for k, v in self._run("tracker_heads", **heads_in).items()}
        new_state = OnnxTrackerState(last_output=prev, last_frame_embeds=last_frame_embeds,
                                     num_frames=n_frame + (0 if state is None else state.num_frames))
        return result, new_state, torch.from_numpy(np.stack(applied, 0)).to(self.device)


class OnnxOfflineDVIS(OnnxDVIS):
    """An offline export: :class:`OnnxDVIS` + the temporal refiner (:meth:`refine`, the runner's offline step)."""

    def refiner_inputs(self, windows: Sequence[Any]) -> Dict[str, Any]:
        """What the refiner graph receives, gathered over tracked windows (``WindowOutput`` s; as
        ``OfflineDVIS.refiner_inputs``, ``mask_features`` without the batch axis)."""
        instance = _cat([w.tracker["pred_embds"] for w in windows], 2)
        mask_features = _cat([w.segmenter["mask_features"] for w in windows], 0)
        embeds = _cat([w.segmenter["pred_embds_without_norm" if self.plus else "pred_embds"] for w in windows], 2)
        frame = embeds if self.plus else self._run("frame_forward", frame_embeds=embeds)["frame_embeds_out"]
        return {"instance_embeds": instance, "frame_embeds": frame, "mask_features": mask_features}

    def refine(self, windows: List[Any]) -> Dict[str, Tensor]:
        """The refiner over consecutive tracked windows of one video: ``pred_logits`` (1, T, Q, K+1),
        ``pred_masks`` (1, Q, T, h, w), ``pred_embds`` (1, C, T, Q)."""
        return {k: _as_tensor(v) for k, v in self._run("refiner", **self.refiner_inputs(windows)).items()}


class OnnxMinVIS(OnnxDVIS):
    """A segmenter-only export (``mode="segmenter"``, official MinVIS / CTMinVIS): the segmenter graph on ONNX
    Runtime, the frame-to-frame matching in Python (:func:`dvis_sdk.models.minvis.associate`, as the PyTorch model)."""

    def track(self, seg: Dict[str, Any], state: Optional[MatchState]  # type: ignore[override]
              ) -> Tuple[Dict[str, Tensor], MatchState, Tensor]:
        """Match every frame of one window to the previous one (``state=None``: a new video); returns
        (``pred_logits``, ``pred_masks``, ``pred_embds``) in track order, the new state and the (t, Q) permutations."""
        return associate({k: seg[k] if isinstance(seg[k], Tensor) else _as_tensor(_as_numpy(seg[k]))
                          for k in ("pred_logits", "pred_masks", "match_embeds")}, state)
