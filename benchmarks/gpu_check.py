#!/usr/bin/env python
"""The GPU check, in one call: what a first GPU run must show, written to ``benchmarks/results/gpu_check.json``.

    python benchmarks/gpu_check.py --dry-run          # list what it would run here (nothing is run)
    python benchmarks/gpu_check.py                    # on a GPU: everything below, under 8 minutes on one GPU
    python benchmarks/gpu_check.py --smoke --device cpu --out /tmp/gpu_check.json   # the machinery on CPU, tiny

Checks (each one's status, figures and settings go into the JSON; one failing does not stop the others):

* ``pytest_gpu``: the tests marked ``gpu`` (``pytest -m gpu``; they skip without CUDA);
* ``vitl_online_bf16``: DVIS++ ViT-L online, bf16 vs fp32, end to end through ``VideoSegmenter.predict`` at 480p:
  frames/s, peak memory, mean mask IoU vs fp32, same top-5 instances;
* ``r50_precisions``: DVIS++ R50 online and offline in fp16 / bf16 / fp32 (and "auto": what it picks here);
* ``daq_memory``: DVIS-DAQ R50 online over 500 frames: allocated memory every 100 frames and the peak;
* ``ort_cuda_parity``: an ONNX export of the embedded tiny model on ONNX Runtime's CUDA provider (I/O binding)
  against PyTorch fp32 on the same GPU (needs ``onnxruntime-gpu``);
* ``batch_two_gpus``: ``predict_folder`` with ``devices="cuda:0,cuda:1"`` and ``dtype="fp16"`` (needs 2 GPUs): every
  worker must report fp16.

Models without ``--checkpoint KEY=PATH`` (keys vitl, r50_online, r50_offline, daq; official ``.pth``) have random
weights, and the JSON says so: their half-precision agreement is a pessimistic bound (random weights are chaotic),
their speed and memory are those of the real model. ``--smoke`` stands a narrow R50 in for every model at a tiny size,
so the whole script runs on a CPU in seconds (the test suite runs it that way).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
if (_ROOT / "dvis_sdk").is_dir():
    sys.path.insert(0, str(_ROOT))
import dvis_sdk  # noqa: E402
from dvis_sdk.official import load_official_config, official_cfg_tree  # noqa: E402
from dvis_sdk.official.merge import deep_merge  # noqa: E402
from dvis_sdk.runtime import jsonable, resolve_dtype  # noqa: E402
from dvis_sdk.training.synthetic import SyntheticConfig, render_video  # noqa: E402

DEFAULT_OUT = _ROOT / "benchmarks" / "results" / "gpu_check.json"
MODELS = {"vitl": ("ovis/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml", "online"),
          "r50_online": ("ovis/DVIS_Plus_Online_R50_16wIter.yaml", "online"),
          "r50_offline": ("ovis/DVIS_Plus_Offline_R50.yaml", "offline"),
          "daq": ("ovis/DAQ_Online_R50.yaml", "online")}
# --smoke: every model narrowed to a few channels (the official yaml's structure, tiny widths)
NARROW = {"MODEL": {"BACKBONE": {"NAME": "build_resnet_backbone"},
                    "RESNETS": {"DEPTH": 50, "WIDTH_PER_GROUP": 8, "RES2_OUT_CHANNELS": 32, "STEM_OUT_CHANNELS": 16},
                    "SEM_SEG_HEAD": {"CONVS_DIM": 32, "MASK_DIM": 32, "TRANSFORMER_ENC_LAYERS": 1},
                    "MASK_FORMER": {"NHEADS": 4, "DIM_FEEDFORWARD": 64, "DEC_LAYERS": 3, "HIDDEN_DIM": 32,
                                    "NUM_OBJECT_QUERIES": 20, "REID_HIDDEN_DIM": 32},
                    "TRACKER": {"DECODER_LAYERS": 1}, "REFINER": {"DECODER_LAYERS": 1},
                    "VIDEO_HEAD": {"HIDDEN_DIM": 32, "NUM_NEW_INS": 20}}}
CHECKS = ("pytest_gpu", "vitl_online_bf16", "r50_precisions", "daq_memory", "ort_cuda_parity", "batch_two_gpus")


# ---- settings -----------------------------------------------------------------------------------------------------
class Ctx:
    """The run's settings: full (a GPU, 480p) or ``smoke`` (tiny, any device)."""

    def __init__(self, args: argparse.Namespace):
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.smoke = bool(args.smoke)
        self.size: Tuple[int, int] = (64, 96) if self.smoke else (480, 854)
        self.frames = 4 if self.smoke else int(args.frames)
        self.daq_frames = 12 if self.smoke else 500
        self.checkpoints = dict(c.split("=", 1) for c in args.checkpoint)
        self.weights: Dict[str, str] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="dvis-gpu-check-"))

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> Optional[float]:
        return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1) if self.cuda else None

    def allocated_mb(self) -> Optional[float]:
        return round(torch.cuda.memory_allocated(self.device) / 2**20, 1) if self.cuda else None


