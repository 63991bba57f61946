#!/usr/bin/env python
"""PyTorch vs ONNX Runtime frames/s of the same model (random weights) on the same synthetic video, side by side.

    python benchmarks/speed.py --backend onnxruntime --config tiny --frames 6
    python benchmarks/speed.py --backend onnxruntime --config ovis/DVIS_Plus_Online_R50_16wIter.yaml \\
        --resolution 360p --frames 6 --threads 2

(``speed.py --backend onnxruntime`` runs this script.) The model is exported once to ``--export-dir`` (a temporary
folder by default; an existing export there is reused). Both backends run the raw model loop (preprocess ->
segmenter -> tracker [-> refiner], ``dvis_sdk.inference.runner.forward_video``: the same window loop) over the
whole video, windows of ``--window`` frames, with the same number of CPU threads; the best of ``--repeat`` passes
is kept. Post-processing is the same Python code for both and is not timed. Also reports the largest difference
of the time-averaged class logits (``pred_cls``) and the export sizes.
Writes JSON to ``--json`` (default ``benchmarks/results/onnx_speed_<config>_<resolution>.json``).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
if (_HERE.parent / "dvis_sdk").is_dir():
    sys.path.insert(0, str(_HERE.parent))

import dvis_sdk  # noqa: E402
from common import load_config, parse_resolution  # noqa: E402
from dvis_sdk.export import OnnxDVIS, export_onnx  # noqa: E402
from dvis_sdk.inference.runner import forward_video  # noqa: E402
from dvis_sdk.models.optimize import optimize  # noqa: E402


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="onnxruntime", help=argparse.SUPPRESS)
    p.add_argument("--config", default="tiny",
                   help="tiny | tiny-dvis | a manifest model (its weights) | official yaml (suffix) | config.json")
    p.add_argument("--mode", choices=("online", "offline"), default=None)
    p.add_argument("--resolution", default=None, help="360p | 480p | HxW (default: 360p; 64x96 for tiny presets)")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the config's)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of both backends")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export-dir", default=None, help="where to export (reused when it already holds an export)")
    p.add_argument("--json", default=None, metavar="PATH")
    args, _ = p.parse_known_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    from dvis_sdk.weights.manifest import is_model_name

    if is_model_name(args.config):  # a manifest model: its trained weights
        model = dvis_sdk.VideoSegmenter.from_pretrained(args.config, mode=args.mode, optimize=False).model
        cfg = model.cfg
    else:
        cfg = load_config(args.config, args.mode)
        model = dvis_sdk.build_model(cfg)
    tiny = args.config.startswith(("tiny", "dvis-tiny"))
    h, w = parse_resolution(args.resolution) if args.resolution else ((64, 96) if tiny else (360, 640))
    window = args.window or cfg.test.window_size

    export_dir = Path(args.export_dir or tempfile.mkdtemp(prefix="dvis_onnx_"))
    t0 = time.perf_counter()
    if not (export_dir / "config.json").is_file():
        export_onnx(model, export_dir)
    export_s = time.perf_counter() - t0
    meta = json.loads((export_dir / "config.json").read_text())
    sizes = {name: g["bytes"] for name, g in meta["graphs"].items()}
    ort_model = OnnxDVIS(export_dir, threads=args.threads)

    frames = torch.from_numpy(np.random.default_rng(args.seed).integers(0, 256, (args.frames, 3, h, w), np.uint8))
    optimize(model)  # the PyTorch backend's defaults (VideoSegmenter(optimize=True))
    out: Dict[str, Any] = {}

    def run_torch() -> None:
        with torch.no_grad():
            out["torch"] = forward_video(model, model.preprocess(frames.float()), window)

    def run_ort() -> None:  # the same runner (window loop) drives the ONNX Runtime steps
        out["ort"] = forward_video(ort_model, ort_model.preprocess(frames), window)

    run_torch(), run_ort()  # warm-up (first-call allocations, ORT graph preparation)
    t_torch, t_ort = _best(run_torch, args.repeat), _best(run_ort, args.repeat)
    diff = float((out["ort"]["pred_cls"] - out["torch"]["pred_cls"]).abs().max())
    result = {
        "config": args.config, "mode": cfg.mode, "variant": cfg.variant, "resolution": [h, w], "frames": args.frames,
        "window": window, "threads": args.threads, "repeat": args.repeat,
        "fps": {"pytorch": args.frames / t_torch, "onnxruntime": args.frames / t_ort},
        "seconds": {"pytorch": t_torch, "onnxruntime": t_ort},
        "max_abs_diff_pred_cls": diff, "export_seconds": round(export_s, 1), "export_bytes": sizes,
        "export_mb_total": round(sum(sizes.values()) / 2 ** 20, 2),
        "weights_mb_fp32": round(sum(p.numel() for p in model.parameters()) * 4 / 2 ** 20, 2),
        "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__,
                     "python": platform.python_version()},
        "cpu": platform.processor() or platform.machine(),
    }
    print(f"{args.config} {cfg.mode} {h}x{w}, {args.frames} frames, window {window}, {args.threads} thread(s)")
    print(f"  {'backend':<12} {'frames/s':>9} {'s/video':>9}")
    for k in ("pytorch", "onnxruntime"):
        print(f"  {k:<12} {result['fps'][k]:9.2f} {result['seconds'][k]:9.2f}")
    print(f"  max |pred_cls diff| {diff:.2e}; export {result['export_mb_total']} MB "
          f"({', '.join(f'{k} {v / 2 ** 20:.1f}' for k, v in sizes.items())}); "
          f"fp32 weights {result['weights_mb_fp32']} MB")
    stem = Path(args.config).parent.name if Path(args.config).stem == "config" else Path(args.config).stem
    dest = Path(args.json) if args.json else (_HERE / "results" / (
        f"onnx_speed_{re.sub(r'[^A-Za-z0-9]+', '_', stem)}_{cfg.mode}_{h}x{w}.json"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2))
    print(f"  wrote {dest}")
    return result


if __name__ == "__main__":
    main()
