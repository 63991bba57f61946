"""CPU cost and peak memory of the video panoptic (VPS) / semantic (VSS) post-processing against the VIS one, on the
SAME raw model outputs (what the window runner hands over: per-window class logits and stride-4 mask logits of
every query), without the network (which is the same for the three tasks).

    python benchmarks/panoptic_postprocess.py --task vps --frames 1000 --size 180x320 --queries 100 \\
        --buffer-mb 256 --json benchmarks/results/panoptic_postprocess.json

One task per process (peak RSS is per process; run the script once per task, the JSON file is updated). The
outputs: ~20 confident queries with blob-shaped masks moving over the video, the rest low-scoring noise,
124 classes; the output size is the model size (no resize). Reports seconds of post-processing per frame
(accumulating the windows + the final maps / top-k + RLE), peak RSS, bytes spilled to disk, result size.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dvis_sdk.config import DVISConfig, SegmenterConfig, TestConfig  # noqa: E402
from dvis_sdk.inference.panoptic import DenseTaskAccumulator  # noqa: E402
from dvis_sdk.inference.runner import ScoreAccumulator, WindowResult  # noqa: E402

NUM_CLASSES = 124


def windows(frames: int, window: int, queries: int, size, seed: int = 0):
    """Synthetic runner output: (t, Q, C+1) logits, (Q, t, h, w) mask logits at stride 4 (padded = size)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size[0] // 4, size[1] // 4
    conf = 20
    labels = torch.randint(0, NUM_CLASSES, (queries,), generator=g)
    centers = torch.rand((queries, 2), generator=g) * torch.tensor([h, w])
    speed = torch.randn((queries, 2), generator=g) * 0.3
    radius = 3 + torch.rand(queries, generator=g) * min(h, w) / 4
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    for s in range(0, frames, window):
        t = min(window, frames - s)
        logits = torch.randn((t, queries, NUM_CLASSES + 1), generator=g)
        logits[:, :conf].scatter_(2, labels[:conf].view(1, -1, 1).expand(t, -1, 1), 9.0)
        masks = torch.empty((queries, t, h, w))
        for i in range(t):
            c = centers + speed * (s + i)
            d = ((yy[None] - c[:, 0, None, None]) ** 2 + (xx[None] - c[:, 1, None, None]) ** 2).sqrt()
            masks[:, i] = (radius[:, None, None] - d) / 2 + torch.randn((queries, h, w), generator=g) * 0.5
        yield WindowResult(start=s, logits=logits, mask_logits=masks, padded_size=tuple(size),
                           image_size=tuple(size), output_size=tuple(size))


def run(task: str, frames: int, window: int, queries: int, size, buffer_mb: float) -> dict:
    cfg = DVISConfig(segmenter=SegmenterConfig(num_classes=NUM_CLASSES, num_queries=queries),
                     test=TestConfig(window_size=window, max_num=20, task=task, num_thing_classes=58))
    gen_s = 0.0
    t0 = time.perf_counter()
    if task == "vis":
        acc = ScoreAccumulator(queries, buffer_bytes=int(buffer_mb * 2**20))
    else:
        acc = DenseTaskAccumulator(cfg, int(buffer_mb * 2**20))
    it = windows(frames, window, queries, size)
    while True:  # the synthetic windows' generation time is measured apart and left out of the figures
        g0 = time.perf_counter()
        w = next(it, None)
        gen_s += time.perf_counter() - g0
        if w is None:
            break
        acc.add(w)
    if task == "vis":
        scores, labels, qs = acc.select(20)
        masks = acc.masks_of(qs)
        out = {"instances": len(qs), "rle_frames": sum(len(v) for v in masks.values())}
    else:
        spilled = acc.store.spilled
        if task == "vps":
            ids, segments = acc.panoptic()
            out = {"segments": len(segments), "result_kB": round(ids.compressed_bytes / 1e3, 1)}
        else:
            sem = acc.semantic()
            out = {"classes": int(len(np.unique(sem[0]))), "result_kB": round(sem.compressed_bytes / 1e3, 1)}
        out["spilled_MB"] = round(spilled / 2**20, 1)
        acc.close()
    total = time.perf_counter() - t0 - gen_s
    out.update(task=task, frames=frames, queries=queries, size=list(size), window=window, buffer_mb=buffer_mb,
               postprocess_s=round(total, 2), ms_per_frame=round(1000 * total / frames, 2),
               peak_rss_MB=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               threads=torch.get_num_threads())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["vis", "vps", "vss"], required=True)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--size", default="180x320")
    ap.add_argument("--buffer-mb", type=float, default=1024)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    size = tuple(int(x) for x in args.size.split("x"))
    res = run(args.task, args.frames, args.window, args.queries, size, args.buffer_mb)
    print(json.dumps(res))
    if args.json:
        path = Path(args.json)
        doc = json.loads(path.read_text()) if path.exists() else {"runs": []}
        key = (res["task"], res["frames"], tuple(res["size"]), res["queries"], res["buffer_mb"])
        doc["runs"] = [r for r in doc["runs"] if (r["task"], r["frames"], tuple(r["size"]), r["queries"],
                                                  r["buffer_mb"]) != key] + [res]
        doc["machine"] = "shared 2-core CPU VM, 1 thread, other jobs running (figures are noisy)"
        path.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
