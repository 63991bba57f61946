"""Time :func:`dvis_sdk.evaluation.evaluate_vps` / :func:`evaluate_vss` on synthetic VIPSeg- / VSPW-shaped sets, on
one CPU core, and (optionally) the official scripts on the same set.

VIPSeg val: 343 videos, ~24.7 annotated frames each (84,750 frames over 3,536 videos), 720 x 1280 (VIPSeg_720P);
VSPW val: 343 videos, ~71 frames each (251,633 over 3,536), 480p here. A full set is ~17k / ~49k PNGs; by default
a subset is built and the per-frame cost is extrapolated (the metrics are linear in frames).

    python benchmarks/seg_eval_speed.py --task vps [--videos 8] [--frames 25] [--official-python PY]
    python benchmarks/seg_eval_speed.py --task vss [--videos 4] [--frames 71]

Writes benchmarks/results/seg_eval_speed_<task>_<videos>x<frames>.json. On a shared machine compare CPU seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

FULL = {"vps": (343, 84750 / 3536), "vss": (343, 251633 / 3536)}
OFFICIAL = Path("/work/official/DVIS_Plus/DVIS_Plus/utils")


def build(task: str, out: Path, videos: int, frames: int, h: int, w: int) -> None:
    import seg_eval_cases as gen

    if task == "vps":
        gen.make_vps_case(out, 7, lengths=[frames] * videos, h=h, w=w, things=(6, 16), scale=max(1, h // 36),
                          shift=2 * max(1, h // 36), fp_blobs=3, id_switch=0.3)
    else:
        gen.make_vss_case(out, 7, lengths=[frames] * videos, h=h, w=w, scale=max(1, h // 24), flicker=False)


def run_official(task: str, case: Path, py: str, scratch: Path) -> tuple:
    """Wall seconds of the official scripts on the set (VPQ with one process; + STQ, or mIoU + VC)."""
    import seg_eval_cases as gen

    scripts = scratch / "official_utils"
    scripts.mkdir(parents=True, exist_ok=True)
    for f in ("eval_vpq_vspw.py", "eval_stq_vspw.py", "segmentation_and_tracking_quality.py", "eval_miou_vspw.py",
              "eval_vc_vspw.py"):
        (scripts / f).write_bytes((OFFICIAL / f).read_bytes())
    t = time.perf_counter()
    res = gen.score_vps(case, py, scripts, scratch) if task == "vps" else gen.score_vss(case, py, scripts)
    return time.perf_counter() - t, res


def _children_cpu() -> float:
    r = os.times()
    return r.children_user + r.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("vps", "vss"), default="vps")
    ap.add_argument("--videos", type=int, default=None)
    ap.add_argument("--frames", type=int, default=None, help="frames per video (default: the dataset's mean)")
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1, help="PNG-decoding threads of evaluate_* (1: none)")
    ap.add_argument("--official-python", default=None, help="also time the official scripts with this interpreter")
    ap.add_argument("--keep", default=None, help="build the set here (reused if present)")
    args = ap.parse_args()
    vps = args.task == "vps"
    videos = args.videos or (8 if vps else 4)
    frames = args.frames or (25 if vps else 71)
    h, w = args.height or (720 if vps else 480), args.width or (1280 if vps else 853)
    if hasattr(os, "sched_setaffinity") and args.workers <= 1:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    from dvis_sdk.evaluation import evaluate_vps, evaluate_vss

    out = Path(args.keep or tempfile.mkdtemp(prefix=f"dvis_{args.task}_bench_"))
    t = time.perf_counter()
    if not (out / ("gt.json" if vps else "val.txt")).is_file():
        build(args.task, out, videos, frames, h, w)
    t_gen = time.perf_counter() - t
    n = videos * frames
    t, c = time.perf_counter(), time.process_time()
    if vps:
        stats = evaluate_vps(out / "gt.json", out / "gt", out / "pred.json", out / "pan_pred", workers=args.workers)
        keys = ("VPQ", "VPQ_thing", "VPQ_stuff", "STQ", "AQ", "SQ")
    else:
        stats = evaluate_vss(out, out / "pred", workers=args.workers)
        keys = ("mIoU", "VC8", "VC16")
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    full_v, full_f = FULL[args.task]
    full_frames = full_v * full_f
    rec = {"task": args.task, "videos": videos, "frames_per_video": frames, "frames": n, "size": [h, w],
           "workers": args.workers, "build_s": round(t_gen, 1), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "cpu_ms_per_frame": round(1000 * cpu / n, 1), "full_val_frames": round(full_frames),
           "full_val_extrapolated_cpu_s": round(cpu / n * full_frames), "numbers": {k: stats[k] for k in keys}}
    print(f"{args.task}: {videos} videos x {frames} frames, {w}x{h}: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"({1000 * cpu / n:.0f} ms CPU/frame) -> full val ({full_frames:.0f} frames) "
          f"~{cpu / n * full_frames:.0f} s CPU")
    if args.official_python:
        c_off = _children_cpu()
        t_off, res = run_official(args.task, out, args.official_python, Path(tempfile.mkdtemp()))
        c_off = _children_cpu() - c_off
        worst = max(abs(stats[k] - v) / (100 if k.startswith("VPQ") else 1) for k, v in res.items()
                    if isinstance(v, float) and k in stats)
        rec.update(official_wall_s=round(t_off, 1), official_cpu_s=round(c_off, 1),
                   official_cpu_ms_per_frame=round(1000 * c_off / n, 1), cpu_speedup=round(c_off / cpu, 1),
                   official_worst_diff=worst)
        print(f"official scripts, same set: {t_off:.1f} s wall, {c_off:.1f} s CPU "
              f"({1000 * c_off / n:.0f} ms CPU/frame), "
              f"{c_off / cpu:.1f}x the CPU; largest difference {worst:.2e}")
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / f"seg_eval_speed_{args.task}_{videos}x{frames}.json").write_text(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
