#!/usr/bin/env python
"""Throughput benchmark of a DVIS / DVIS++ model (random weights): per-stage and end-to-end frames/s, peak
memory and achieved TFLOP/s against the device peak.

    python benchmarks/speed.py --config tiny --frames 4                       # CI-sized smoke run
    python benchmarks/speed.py --config ovis/DVIS_Plus_Online_R50_16wIter.yaml --resolution 360p --frames 12
    python benchmarks/speed.py --config ytvis19/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml \\
        --resolution 480p --frames 48 --device cuda --dtype bf16 --json out.json

``--config``: ``tiny`` / ``tiny-vit`` (small presets for CI), an official yaml (a path, or a suffix of one
of the shipped official configs, as ``dvis_sdk.official.load_official_config`` accepts), or a ``config.json``
written by ``save_pretrained``. Weights are random: speed does not depend on them.

Passes over one synthetic video (encoded to a temporary file first, so decoding is measured):

1. stage pass: every stage timed on its own (``decode``, ``preprocess``, ``backbone``, ``adapter`` (ViT-Adapter
   only: everything in the backbone but the ViT blocks), ``pixel_decoder``, ``decoder``, ``tracker``,
   ``refiner`` (offline), ``postprocess``), with a device synchronisation around each;
2. model-loop pass: decode (prefetched in a background thread) -> model -> dense post-processing, no
   per-stage synchronisation (no window runner, no RLE);
3. end-to-end pass: ``VideoSegmenter.predict`` around the same model, as a user runs it (decode, resize, the
   window runner, mask up-sampling and RLE encoding; ``--mask-buffer-mb 0`` encodes every window as it comes,
   what a long video does);
4. FLOP pass: ``torch.utils.flop_counter.FlopCounterMode`` over the first window (and the refiner).

The timed passes run ``--repeat`` times after ``--warmup`` windows; the best time of each stage / pass is kept
(other processes sharing the machine only ever make a run slower).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
if (_ROOT / "dvis_sdk").is_dir():  # benchmark the checkout this script belongs to, installed or not
    sys.path.insert(0, str(_ROOT))
import dvis_sdk  # noqa: E402
from dvis_sdk.config import DVISConfig  # noqa: E402
from dvis_sdk.layers.impl import DEFORM_ATTN_IMPLS, FAST_PATHS  # noqa: E402
from dvis_sdk.models.optimize import optimize  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402,F401
    DTYPES,
    PRESETS,
    RESOLUTIONS,
    Timer,
    best_of,
    load_config,
    parse_resolution,
    peak_rss_mb,
    rss_mb,
    sync,
    synthetic_frames,
    write_test_video,
)
from stages import STAGES, _ViTHooks, run_pipeline  # noqa: E402

# Dense (no sparsity) peak TFLOP/s per GPU: (fp32 CUDA cores, tf32 tensor cores, bf16/fp16 tensor cores).
GPU_PEAKS = (
    ("H100 PCIe", (51.2, 378.0, 756.0)),
    ("H100 NVL", (60.0, 417.5, 835.0)),
    ("H100", (66.9, 494.7, 989.4)),      # SXM
    ("H200", (66.9, 494.7, 989.4)),
    ("GH200", (66.9, 494.7, 989.4)),
    ("A100", (19.5, 156.0, 312.0)),
    ("L40S", (91.6, 183.0, 362.0)),
    ("L4", (30.3, 60.0, 121.0)),
    ("A10", (31.2, 62.5, 125.0)),
    ("RTX 4090", (82.6, 82.6, 165.2)),
)


# --------------------------------------------------------------------------------------------------------------
# measurement helpers
# --------------------------------------------------------------------------------------------------------------
def device_peak_tflops(device: torch.device, dtype: str, override: Optional[float]) -> Tuple[float, str]:
    """(peak TFLOP/s, where the number comes from)."""
    if override:
        return override, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, (fp32, tf32, half) in GPU_PEAKS:
            if key in name:
                if dtype != "fp32":
                    return half, f"{key} dense {dtype} tensor-core peak"
                if torch.backends.cuda.matmul.allow_tf32:
                    return tf32, f"{key} dense tf32 peak"
                return fp32, f"{key} fp32 (non-tensor-core) peak"
        return float("nan"), f"unknown GPU {name!r}: pass --peak-tflops"
    return measured_gemm_tflops(device, DTYPES[dtype]), f"measured {dtype} GEMM (2048^3) on this CPU"


def measured_gemm_tflops(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12





# --------------------------------------------------------------------------------------------------------------
# --compare: fast-path presets applied to ONE model, alternated pass after pass.
# "pytorch-reference" is THIS package's reference computation (grid_sample deformable attention as the official
# PyTorch fallback, unfused attention), not the official CUDA kernel: a speed-up over it is not a speed-up over
# the official code on a GPU (which runs the CUDA kernel).
REFERENCE_NOTE = ("pytorch-reference = this package's reference paths (grid_sample deformable attention, as the "
                  "official PyTorch fallback; unfused attention), not the official CUDA kernel")
VARIANTS: Dict[str, Dict[str, Any]] = {
    "pytorch-reference": dict(sdpa=False, deform_attn="reference", fp32_sampling=False, pixel_decoder_fp32=True,
                      stem_fp32=False, channels_last=False),
    "fast": dict(sdpa=True, deform_attn="fast", fp32_sampling=True, pixel_decoder_fp32=True, stem_fp32=True,
                 channels_last=None),
}
VARIANTS.update({
    "no-sdpa": dict(VARIANTS["fast"], sdpa=False),
    "no-deform": dict(VARIANTS["fast"], deform_attn="reference"),
    "no-channels-last": dict(VARIANTS["fast"], channels_last=False),
    # opt-in: the pixel decoder under autocast too (only differs from "fast" with a half dtype)
    "half-pixel-decoder": dict(VARIANTS["fast"], pixel_decoder_fp32=False),
    # the backbone's first layer under autocast too (what the official code does; loses mask accuracy in bf16)
    "half-stem": dict(VARIANTS["fast"], stem_fp32=False),
})


ALIASES = {"reference": "pytorch-reference"}


def parse_variants(text: str, default_dtype: str) -> List[Tuple[str, str, Dict[str, Any]]]:
    """``"pytorch-reference,fast,fast:bf16"`` -> [(label, dtype, optimize_model kwargs)] ("reference" is an alias)."""
    out = []
    for item in text.split(","):
        name, _, dtype = item.strip().partition(":")
        name = ALIASES.get(name, name)
        if name not in VARIANTS:
            raise SystemExit(f"--compare: unknown variant {name!r}; expected {sorted(VARIANTS)} "
                             "(optionally :bf16 / :fp16)")
        dtype = dtype or default_dtype
        if dtype not in DTYPES:
            raise SystemExit(f"--compare: unknown dtype {dtype!r} in {item!r}; expected {sorted(DTYPES)}")
        out.append((f"{name}:{dtype}", dtype, VARIANTS[name]))
    return out


def compare_variants(model: Any, variants: List[Tuple[str, str, Dict[str, Any]]], source: Any, frames: np.ndarray,
                     window: int, device: torch.device, warmup: int, repeat: int) -> Dict[str, Any]:
    """Per-stage best times of every variant, the variants alternating pass after pass so that a load change on a
    shared machine hits all of them alike."""
    n_frames = len(frames)
    best: Dict[str, Dict[str, float]] = {label: {} for label, _, _ in variants}
    best_cpu: Dict[str, Dict[str, float]] = {label: {} for label, _, _ in variants}
    for _label, dtype, kw in variants:
        if dtype == "fp16" and device.type == "cpu":
            raise SystemExit("--compare: fp16 needs CUDA (CPU autocast supports bf16)")
        optimize(model, **kw)
        if warmup > 0:
            run_pipeline(model, source, frames, window, device, dtype, max_windows=warmup)
    for _ in range(max(1, repeat)):
        for label, dtype, kw in variants:
            optimize(model, **kw)
            timer = Timer(device)
            vit = _ViTHooks(model.backbone, timer)
            has_vit = vit.active
            try:
                run_pipeline(model, source, frames, window, device, dtype, timer=timer)
            finally:
                vit.remove()
            if has_vit:
                timer.seconds["adapter"] = timer.seconds["backbone"] - vit.seconds
                timer.seconds["backbone"] = vit.seconds
                timer.cpu_seconds["adapter"] = timer.cpu_seconds["backbone"] - vit.cpu_seconds
                timer.cpu_seconds["backbone"] = vit.cpu_seconds
            model_s = sum(v for k, v in timer.seconds.items() if k not in ("decode", "preprocess", "postprocess"))
            timer.seconds["model"] = model_s
            timer.cpu_seconds["model"] = sum(v for k, v in timer.cpu_seconds.items()
                                             if k not in ("decode", "preprocess", "postprocess"))
            for k, v in timer.seconds.items():
                best[label][k] = min(best[label].get(k, float("inf")), v)
            for k, v in timer.cpu_seconds.items():
                best_cpu[label][k] = min(best_cpu[label].get(k, float("inf")), v)
    base = variants[0][0]
    return {label: {"ms_per_frame": {k: 1e3 * v / n_frames for k, v in best[label].items()},
                    "cpu_ms_per_frame": {k: 1e3 * v / n_frames for k, v in best_cpu[label].items()},
                    "model_fps": n_frames / best[label]["model"],
                    "speedup_vs_first": best[base]["model"] / best[label]["model"]}
            for label, _, _ in variants}


def print_compare(r: Dict[str, Any]) -> None:
    h, w = r["resolution"]
    print(f"{r['config']} ({r['variant']} {r['mode']}, {r['backbone']}) {h}x{w}, {r['frames']} frames, "
          f"window {r['window']} on {r['device']} ({r['threads']} threads); best of {r['repeat']} alternating passes")
    if any(label.startswith("pytorch-reference") for label in r["compare"]):
        print(f"({r['reference_note']})")
    stages = [s for s in STAGES[2:-1] if any(s in v["ms_per_frame"] for v in r["compare"].values())] + ["model"]
    print(f"{'wall ms/frame':<24}" + "".join(f"{s:>14}" for s in stages) + f"{'frames/s':>10}{'speedup':>9}")
    for label, v in r["compare"].items():
        print(f"{label:<24}" + "".join(f"{v['ms_per_frame'].get(s, float('nan')):>14.1f}" for s in stages)
              + f"{v['model_fps']:>10.3g}{v['speedup_vs_first']:>9.2f}")
    # process CPU time: what a busy shared machine disturbs least
    first = next(iter(r["compare"].values()))["cpu_ms_per_frame"]["model"]
    print(f"{'CPU ms/frame':<24}" + "".join(f"{s:>14}" for s in stages) + f"{'':>10}{'speedup':>9}")
    for label, v in r["compare"].items():
        print(f"{label:<24}" + "".join(f"{v['cpu_ms_per_frame'].get(s, float('nan')):>14.1f}" for s in stages)
              + f"{'':>10}{first / v['cpu_ms_per_frame']['model']:>9.2f}")


def build_model(args: argparse.Namespace, device: torch.device) -> Tuple[Any, DVISConfig]:
    cfg = load_config(args.config, args.mode)
    torch.manual_seed(args.seed)
    model = dvis_sdk.build_model(cfg).to(device).eval()
    if args.reference:  # per-model choices: nothing else in the process changes
        optimize(model, **VARIANTS["pytorch-reference"])
    else:
        optimize(model, sdpa=None if args.sdpa == "auto" else args.sdpa == "on",
                 deform_attn=None if args.deform_attn == "auto" else args.deform_attn,
                 channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
                 pixel_decoder_fp32=False if args.half_pixel_decoder else None, compile=args.compile)
    return model, cfg


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default="tiny",
                   help="tiny | tiny-vit | tiny-dvis | official yaml (suffix) | config.json")
    p.add_argument("--mode", choices=("online", "offline"), default=None, help="override the config's mode")
    p.add_argument("--resolution", default=None, help="360p | 480p | 720p | HxW (default: 360p; 64x96 for tiny)")
    p.add_argument("--frames", type=int, default=None, help="video length (default: 12; 6 for tiny)")
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the config's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="autocast dtype (fp32 = no autocast)")
    p.add_argument("--sdpa", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--deform-attn", choices=("auto",) + DEFORM_ATTN_IMPLS, default="auto")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile backbone / pixel decoder / decoder")
    p.add_argument("--half-pixel-decoder", action="store_true",
                   help="run the pixel decoder under autocast too (opt-in; the official keeps it fp32)")
    p.add_argument("--reference", action="store_true",
                   help="every fast path off: this package's PyTorch reference computation (grid_sample\n"
                        "deformable attention as the official PyTorch fallback), NOT the official CUDA kernel")
    p.add_argument("--compare", default=None, metavar="V1,V2,...",
                   help="time fast-path variants on one model, alternating: pytorch-reference (alias reference;\n"
                        "this package's grid_sample path, not the official CUDA kernel), fast, no-sdpa, no-deform,\n"
                        "no-channels-last, half-pixel-decoder, each optionally :bf16 / :fp16\n"
                        "(e.g. pytorch-reference,fast,fast:bf16)")
    p.add_argument("--warmup", type=int, default=1, help="windows run before timing (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="timed passes; the best of them is reported")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-e2e", action="store_true", help="skip the model-loop and end-to-end (predict) passes")
    p.add_argument("--mask-buffer-mb", type=float, default=1024,
                   help="predict's mask buffer (0: every window's masks encoded as it comes, as on a long video)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP-counting pass")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak to compare with")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON ('-' = stdout only)")
    p.add_argument("--backend", choices=("pytorch", "onnxruntime"), default="pytorch",
                   help="onnxruntime: PyTorch vs ONNX Runtime frames/s side by side (benchmarks/onnx_speed.py)")
    args, extra = p.parse_known_args(argv)
    if args.backend == "onnxruntime":  # its own options (--export-dir) are parsed there
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from onnx_speed import main as onnx_main

        return onnx_main(argv)
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available on this machine")
    if args.dtype == "fp16" and device.type == "cpu":
        raise SystemExit("--dtype fp16 needs CUDA (CPU autocast supports bf16)")
    tiny = args.config in PRESETS
    h, w = parse_resolution(args.resolution or ("64x96" if tiny else "360p"))
    n_frames = args.frames or (6 if tiny else 12)
    if n_frames < 1:
        raise SystemExit("--frames must be >= 1")

    rss0 = rss_mb()
    model, cfg = build_model(args, device)
    window = args.window or cfg.test.window_size
    if window < 1:
        raise SystemExit("--window must be >= 1")
    rss_model = rss_mb()

    frames = synthetic_frames(n_frames, h, w, args.seed)
    from dvis_sdk.io import open_video

    with tempfile.TemporaryDirectory() as tmp:
        path = write_test_video(Path(tmp) / "bench.mp4", frames)
        source = open_video(path) if path is not None else None
        # decoding ignores `frames` when a file exists: keep them only as the no-codec fallback
        if args.compare:
            variants = parse_variants(args.compare, args.dtype)
            result = {"config": args.config, "variant": cfg.variant, "mode": cfg.mode, "backbone": cfg.backbone.type,
                      "resolution": [h, w], "frames": n_frames, "window": window, "device": str(device),
                      "threads": torch.get_num_threads(), "repeat": max(1, args.repeat), "torch": torch.__version__,
                      "reference_note": REFERENCE_NOTE,
                      "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                      "compare": compare_variants(model, variants, source, frames, window, device, args.warmup,
                                                  args.repeat)}
            print_compare(result)
            if args.json:
                text = json.dumps(result, indent=2)
                print(text) if args.json == "-" else Path(args.json).write_text(text)
            return result
        if args.warmup > 0:
            run_pipeline(model, source, frames, window, device, args.dtype, max_windows=args.warmup)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        best: Dict[str, float] = {}
        best_cpu: Dict[str, float] = {}
        timer = None
        for _ in range(max(1, args.repeat)):
            timer = Timer(device)
            vit = _ViTHooks(model.backbone, timer)
            has_vit = vit.active
            try:
                run_pipeline(model, source, frames, window, device, args.dtype, timer=timer)
            finally:
                vit.remove()
            if has_vit:
                # ViT-Adapter: the ViT blocks stay "backbone", the rest of the backbone is the adapter
                timer.seconds["adapter"] = timer.seconds["backbone"] - vit.seconds
                timer.seconds["backbone"] = vit.seconds
                timer.cpu_seconds["adapter"] = timer.cpu_seconds["backbone"] - vit.cpu_seconds
                timer.cpu_seconds["backbone"] = vit.cpu_seconds
            for k, v in timer.seconds.items():
                best[k] = min(best.get(k, float("inf")), v)
            for k, v in timer.cpu_seconds.items():
                best_cpu[k] = min(best_cpu.get(k, float("inf")), v)
        if source is None:
            best.pop("decode", None)

        loop_s = e2e_s = e2e_cpu = None
        predict_meta: Dict[str, Any] = {}
        if not args.no_e2e:
            # the model loop alone (decode prefetched -> model -> dense post-processing), no runner, no RLE
            loop_s = best_of(lambda: run_pipeline(model, source, frames, window, device, args.dtype, prefetch=True),
                             args.repeat, device)
            # end to end as a user runs it: VideoSegmenter.predict (decode, resize, window runner, mask
            # up-sampling and RLE encoding), around this same model (not copied, fast paths as chosen)
            seg = dvis_sdk.VideoSegmenter._owning(model, device=device, dtype=args.dtype, optimize=False,
                                                  window_size=window, mask_buffer_mb=args.mask_buffer_mb)
            video = str(path) if path is not None else torch.from_numpy(frames).permute(0, 3, 1, 2)
            seg.predict(video, max_frames=window)  # warm-up
            e2e_s = e2e_cpu = float("inf")
            for _ in range(max(1, args.repeat)):
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                res = seg.predict(video)
                sync(device)
                e2e_s = min(e2e_s, time.perf_counter() - t0)
                e2e_cpu = min(e2e_cpu, time.process_time() - c0)
            predict_meta = {"model_size": res.meta["model_size"], "instances": len(res.instances),
                            "masks_encoded_per_window": res.meta["masks_encoded_per_window"],
                            "mask_buffer_mb": args.mask_buffer_mb}

        flops: Dict[str, int] = {}
        counted_frames = 0
        if not args.no_flops:
            counted_frames, _ = run_pipeline(model, source, frames, window, device, args.dtype, flops=flops,
                                             max_windows=None if getattr(model, "refiner", None) is not None else 1)

    stage_s = {k: best[k] for k in STAGES if k in best}
    flops_per_frame = {k: v / counted_frames for k, v in flops.items()} if counted_frames else {}
    total_flops_frame = sum(flops_per_frame.values())
    model_s = sum(v for k, v in stage_s.items() if k not in ("decode", "preprocess", "postprocess"))
    peak, peak_src = device_peak_tflops(device, args.dtype, args.peak_tflops)
    e2e_fps = n_frames / e2e_s if e2e_s else None
    result: Dict[str, Any] = {
        "config": args.config, "variant": cfg.variant, "mode": cfg.mode, "backbone": cfg.backbone.type,
        "resolution": [h, w], "frames": n_frames, "window": window, "dtype": args.dtype,
        "device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                               else platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "fast_paths": {"sdpa": args.sdpa if not args.reference else "off",
                       "deform_attn": args.deform_attn if not args.reference else "reference",
                       "channels_last": args.channels_last if not args.reference else "off",
                       "compile": args.compile, "half_pixel_decoder": args.half_pixel_decoder,
                       "defaults": dict(FAST_PATHS)},
        "stages": {k: {"seconds": s, "fps": n_frames / s if s > 0 else None,
                       "cpu_seconds": best_cpu.get(k),
                       "gflop_per_frame": flops_per_frame.get(k, 0) / 1e9 or None,
                       "tflops": (flops_per_frame.get(k, 0) * n_frames / s / 1e12) if s > 0 and k in flops_per_frame
                       else None}
                   for k, s in stage_s.items()},
        "model_fps": n_frames / model_s if model_s > 0 else None,
        "end_to_end_fps": e2e_fps,
        "end_to_end": "VideoSegmenter.predict: decode, resize, window runner, mask up-sampling + RLE",
        "predict": predict_meta or None,
        "model_loop_fps": n_frames / loop_s if loop_s else None,
        "end_to_end_cpu_seconds_per_frame": e2e_cpu / n_frames if e2e_cpu else None,
        "model_cpu_seconds_per_frame": sum(v for k, v in best_cpu.items() if k in stage_s and k not in
                                           ("decode", "preprocess", "postprocess")) / n_frames,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "gflop_per_frame": total_flops_frame / 1e9 if flops_per_frame else None,
        "achieved_tflops": (total_flops_frame * n_frames / model_s / 1e12) if (flops_per_frame and model_s > 0)
        else None,
        "end_to_end_tflops": (total_flops_frame * e2e_fps / 1e12) if (flops_per_frame and e2e_fps) else None,
        "peak_tflops": peak, "peak_source": peak_src,
        "memory": {"rss_before_model_mb": rss0, "rss_model_mb": rss_model, "peak_rss_mb": peak_rss_mb()},
    }
    if result["achieved_tflops"] is not None and peak == peak:
        result["utilization"] = result["achieved_tflops"] / peak
    if device.type == "cuda":
        result["memory"]["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
        result["memory"]["cuda_peak_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2 ** 20
    print_report(result)
    if args.json:
        text = json.dumps(result, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    return result


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_report(r: Dict[str, Any]) -> None:
    h, w = r["resolution"]
    print(f"{r['config']} ({r['variant']} {r['mode']}, {r['backbone']}) {h}x{w}, {r['frames']} frames, "
          f"window {r['window']}, {r['dtype']} on {r['device']} ({r['device_name']}, {r['threads']} threads)")
    print(f"{'stage':<14}{'frames/s':>10}{'ms/frame':>10}{'CPU ms/frame':>14}{'GFLOP/frame':>13}{'TFLOP/s':>9}")
    for k, s in r["stages"].items():
        ms = 1e3 * s["seconds"] / r["frames"]
        cpu = 1e3 * s["cpu_seconds"] / r["frames"] if s.get("cpu_seconds") is not None else None
        print(f"{k:<14}{_fmt(s['fps'], '.4g'):>10}{ms:>10.1f}{_fmt(cpu, '.1f'):>14}"
              f"{_fmt(s['gflop_per_frame'], '.4g'):>13}{_fmt(s['tflops'], '.3g'):>9}")
    print(f"model (backbone..refiner): {_fmt(r['model_fps'], '.4g')} frames/s;  model loop (decode -> dense "
          f"results): {_fmt(r['model_loop_fps'], '.4g')} frames/s;  end to end (VideoSegmenter.predict: decode, "
          f"resize, runner, RLE): {_fmt(r['end_to_end_fps'], '.4g')} frames/s")
    if r["gflop_per_frame"] is not None:
        util = r.get("utilization")
        print(f"{r['gflop_per_frame']:.4g} GFLOP/frame; achieved {_fmt(r['achieved_tflops'], '.3g')} TFLOP/s"
              " in the model"
              f" ({_fmt(r['end_to_end_tflops'], '.3g')} end to end) vs peak {r['peak_tflops']:.3g} ({r['peak_source']})"
              + (f" = {100 * util:.1f}%" if util else ""))
    m = r["memory"]
    line = f"memory: RSS {m['rss_model_mb']:.0f} MB after model build, peak RSS {m['peak_rss_mb']:.0f} MB"
    if "cuda_peak_allocated_mb" in m:
        line += (f"; CUDA peak allocated {m['cuda_peak_allocated_mb']:.0f} MB "
                 f"(reserved {m['cuda_peak_reserved_mb']:.0f} MB)")
    print(line)


if __name__ == "__main__":
    main()