def build_model(ctx: Ctx, key: str) -> torch.nn.Module:
    """The model of ``MODELS[key]`` on the CPU in fp32 (random weights unless a checkpoint was given)."""
    from dvis_sdk.models.dvis import build_model as build

    yaml, mode = MODELS[key]
    tree = official_cfg_tree(yaml)
    if ctx.smoke:
        tree = deep_merge(tree, NARROW)
    h, w = ctx.size
    tree = deep_merge(tree, {"INPUT": {"MIN_SIZE_TEST": h, "MAX_SIZE_TEST": max(w, h)}})
    cfg = load_official_config(tree, mode=mode)
    path = ctx.checkpoints.get(key)
    if path and not ctx.smoke:
        ctx.weights[key] = f"checkpoint {path}"
        return dvis_sdk.VideoSegmenter.from_official(cfg, path, device="cpu").model
    ctx.weights[key] = "random (no checkpoint given)" + (" narrow smoke model" if ctx.smoke else "")
    torch.manual_seed(0)
    return build(cfg).eval()


def video(ctx: Ctx, frames: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 synthetic scene at the check's size (longer videos repeat a 50-frame scene)."""
    h, w = ctx.size
    clip = render_video(seed, SyntheticConfig(width=w, height=h, num_frames=min(frames, 50)))[0]
    reps = -(-frames // len(clip))
    return np.concatenate([clip] * reps)[:frames]


# ---- measuring ----------------------------------------------------------------------------------------------------
def timed_predict(ctx: Ctx, seg: Any, frames: np.ndarray, **kwargs: Any) -> Tuple[Any, Dict[str, Any]]:
    """``seg.predict`` after a 2-frame warm-up: (result, frames/s, peak memory MB)."""
    seg.predict(frames[:2])
    ctx.sync()
    ctx.reset_peak()
    t0 = time.perf_counter()
    result = seg.predict(frames, **kwargs)
    ctx.sync()
    dt = time.perf_counter() - t0
    return result, {"frames": len(frames), "seconds": round(dt, 3), "fps": round(len(frames) / dt, 2),
                    "peak_mb": ctx.peak_mb(), "dtype_run": seg.dtype, "instances": len(result)}


def agreement(ref: Any, other: Any, top: int = 5) -> Dict[str, Any]:
    """Mean / min mask IoU over the reference's instances (same track id and label; 0 where missing), whether the
    ``top`` best-scoring instances are the same, the largest score difference."""
    index = {(i.track_id, i.label): i for i in other.instances}
    ious, diffs = [], []
    for a in ref.instances:
        b = index.get((a.track_id, a.label))
        if b is None:
            ious.append(0.0)
            continue
        inter = union = 0
        for t in range(a.num_frames):
            ma, mb = a.mask(t), b.mask(t)
            inter += int(np.logical_and(ma, mb).sum())
            union += int(np.logical_or(ma, mb).sum())
        ious.append(1.0 if union == 0 else inter / union)
        diffs.append(abs(a.score - b.score))

    def top_set(r: Any) -> set:
        return {(i.track_id, i.label) for i in sorted(r.instances, key=lambda i: -i.score)[:top]}
    return {"mean_iou": round(float(np.mean(ious)), 4) if ious else 1.0,
            "min_iou": round(float(min(ious)), 4) if ious else 1.0, "matched": len(diffs), "total": len(ious),
            "same_top5": top_set(ref) == top_set(other),
            "max_score_diff": round(max(diffs), 5) if diffs else 0.0}


def _segmenter(ctx: Ctx, model: torch.nn.Module, dtype: str, **kw: Any) -> Any:
    return dvis_sdk.VideoSegmenter(model, device=ctx.device, dtype=dtype, **kw)


# ---- the checks ---------------------------------------------------------------------------------------------------
def check_pytest_gpu(ctx: Ctx) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(_ROOT / "tests")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=_ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    summary = lines[-1] if lines else proc.stderr.strip()[-300:]
    # exit code 5: no test selected; all skipped without CUDA is a pass of the machinery
    ok = proc.returncode in (0, 5)
    return {"status": "ok" if ok else "failed", "summary": summary,
            "failures": [ln for ln in lines if ln.startswith("FAILED")][:20]}


def check_vitl(ctx: Ctx) -> Dict[str, Any]:
    model = build_model(ctx, "r50_online" if ctx.smoke else "vitl")
    frames = video(ctx, ctx.frames)
    out: Dict[str, Any] = {"model": MODELS["vitl"][0], "size": list(ctx.size)}
    ref, out["fp32"] = timed_predict(ctx, _segmenter(ctx, model, "fp32"), frames)
    res, out["bf16"] = timed_predict(ctx, _segmenter(ctx, model, "bf16"), frames)
    out["bf16_vs_fp32"] = agreement(ref, res)
    out["speedup"] = round(out["bf16"]["fps"] / out["fp32"]["fps"], 2)
    return out


def check_r50(ctx: Ctx) -> Dict[str, Any]:
    frames = video(ctx, ctx.frames, seed=1)
    out: Dict[str, Any] = {"size": list(ctx.size), "auto_picks": resolve_dtype("auto", ctx.device)}
    for key in ("r50_online", "r50_offline"):
        model = build_model(ctx, key)
        runs: Dict[str, Any] = {"model": MODELS[key][0]}
        ref, runs["fp32"] = timed_predict(ctx, _segmenter(ctx, model, "fp32"), frames)
        for dtype in ("fp16", "bf16"):
            if dtype == "fp16" and not ctx.cuda:
                runs[dtype] = {"status": "skipped: fp16 runs fp32 on a CPU"}
                continue
            res, runs[dtype] = timed_predict(ctx, _segmenter(ctx, model, dtype), frames)
            runs[dtype]["vs_fp32"] = agreement(ref, res)
        out[key] = runs
    return out


def check_daq(ctx: Ctx) -> Dict[str, Any]:
    model = build_model(ctx, "daq")
    seg = _segmenter(ctx, model, "auto")
    frames = video(ctx, ctx.daq_frames, seed=2)
    curve: List[Tuple[int, Optional[float]]] = []
    done = [0]
    every = max(ctx.daq_frames // 5, 1)

    def on_frames(n: int) -> None:
        before = done[0]
        done[0] += n
        if done[0] // every > before // every:
            curve.append((done[0], ctx.allocated_mb()))
    ctx.reset_peak()
    t0 = time.perf_counter()
    result = seg.predict(frames, on_frames=on_frames)
    ctx.sync()
    dt = time.perf_counter() - t0
    mem = [m for _, m in curve if m is not None]
    growth = round((mem[-1] - mem[0]) / max(curve[-1][0] - curve[0][0], 1) * 100, 2) if len(mem) > 1 else None
    return {"model": MODELS["daq"][0], "size": list(ctx.size), "frames": len(frames), "dtype_run": seg.dtype,
            "fps": round(len(frames) / dt, 2), "peak_mb": ctx.peak_mb(),
            "allocated_mb_by_frame": [list(c) for c in curve], "growth_mb_per_100_frames": growth,
            "instances": len(result)}


def check_ort(ctx: Ctx) -> Dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {"status": "skipped: onnxruntime not installed (pip install 'dvis_sdk[onnx]', onnxruntime-gpu)"}
    from dvis_sdk.export import export_onnx

    want = "CUDAExecutionProvider" if ctx.cuda else "CPUExecutionProvider"
    if want not in ort.get_available_providers():
        return {"status": f"skipped: {want} not in this onnxruntime build ({ort.get_available_providers()})"}
    name = "dvis-tiny-shapes"
    ctx.weights["ort"] = f"{name} (embedded trained tiny model)"
    folder = export_onnx(name, ctx.tmp / "onnx")
    frames = render_video(3, SyntheticConfig(width=200, height=120, num_frames=8))[0]
    torch_seg = dvis_sdk.VideoSegmenter.from_pretrained(name, device=ctx.device)
    providers = list(dict.fromkeys([want, "CPUExecutionProvider"]))
    ort_seg = dvis_sdk.VideoSegmenter.from_pretrained(folder, device=ctx.device, providers=providers)
    ref, t_stats = timed_predict(ctx, torch_seg, frames)
    res, o_stats = timed_predict(ctx, ort_seg, frames)
    agree = agreement(ref, res)
    ok = agree["matched"] == agree["total"] and agree["min_iou"] >= 0.99 and agree["max_score_diff"] <= 1e-3
    return {"status": "ok" if ok else "failed", "provider": want, "io_binding": bool(ort_seg.model.io_binding),
            "pytorch": t_stats, "onnxruntime": o_stats, "agreement": agree,
            "tolerance": "all matched, min IoU >= 0.99, scores within 1e-3"}


def check_batch(ctx: Ctx) -> Dict[str, Any]:
    from dvis_sdk.batch import predict_folder

    if ctx.cuda:
        if torch.cuda.device_count() < 2:
            return {"status": f"skipped: {torch.cuda.device_count()} GPU(s), the check needs 2"}
        devices = "cuda:0,cuda:1"
    else:
        devices = "cpu,cpu"  # the machinery only (fp16 runs fp32 on a CPU)
    model = build_model(ctx, "r50_online")
    src = ctx.tmp / "batch_src"
    for i in range(4):
        folder = src / f"v{i}"
        folder.mkdir(parents=True)
        import cv2

        for t, f in enumerate(video(ctx, max(ctx.frames // 2, 2), seed=10 + i)):
            cv2.imwrite(str(folder / f"{t:05d}.png"), f[:, :, ::-1])
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="fp16 is not supported on CPU")  # the CPU driver only feeds
        seg = dvis_sdk.VideoSegmenter(model, device="cpu", dtype="fp16")
    t0 = time.perf_counter()
    summary = predict_folder(seg, src, ctx.tmp / "batch_out", pattern="*", devices=devices, progress=False)
    dt = time.perf_counter() - t0
    dtypes = sorted({json.loads((ctx.tmp / "batch_out" / r["output"] / "results.json").read_text())["meta"]["dtype"]
                     for r in summary.ok})
    want = ["fp16"] if ctx.cuda else ["fp32"]
    return {"status": "ok" if len(summary.ok) == 4 and dtypes == want else "failed", "devices": devices,
            "videos_ok": len(summary.ok), "failed": [r["error"] for r in summary.failed], "dtypes_run": dtypes,
            "seconds": round(dt, 2), "requested_dtype": "fp16"}


RUNNERS: Dict[str, Callable[[Ctx], Dict[str, Any]]] = {
    "pytest_gpu": check_pytest_gpu, "vitl_online_bf16": check_vitl, "r50_precisions": check_r50,
    "daq_memory": check_daq, "ort_cuda_parity": check_ort, "batch_two_gpus": check_batch}


def plan(ctx: Ctx) -> List[Tuple[str, str]]:
    """(check, what it runs here) for every check, in order."""
    h, w = ctx.size
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    auto = (resolve_dtype("auto", ctx.device) if not ctx.cuda or torch.cuda.is_available()
            else "bf16 on compute capability >= 8.0, else fp16")
    what = {
        "pytest_gpu": "pytest -m gpu tests/ (skip without CUDA)",
        "vitl_online_bf16": f"{'narrow R50 (smoke)' if ctx.smoke else MODELS['vitl'][0]} online, fp32 and bf16, "
                            f"{ctx.frames} frames at {h}x{w} through predict",
        "r50_precisions": f"R50 online + offline, fp32 / fp16 / bf16, {ctx.frames} frames at {h}x{w}",
        "daq_memory": f"DAQ R50 online, {ctx.daq_frames} frames at {h}x{w}, dtype auto "
                      f"({auto}), memory every {max(ctx.daq_frames // 5, 1)} frames",
        "ort_cuda_parity": f"ONNX export of dvis-tiny-shapes on {'CUDA' if ctx.cuda else 'CPU'}ExecutionProvider "
                           "vs PyTorch fp32",
        "batch_two_gpus": (f"predict_folder, 4 videos, devices cuda:0,cuda:1, dtype fp16 ({gpus} GPU(s) here"
                           f"{'' if gpus >= 2 else ': skipped'})") if ctx.cuda else
                          "predict_folder, 4 videos, devices cpu,cpu (machinery only)",
    }
    return [(c, what[c]) for c in CHECKS]


def environment(ctx: Ctx) -> Dict[str, Any]:
    env: Dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "device": str(ctx.device),
                           "smoke": ctx.smoke}
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        env.update(gpu=p.name, capability=f"{p.major}.{p.minor}", memory_gb=round(p.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, gpus=torch.cuda.device_count())
    return env


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="default cuda if there is one (a dry run: cuda), else cpu")
    ap.add_argument("--dry-run", action="store_true", help="list the checks and what they would run; run nothing")
    ap.add_argument("--smoke", action="store_true", help="a narrow R50 for every model at 64x96 (any device)")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(CHECKS)}")
    ap.add_argument("--frames", type=int, default=48, help="frames per video of the speed / precision checks")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="KEY=PATH",
                    help=f"official checkpoint for a model (keys: {', '.join(MODELS)}); default random weights")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds; checks not started by then are skipped")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if args.device is None:  # a dry run without CUDA lists the plan of a GPU run
        args.device = "cuda" if torch.cuda.is_available() or (args.dry_run and not args.smoke) else "cpu"
    ctx = Ctx(args)
    only = CHECKS if not args.only else tuple(c.strip() for c in args.only.split(","))
    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        ap.error(f"unknown check(s) {unknown}; expected some of {list(CHECKS)}")
    if not ctx.cuda and not ctx.smoke and not args.dry_run:
        ap.error("no CUDA device: run with --dry-run (the plan) or --smoke --device cpu (the machinery)")
    if args.dry_run:
        print(f"gpu_check on {ctx.device}{' (smoke)' if ctx.smoke else ''}: would write {args.out}")
        for name, what in plan(ctx):
            print(f"  {name:<18} {what}{'' if name in only else '  [not selected]'}")
        return 0
    t0 = time.perf_counter()
    report: Dict[str, Any] = {"environment": environment(ctx), "checks": {}}
    for name in only:
        if time.perf_counter() - t0 > args.budget:
            report["checks"][name] = {"status": f"skipped: over the {args.budget:.0f} s budget"}
            continue
        t1 = time.perf_counter()
        print(f"[{time.perf_counter() - t0:6.1f}s] {name} ...", flush=True)
        try:
            res = RUNNERS[name](ctx)
            res.setdefault("status", "ok")
        except Exception as e:  # noqa: BLE001 - one failing check must not hide the others
            res = {"status": "failed", "error": f"{type(e).__name__}: {' '.join(str(e).split())[:500]}",
                   "traceback": traceback.format_exc().splitlines()[-8:]}
        finally:
            if ctx.cuda:
                torch.cuda.empty_cache()
        res["check_seconds"] = round(time.perf_counter() - t1, 1)
        report["checks"][name] = res
        print(f"    {res['status']}", flush=True)
    report["weights"] = ctx.weights
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(jsonable(report), indent=2))
    failed = [n for n, r in report["checks"].items() if r["status"] == "failed"]
    print(f"wrote {args.out} in {report['seconds']} s; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
