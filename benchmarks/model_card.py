#!/usr/bin/env python
"""Measure an embedded model's card figures (AP / AP50 / AP75) on held-out synthetic videos, as a user would.

For every seed, ``--videos`` videos are rendered with the package's own generator (``generate_ytvis``, the
``default`` preset, written as JPEG like any YouTube-VIS folder), every video is predicted through the public API
(``VideoSegmenter.from_pretrained(name).predict(frames)``) and scored with ``evaluate_ytvis``. The seeds must be
ones never used in training or model selection (the tiny models are trained on seed 0 and selected on seed 1;
the default seeds below were never used for anything else).

Prints per-seed AP, the mean ± std across seeds and the AP of all videos pooled (the figure a model card
states), and writes ``benchmarks/results/model_card_<name>.json``.

    python benchmarks/model_card.py dvis-tiny-shapes                       # 5 seeds x 24 videos
    python benchmarks/model_card.py dvis-tiny-shapes-offline --seeds 7001 7002 --videos 50
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
if (_ROOT / "dvis_sdk").is_dir():
    sys.path.insert(0, str(_ROOT))

DEFAULT_SEEDS = (7001, 7002, 7003, 7004, 7005)
KEYS = ("AP", "AP50", "AP75")


def _load_video(root: Path, video: dict) -> np.ndarray:
    frames = [cv2.cvtColor(cv2.imread(str(root / f)), cv2.COLOR_BGR2RGB) for f in video["file_names"]]
    return np.stack(frames)


def predict_split(seg, ann_path: Path) -> List[dict]:
    """The split's YouTube-VIS results through the public API (labels 0.. -> the file's category ids)."""
    data = json.loads(ann_path.read_text())
    cat_ids = [c["id"] for c in data["categories"]]
    results: List[dict] = []
    for video in data["videos"]:
        res = seg.predict(_load_video(ann_path.parent / "JPEGImages", video))
        for r in res.to_ytvis(video_id=video["id"], category_offset=0):
            r["category_id"] = cat_ids[r["category_id"]]
            r["video_id"] = video["id"]
            results.append(r)
    return results


def measure(name: str, seeds: Sequence[int], videos: int, preset: str = "default",
            threads: Optional[int] = None) -> Dict[str, object]:
    import torch

    from dvis_sdk import VideoSegmenter
    from dvis_sdk.evaluation import evaluate_ytvis
    from dvis_sdk.training.synthetic import generate_ytvis

    if threads:
        torch.set_num_threads(threads)
    seg = VideoSegmenter.from_pretrained(name, device="cpu")
    per_seed, pooled_gt, pooled_res = [], None, []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            ann = generate_ytvis(Path(tmp) / f"seed{seed}", videos, seed=seed, config=preset)
            gt = json.loads(ann.read_text())
            res = predict_split(seg, ann)
            m = evaluate_ytvis(gt, res)
            per_seed.append({"seed": seed, **{k: round(float(m[k]), 2) for k in KEYS}})
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {m[k]:.1f}" for k in KEYS), flush=True)
            # pool: video ids made unique across seeds
            offset = 0 if pooled_gt is None else max(v["id"] for v in pooled_gt["videos"])
            for v in gt["videos"]:
                v["id"] += offset
            for a in gt["annotations"]:
                a["video_id"] += offset
                a["id"] += 10_000_000 * len(per_seed)
            for r in res:
                r["video_id"] += offset
            if pooled_gt is None:
                pooled_gt = gt
            else:
                pooled_gt["videos"] += gt["videos"]
                pooled_gt["annotations"] += gt["annotations"]
            pooled_res += res
    pooled = evaluate_ytvis(pooled_gt, pooled_res)
    summary = {k: {"mean": round(statistics.mean(s[k] for s in per_seed), 2),
                   "std": round(statistics.stdev(s[k] for s in per_seed), 2) if len(per_seed) > 1 else 0.0,
                   "min": min(s[k] for s in per_seed), "max": max(s[k] for s in per_seed)} for k in KEYS}
    out = {"model": name, "preset": preset, "videos_per_seed": videos, "seeds": list(seeds),
           "total_videos": videos * len(seeds), "per_seed": per_seed,
           "pooled": {k: round(float(pooled[k]), 2) for k in KEYS}, "across_seeds": summary,
           "seconds": round(time.perf_counter() - t0, 1)}
    print(f"{name}: pooled over {out['total_videos']} videos: "
          + ", ".join(f"{k} {out['pooled'][k]:.1f}" for k in KEYS)
          + f"; across seeds AP {summary['AP']['mean']:.1f} ± {summary['AP']['std']:.1f}"
          + f" (min {summary['AP']['min']:.1f}, max {summary['AP']['max']:.1f})")
    return out


def main(argv: Optional[List[str]] = None) -> List[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="manifest names or save_pretrained folders")
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    p.add_argument("--videos", type=int, default=24, help="videos per seed")
    p.add_argument("--preset", default="default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json-dir", type=Path, default=_ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    outs = []
    for name in args.models:
        out = measure(name, args.seeds, args.videos, args.preset, args.threads)
        args.json_dir.mkdir(parents=True, exist_ok=True)
        (args.json_dir / f"model_card_{Path(name).name}.json").write_text(json.dumps(out, indent=2) + "\n")
        outs.append(out)
    return outs


if __name__ == "__main__":
    main()
