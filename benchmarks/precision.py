#!/usr/bin/env python
"""Agreement of the fast paths and of half-precision autocast with the fp32 reference computation.

For every model it runs the video five ways: fp32 with every fast path off (the official computation, the
reference; true fp32: TF32 off for matmuls and cuDNN convolutions), fp32 with the default fast paths, ``--dtype``
autocast with the default fast paths (the backbone's first layer in fp32: ``stem_fp32``), the same with the first
layer under autocast too (``stem_fp32=False``, what the official code does), and the default with the opt-in
half-precision pixel decoder; and prints mean mask IoU / matched instances / same top-5 / largest score difference
of the last four against the first, and the time of each path: the least over ``--repeat`` (default 2) runs of
the whole video after ``--warmup`` untimed ones, with the device in use synchronised; process time on CPU (with
``--threads 1`` the compute cost), wall time on CUDA.

    python benchmarks/precision.py                                  # the test-fixture models, bf16
    python benchmarks/precision.py --config ovis/DVIS_Plus_Online_R50_16wIter.yaml --resolution 360p --frames 6
    python benchmarks/precision.py --config <official yaml> --checkpoint model_final.pth --video clip.mp4 \\
        --device cuda --dtype fp16                                  # the measure that matters: trained weights
    python benchmarks/precision.py --model <save_pretrained dir | manifest name> --video clip.mp4

Random-weight models are chaotic (no training made them robust to small perturbations), so their half-precision
figures are a pessimistic bound; measure a trained checkpoint on real video before choosing a dtype.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
if (_ROOT / "dvis_sdk").is_dir():
    sys.path.insert(0, str(_ROOT))
import dvis_sdk  # noqa: E402
from dvis_sdk.evaluation.agreement import compare_results  # noqa: E402
from dvis_sdk.inference.runner import video_inference  # noqa: E402
from dvis_sdk.layers.impl import REFERENCE_PATHS  # noqa: E402
from dvis_sdk.models.optimize import copy_model, optimize  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DTYPES, sync  # noqa: E402

FIXTURES = ("09_e2e_online_vit_adapter", "10_e2e_offline_vit_adapter", "11_e2e_online_r50",
            "12_e2e_online_dvis_swin", "13_e2e_offline_dvis_r50")


def _fixture_models() -> List[tuple]:
    from safetensors.torch import load_file

    from dvis_sdk.official import convert_official_state_dict, load_official_config

    root = _ROOT / "tests" / "fixtures"
    out = []
    for name in FIXTURES:
        d = root / name
        if not d.is_dir():
            continue
        cfg = load_official_config(json.loads((d / "config.json").read_text()))
        weights = load_file(str(d / "weights.safetensors"))
        if name == "10_e2e_offline_vit_adapter":  # stores only the refiner; the rest is fixture 09's
            weights = {**load_file(str(root / "09_e2e_online_vit_adapter" / "weights.safetensors")), **weights}
        model = dvis_sdk.build_model(cfg)
        model.load_state_dict(convert_official_state_dict(weights, cfg))
        video = load_file(str(d / "io.safetensors"))["in.video_uint8"].permute(0, 3, 1, 2).float()
        out.append((name, model, video))
    return out


def _config_model(args: argparse.Namespace) -> tuple:
    from common import load_config, parse_resolution, synthetic_frames

    if args.model:  # a save_pretrained folder / manifest name / Hub repo
        from dvis_sdk.weights import resolve_weights

        resolved = resolve_weights(args.model)
        cfg = resolved.config
        model = dvis_sdk.build_model(cfg)
        model.load_state_dict(resolved.state_dict)
        args.config = str(args.model).rstrip("/")
    else:
        cfg = load_config(args.config, args.mode)
        torch.manual_seed(args.seed)
        model = dvis_sdk.build_model(cfg)
    if args.checkpoint:
        from dvis_sdk.official import convert_official_state_dict, load_official_checkpoint

        model.load_state_dict(convert_official_state_dict(load_official_checkpoint(args.checkpoint), cfg))
    if args.video:
        from dvis_sdk.io import open_video
        from dvis_sdk.ops.preprocess import resize_frame, resized_shape

        src = open_video(args.video, max_frames=args.frames)
        size = resized_shape(src.height, src.width, cfg.input.min_size_test, cfg.input.max_size_test)
        frames = np.stack([resize_frame(f, size) for _, f in src])
    else:
        h, w = parse_resolution(args.resolution)
        frames = synthetic_frames(args.frames, h, w, args.seed)
    name = Path(args.config).name + (" (checkpoint)" if args.checkpoint or args.model else " (random weights)")
    return name, model, torch.from_numpy(frames).permute(0, 3, 1, 2).float()


@contextlib.contextmanager
def true_fp32() -> Iterator[None]:
    """IEEE fp32 for the reference: TF32 off for matmuls and for cuDNN convolutions (cuDNN's default is on), and
    the matmul precision "highest"; the process's settings are restored afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def _run(model: Any, video: torch.Tensor, device: torch.device, dtype: str, repeat: int = 2,
         warmup: int = 1) -> Tuple[Any, float]:
    """The video's result and the least time one run took over ``repeat`` runs, after ``warmup`` untimed runs
    (allocator, cuDNN algorithm choice, lazy initialisation): CPU (process) time on CPU (other processes sharing
    the machine only ever make a run slower), wall time on CUDA, with ``device`` (the one in use) synchronised."""
    ctx = (torch.autocast(device.type, enabled=False) if dtype == "fp32"
           else torch.autocast(device.type, dtype=DTYPES[dtype]))
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    video = video.to(device)
    for _ in range(max(warmup, 0)):
        with torch.no_grad(), ctx:
            video_inference(model, video)
    best = float("inf")
    for _ in range(max(repeat, 1)):
        sync(device)
        t0 = clock()
        with torch.no_grad(), ctx:
            out = video_inference(model, video)
        sync(device)
        best = min(best, clock() - t0)
    return out, best


