"""Time :func:`dvis_sdk.evaluation.evaluate_ytvis` on an OVIS-sized synthetic validation set, on one CPU core.

OVIS val: 140 videos, ~60 frames each (here 40..80), 25 classes, 360x640 here; ~5 objects per video (2..10 here,
present on most frames, with occlusion gaps); up to 100 predictions per video (60..100 here): a few noisy copies
of each object (right or wrong class) and random moving blobs that live over part of the video.

    python benchmarks/eval_speed.py [--videos 140] [--preds-min 60] [--keep DIR]

Prints the set's size and the time of each stage; the target is under a minute in total.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

H, W, NUM_CLASSES = 360, 640, 25


def ellipse_rle(cy: float, cx: float, ry: float, rx: float) -> dict | None:
    """Compressed RLE of a filled ellipse, built column by column (no dense mask: fast to generate)."""
    from pycocotools import mask as mask_util

    x0, x1 = max(0, int(np.ceil(cx - rx))), min(W, int(np.floor(cx + rx)) + 1)
    if x1 <= x0:
        return None
    xs = np.arange(x0, x1)
    half = ry * np.sqrt(np.clip(1 - ((xs - cx) / rx) ** 2, 0, 1))
    top = np.clip(np.round(cy - half), 0, H).astype(np.int64)
    bot = np.clip(np.round(cy + half), 0, H).astype(np.int64)
    keep = bot > top
    if not keep.any():
        return None
    xs, top, bot = xs[keep], top[keep], bot[keep]
    starts = xs * H + top                    # column-major pixel index of each column's run
    ends = xs * H + bot
    bounds = np.empty(2 * len(xs), np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    counts = np.diff(np.concatenate(([0], bounds, [H * W]))).tolist()
    rle = mask_util.frPyObjects({"size": [H, W], "counts": counts}, H, W)
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


class Track:
    def __init__(self, rng: np.random.Generator, length: int, start: int = 0, end: int | None = None):
        self.length, self.start, self.end = length, start, length if end is None else end
        self.c0 = rng.uniform([40, 40], [H - 40, W - 40])
        self.v = rng.normal(0, 2.0, 2)
        self.r = rng.uniform(12, 170, 2)
        self.gaps = rng.random(length) < 0.1    # occluded frames

    def masks(self, rng: np.random.Generator, jitter: float = 0.0, scale: float = 1.0) -> list:
        out = []
        for t in range(self.length):
            if not (self.start <= t < self.end) or self.gaps[t]:
                out.append(None)
                continue
            cy, cx = self.c0 + self.v * t + rng.normal(0, jitter, 2)
            ry, rx = self.r * scale * (1 + rng.normal(0, jitter / 50, 2))
            out.append(ellipse_rle(cy, cx, max(ry, 2), max(rx, 2)))
        return out


def make_dataset(num_videos: int, seed: int = 0, preds_min: int = 60) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    gt = {"videos": [], "annotations": [], "categories": [{"id": i + 1, "name": f"class{i + 1}"}
                                                           for i in range(NUM_CLASSES)]}
    results = []
    for v in range(1, num_videos + 1):
        length = int(rng.integers(40, 81))
        gt["videos"].append({"id": v, "height": H, "width": W, "length": length})
        objects = [(Track(rng, length), int(rng.integers(1, NUM_CLASSES + 1))) for _ in range(rng.integers(2, 11))]
        for tr, cat in objects:
            segs = tr.masks(rng)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "video_id": v, "category_id": cat,
                                      "iscrowd": 0, "segmentations": segs, "height": H, "width": W,
                                      "areas": [None if s is None else None for s in segs]})
        preds = []
        for tr, cat in objects:  # noisy copies of each object, some with the wrong class
            for _ in range(int(rng.integers(1, 4))):
                c = cat if rng.random() < 0.7 else int(rng.integers(1, NUM_CLASSES + 1))
                preds.append((c, tr.masks(rng, jitter=rng.uniform(0.5, 8), scale=rng.uniform(0.8, 1.2)),
                              float(rng.uniform(0.2, 1.0))))
        n_total = int(rng.integers(preds_min, 101))
        while len(preds) < n_total:  # background clutter living over part of the video
            s = int(rng.integers(0, length))
            tr = Track(rng, length, s, int(rng.integers(s + 1, length + 1)))
            preds.append((int(rng.integers(1, NUM_CLASSES + 1)), tr.masks(rng, jitter=1.0),
                          float(rng.uniform(0.0, 0.6))))
        for c, segs, score in preds:
            results.append({"video_id": v, "category_id": c, "score": score, "segmentations": segs})
    from pycocotools import mask as mask_util
    for a in gt["annotations"]:  # the official annotation files carry per-frame areas
        a["areas"] = [None if s is None else int(mask_util.area(s)) for s in a["segmentations"]]
    return gt, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=140)
    ap.add_argument("--preds-min", type=int, default=60, help="fewest predictions per video (100: all at the cap)")
    ap.add_argument("--keep", default=None,
                    help="write gt.json / results.json here (default: a temp dir); reused if already there")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    from dvis_sdk.evaluation import evaluate_ytvis, format_table
    from dvis_sdk.evaluation import ytvis as ytvis_mod

    out = Path(args.keep or tempfile.mkdtemp(prefix="dvis_eval_bench_"))
    t0 = time.perf_counter()
    if (out / "gt.json").is_file() and (out / "results.json").is_file():
        gt, results = (json.loads((out / n).read_text()) for n in ("gt.json", "results.json"))
    else:
        gt, results = make_dataset(args.videos, preds_min=args.preds_min)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gt.json").write_text(json.dumps(gt))
        (out / "results.json").write_text(json.dumps(results))
    t_gen = time.perf_counter() - t0
    n_frames = sum(v["length"] for v in gt["videos"])
    n_rles = sum(s is not None for r in results for s in r["segmentations"])
    print(f"set: {len(gt['videos'])} videos, {n_frames} frames ({n_frames / len(gt['videos']):.0f}/video), "
          f"{H}x{W}, {len(gt['annotations'])} objects, {len(results)} predictions "
          f"({len(results) / len(gt['videos']):.0f}/video), {n_rles} predicted masks; "
          f"results.json {(out / 'results.json').stat().st_size / 2**20:.0f} MiB (made or read in {t_gen:.0f} s)")

    # stage timings: wrap the module's stages
    stages: dict = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    orig = {n: getattr(ytvis_mod, n) for n in ("_load_json", "_parse_gt", "_parse_results", "_video_ious",
                                               "_frame_areas", "_video_cocoeval")}
    for n, fn in orig.items():
        setattr(ytvis_mod, n, timed(n.strip("_"), fn))
    t, c = time.perf_counter(), time.process_time()
    stats = evaluate_ytvis(out / "gt.json", out / "results.json")
    total, cpu = time.perf_counter() - t, time.process_time() - c
    for n, fn in orig.items():
        setattr(ytvis_mod, n, fn)
    rest = total - sum(stages.values())
    print(format_table(stats))
    print("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()) + f", matching+accumulate {rest:.1f} s")
    print(f"evaluate_ytvis (files -> stats), one core: {total:.1f} s wall, {cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
