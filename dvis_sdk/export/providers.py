"""ONNX Runtime execution-provider options for an exported DVIS folder: which GPU, TensorRT's engine cache, fp16
and optimisation profiles covering the shapes the window runner feeds each graph.

Pure functions of the export's ``config.json`` and the run settings (no ONNX Runtime import), so what a worker
asks ONNX Runtime for can be checked without a GPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (CUDA, TENSORRT)
#: TensorRT engines go here (inside the export folder) unless ``trt_cache`` says otherwise: built once per
#: graph and profile, reused by every later process (the first run builds them, minutes for a large backbone).
TRT_CACHE_DIR = "trt_cache"

ProviderList = List[Union[str, Tuple[str, Dict[str, Any]]]]


def default_providers(device_type: str) -> List[str]:
    """CUDA then CPU for a CUDA device, else CPU."""
    return [CUDA, "CPUExecutionProvider"] if device_type == "cuda" else ["CPUExecutionProvider"]


def _padded(size: int, multiple: int) -> int:
    return -(-int(size) // multiple) * multiple


def frame_sizes(meta: Mapping[str, Any]) -> Dict[str, Tuple[int, int, int]]:
    """(min, opt, max) padded frame height / width the runner can feed: a frozen export's one size, else from one
    size-divisibility step up to the model's test sizes (shortest edge ``min_size_test``, longest ``max_size_test``)."""
    multiple = int(meta["input"]["size_divisibility"])
    fixed = meta["graphs"]["segmenter"].get("fixed_size")
    if fixed:
        return {"H": (fixed[0],) * 3, "W": (fixed[1],) * 3}
    inp = meta["model_config"]["input"]
    short, long = int(inp["min_size_test"]), int(inp["max_size_test"])
    # a 16:9 video at the test size is the common case (opt); either orientation up to max_size fits (max)
    opt_h, opt_w = _padded(short, multiple), _padded(min(long, round(short * 16 / 9)), multiple)
    top = _padded(long, multiple)
    return {"H": (multiple, opt_h, top), "W": (multiple, opt_w, top)}


def shape_profiles(meta: Mapping[str, Any], graph: str, window_size: int, chunk_size: int
                   ) -> Optional[Dict[str, str]]:
    """TensorRT ``trt_profile_{min,opt,max}_shapes`` for one graph: T from 1 to the window (segmenter, tracker
    heads) or the refiner chunk (refiner, frame_forward), frame sizes from :func:`frame_sizes` (mask sizes a quarter
    of them). None for graphs without a symbolic axis (the per-frame tracker graphs)."""
    sizes = frame_sizes(meta)
    t_max = max(int(chunk_size if graph in ("refiner", "frame_forward") else window_size), 1)
    dims: Dict[str, Tuple[int, int, int]] = {"T": (1, t_max, t_max), **sizes,
                                              "h": tuple(v // 4 for v in sizes["H"]),  # type: ignore[dict-item]
                                              "w": tuple(v // 4 for v in sizes["W"])}  # type: ignore[dict-item]
    inputs = meta["graphs"][graph]["inputs"]
    if not any(isinstance(d, str) for shape in inputs.values() for d in shape):
        return None
    out = {}
    for i, key in enumerate(("min", "opt", "max")):
        out[f"trt_profile_{key}_shapes"] = ",".join(
            f"{name}:" + "x".join(str(dims[d][i] if isinstance(d, str) else d) for d in shape)
            for name, shape in inputs.items())
    return out


def provider_options(providers: Sequence[str], meta: Mapping[str, Any], graph: str, device_id: int = 0,
                     fp16: bool = False, trt_cache: Optional[Union[str, Path]] = None,
                     window_size: Optional[int] = None, chunk_size: Optional[int] = None) -> ProviderList:
    """The ``providers`` argument of ``onnxruntime.InferenceSession`` for one graph: CUDA and TensorRT get
    ``device_id`` (the worker's GPU), TensorRT also its engine cache folder, fp16 and the shape profiles."""
    window = int(window_size or meta["model_config"]["test"].get("window_size") or 1)
    chunk = int(chunk_size or 300)
    out: ProviderList = []
    for name in providers:
        if name == CUDA:
            out.append((name, {"device_id": int(device_id)}))
        elif name == TENSORRT:
            opts: Dict[str, Any] = {"device_id": int(device_id), "trt_fp16_enable": bool(fp16),
                                    "trt_engine_cache_enable": True,
                                    "trt_engine_cache_path": str(trt_cache or TRT_CACHE_DIR)}
            opts.update(shape_profiles(meta, graph, window, chunk) or {})
            out.append((name, opts))
        else:
            out.append(name)
    return out