def measure(name: str, model: Any, video: torch.Tensor, device: torch.device, dtype: str,
            repeat: int = 2, warmup: int = 1) -> Dict[str, Any]:
    """Agreement (and time) of each path against the fp32 official computation (true fp32: TF32 off); does not
    change ``model``."""
    model = copy_model(model).to(device).eval()
    with true_fp32():
        ref, ref_s = _run(optimize(model, **REFERENCE_PATHS), video, device, "fp32", repeat, warmup)
    rows: Dict[str, Any] = {"model": name, "frames": int(video.shape[0]), "size": list(video.shape[-2:]),
                            "reference": "every fast path off, fp32 with TF32 off",
                            "reference_seconds": round(ref_s, 3)}
    variants = (("fp32 fast paths", "fp32", {}),  # the process's default TF32 settings, as a user runs it
                (f"{dtype} fast paths", dtype, {}),  # the defaults a VideoSegmenter gets
                (f"{dtype} +half stem", dtype, {"stem_fp32": False}),
                (f"{dtype} +half pix.dec.", dtype, {"pixel_decoder_fp32": False}))
    for label, dt, choices in variants:
        out, seconds = _run(optimize(model, **choices), video, device, dt, repeat, warmup)
        rows[label] = {**compare_results(ref, out).__dict__, "seconds": round(seconds, 3)}
    return rows


def main(argv: Optional[List[str]] = None) -> List[Dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=None, help="official yaml (suffix) / config.json / tiny preset; "
                                                 "default: the test-fixture models")
    p.add_argument("--mode", choices=("online", "offline"), default=None)
    p.add_argument("--checkpoint", default=None, help="official checkpoint for --config (else random weights)")
    p.add_argument("--model", default=None, help="trained weights instead of --config: a save_pretrained folder, "
                                                "a manifest name or a Hub repo")
    p.add_argument("--video", default=None, help="video file / frame folder (else a synthetic clip)")
    p.add_argument("--resolution", default="360p")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=2, help="timed runs per path; the least time is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per path before timing")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.dtype == "fp16" and device.type == "cpu":
        raise SystemExit("--dtype fp16 needs CUDA (CPU autocast supports bf16)")
    models = [_config_model(args)] if (args.config or args.model) else _fixture_models()
    if not models:
        raise SystemExit("no models: give --config, or run from a checkout with tests/fixtures")
    results = []
    print(f"{'model':<40}{'path':<22}{'mean IoU':>9}{'min IoU':>9}{'matched':>9}{'top-5':>7}{'max dscore':>11}"
          f"{'time s':>8}")
    for name, model, video in models:
        r = measure(name, model, video, device, args.dtype, args.repeat, args.warmup)
        results.append(r)
        for label, a in r.items():
            if isinstance(a, dict):
                print(f"{name:<40}{label:<22}{a['mean_iou']:>9.4f}{a['min_iou']:>9.4f}"
                      f"{a['matched']:>5}/{a['total']:<3}{'same' if a['same_top'] else 'diff':>7}"
                      f"{a['max_score_diff']:>11.2e}{a['seconds']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
