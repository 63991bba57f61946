"""``export_onnx``: a DVIS model -> a folder of ONNX graphs + ``config.json`` describing how to drive them."""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from ..config import DVISConfig, segmenter_only_config
from ..models.dvis import OnlineDVIS, build_model
from ..models.minvis import SEGMENTER_PREFIXES, MinVIS
from .graphs import example_inputs, graph_specs

FORMAT = "dvis-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 18
# What the exported graphs use (see docs/deployment.md): grid_sample deformable attention (a standard ONNX
# GridSample op that TensorRT also runs) and SDPA attention (exported as plain MatMul / Softmax).
EXPORT_PATHS = {"sdpa": True, "deform_attn": "reference"}


def is_onnx_export(path: Union[str, Path]) -> bool:
    """True when ``path`` is a folder written by :func:`export_onnx` (its ``config.json`` says ``"format":
    "dvis-onnx"``); needs no ONNX package (for ``VideoSegmenter.from_pretrained`` to pick the backend)."""
    meta = Path(path) / "config.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == FORMAT
    except (ValueError, AttributeError):
        return False


def require_onnx() -> None:
    """Raise a one-line ImportError when the optional ONNX dependencies are missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ImportError(f"ONNX export / runtime needs the optional dependencies ({e.name} is missing): "
                          "pip install 'dvis_sdk[onnx]'") from None


def _resolve_model(model: Any, config: Any = None, checkpoint: Any = None, mode: Optional[str] = None) -> OnlineDVIS:
    """A DVIS module from a VideoSegmenter, a module, a manifest name / saved folder, or official yaml + checkpoint.
    (Built here from the weight loaders, not through ``VideoSegmenter``: the predictor imports this package.)"""
    if isinstance(model, (OnlineDVIS, MinVIS)):
        return model
    if isinstance(getattr(model, "model", None), (OnlineDVIS, MinVIS)):  # a VideoSegmenter
        return model.model
    if getattr(model, "backend", "pytorch") != "pytorch":
        raise ValueError(f"this model already runs on {model.backend} (an export); export the PyTorch model")
    if config is not None or checkpoint is not None:
        if config is None or checkpoint is None:
            raise ValueError("config and checkpoint go together (official yaml + official checkpoint)")
        from ..official import convert_official_state_dict, load_official_checkpoint, load_official_config

        cfg = load_official_config(config, mode=mode)
        sd = convert_official_state_dict(load_official_checkpoint(checkpoint), cfg)
    else:
        from ..weights.manifest import default_model_name
        from ..weights.resolve import resolve_weights

        if is_onnx_export(str(model)):
            raise ValueError(f"{model} is already an ONNX export; export the PyTorch model it came from")
        resolved = resolve_weights(model or default_model_name())
        cfg, sd = resolved.config, resolved.state_dict
        if mode == "segmenter" and cfg.mode != "segmenter":
            cfg = segmenter_only_config(cfg)
            sd = {k: v for k, v in sd.items() if k.startswith(SEGMENTER_PREFIXES)}
        elif mode is not None and mode != cfg.mode:
            d = cfg.to_dict()
            d.update(mode=mode, **({"refiner": None} if mode == "online" else {}))
            cfg = DVISConfig.from_dict(d)
            if mode == "online":
                sd = {k: v for k, v in sd.items() if not k.startswith("refiner.")}
    built = build_model(cfg)
    built.load_state_dict(sd, strict=True)
    return built


def _export_model(model: OnlineDVIS) -> OnlineDVIS:
    """A CPU fp32 eval copy of ``model`` on the export-friendly implementations (the caller's model is untouched)."""
    from ..models.optimize import copy_model, optimize

    # optimize() sets the per-module choices in place: only ever on this private copy
    m = copy_model(model).float().cpu().eval()
    return optimize(m, channels_last=False, compile=False, **EXPORT_PATHS)


def _dynamic_shapes(spec: dict, multiple: int) -> Dict[str, Any]:
    """torch.export dims for the symbolic axes; the frame size is a multiple of the size divisibility."""
    Dim = torch.export.Dim
    dims: Dict[str, Any] = {}
    out = {}
    for name, shape in spec["inputs"].items():
        axes = {}
        for i, d in enumerate(shape):
            if not isinstance(d, str):
                continue
            if d not in dims:
                dims[d] = multiple * Dim(f"{d}_div{multiple}", min=1, max=1024) if d in ("H", "W") else \
                    Dim(d, min=1, max=100000)
            axes[i] = dims[d]
        out[name] = axes or None
    return out


def _sizes(size: Tuple[int, int], multiple: int) -> Dict[str, int]:
    h, w = (-(-int(v) // multiple) * multiple for v in size)
    return {"T": 2, "H": h, "W": w, "h": h // 4, "w": w // 4}


def _export_one(name: str, spec: dict, path: Path, opset: int, multiple: int, sizes: Dict[str, int]) -> None:
    args = tuple(example_inputs(spec, sizes))
    dynamic = _dynamic_shapes(spec, multiple)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            spec["module"], args, dynamo=True, opset_version=opset, input_names=list(spec["inputs"]),
            output_names=list(spec["outputs"]),
            dynamic_shapes=tuple(dynamic.values()) if any(dynamic.values()) else None,
            verbose=False)
    program.save(str(path))


def _dynamic_size_works(path: Path, module: torch.nn.Module, sizes: Dict[str, int], multiple: int) -> bool:
    """Run the exported segmenter at another T, H, W than it was traced at and compare with PyTorch. Some
    backbones (the DINOv2 ViT's position-embedding interpolation) get their frame size frozen by the exporter."""
    import numpy as np
    import onnxruntime as ort

    x = torch.randn(3, 3, sizes["H"] + multiple, sizes["W"] + 2 * multiple, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = module(x)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    except Exception:  # noqa: BLE001 - a frozen size shows up as a shape error inside ONNX Runtime
        return False
    return all(o.shape == tuple(r.shape) and np.abs(o - r.numpy()).max() <= 1e-3 * float(r.abs().max()) + 1e-3
               for o, r in zip(out, ref))


def _simplify(path: Path) -> bool:
    """Run onnxslim on ``path`` in place when it is installed; True if it ran."""
    try:
        import onnxslim
    except ImportError:
        return False
    import onnx

    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))
    return True


def export_onnx(model: Any, out_dir: Union[str, Path], *, config: Any = None, checkpoint: Any = None,
                mode: Optional[str] = None, opset: int = DEFAULT_OPSET, simplify: bool = True,
                check: bool = True, size: Optional[Tuple[int, int]] = None) -> Path:
    """Export ``model`` to ONNX graphs in ``out_dir`` (created) and write ``config.json``; returns ``out_dir``.

    Args:
        model: a ``VideoSegmenter``, an ``OnlineDVIS`` / ``OfflineDVIS`` / ``MinVIS``, a manifest name or a saved folder
            (as ``VideoSegmenter.from_pretrained``), or None with ``config`` + ``checkpoint`` (official yaml and
            checkpoint, as ``VideoSegmenter.from_official``).
        mode: "online" / "offline" / "segmenter" override when loading by name or from official files
            ("segmenter": only the segmenter graph; the frames are matched in Python, as MinVIS / CTMinVIS).
        opset: ONNX opset (>= 17).
        simplify: run ``onnxslim`` on every graph when it is installed.
        check: run ``onnx.checker`` on every graph (full check, with shape inference).
        size: (H, W) frame size the graphs are traced at (rounded up to the size divisibility; default 128 x 160).
            T, H and W stay dynamic; where the exporter freezes the frame size (ViT-Adapter backbones), the
            segmenter only accepts this size (``config.json``: ``graphs.segmenter.fixed_size``): export at the
            size you will run.

    The folder needs no PyTorch: see ``docs/deployment.md`` for the graphs and the loop that drives them.
    """
    require_onnx()
    import onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17 (LayerNormalization), got {opset}")
    src = _resolve_model(model, config, checkpoint, mode)
    m = _export_model(src)
    cfg = m.cfg
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    multiple = max(int(cfg.input.size_divisibility or 0), 32)
    sizes = _sizes(size or (4 * multiple, 5 * multiple), multiple)
    graphs: Dict[str, dict] = {}
    fixed = None
    for name, spec in graph_specs(m).items():
        path = out / f"{name}.onnx"
        t0 = time.perf_counter()
        _export_one(name, spec, path, opset, multiple, sizes)
        if name == "segmenter" and not _dynamic_size_works(path, spec["module"], sizes, multiple):
            fixed = [sizes["H"], sizes["W"]]
            warnings.warn(f"the exporter froze the segmenter's frame size: it only runs at {fixed[0]}x{fixed[1]} "
                          "(export with size=(H, W) / --size HxW at the size you will run)", RuntimeWarning,
                          stacklevel=2)
        t1 = time.perf_counter()
        slim = simplify and _simplify(path)
        t2 = time.perf_counter()
        if check:
            onnx.checker.check_model(str(path), full_check=True)
        graphs[name] = {"file": path.name, "inputs": spec["inputs"], "outputs": spec["outputs"],
                        "simplified": bool(slim), "bytes": path.stat().st_size,
                        "seconds": {"export": round(t1 - t0, 1), "simplify": round(t2 - t1, 1),
                                    "check": round(time.perf_counter() - t2, 1)}}
        if name == "segmenter" and fixed:
            graphs[name]["fixed_size"] = fixed
    if isinstance(m, MinVIS):
        tracker_meta = {"matching": "minvis: hungarian over 1 - cosine(previous frame's matched match_embeds, "
                                    "current match_embeds), norms without epsilon, in Python "
                                    "(dvis_sdk.models.minvis.associate)",
                        "match_embedding": cfg.match_embedding}
    else:
        tracker_meta = {"matching": "hungarian over 1 - cosine(previous reference, current pred_embds)",
                        "inverse_matching": bool(m.tracker._inverse_matching),
                        "permute_first_reference": bool(m.tracker._permute_first_reference)}
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "opset": opset,
        "variant": cfg.variant, "mode": cfg.mode, "backend": "onnxruntime",
        "graphs": graphs,
        "tracker": tracker_meta,
        "input": {"pixel_mean": list(cfg.input.pixel_mean), "pixel_std": list(cfg.input.pixel_std),
                  "size_divisibility": multiple, "format": "RGB, float32 (x - mean) / std, zero-padded to a "
                  "multiple of size_divisibility, (T, 3, H, W)"},
        "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__, **EXPORT_PATHS},
        "model_config": cfg.to_dict(),
        "drive": "see docs/deployment.md (dvis_sdk.export.OnnxDVIS implements the steps, VideoSegmenter runs them)",
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    return out
