"""Peak memory of long-video inference: 300 / 1000 / 3000 frames.

Each measurement runs in a fresh subprocess (peak RSS is per process) on a synthetic video file written once per
length. Methods:

* ``predict``   ``VideoSegmenter.predict`` in online mode (masks kept as RLE; memory grows only with the results)
* ``stream``    ``VideoSegmenter.stream`` (nothing kept: constant memory)
* ``offline``   ``predict`` of the offline model, refined in chunks of ``--chunk-size`` frames
* ``official``  the official memory pattern: every frame and every query's mask logits held until the end
                (``video_inference`` on the whole decoded video); skipped above ``--official-max`` frames

Random weights (memory does not depend on them). Defaults are CPU-sized: a narrow ResNet-50 DVIS++ with 100 queries
(as the official models) at 240 px short edge; ``--config ovis/DVIS_Plus_Offline_R50.yaml`` (any shipped official
yaml) measures a real model size. Prints a table; ``--json`` writes the raw figures.

    python benchmarks/long_video.py --frames 300 1000 3000

(``benchmarks/output_path.py`` measures the output path of long videos: mask encoding throughput and how long the
inference loop waits for it.)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_segmenter, rss_mb  # noqa: E402


def make_video(path: Path, frames: int, height: int, width: int) -> None:
    """Moving bright squares on a dark textured background (cheap to decode, non-trivial masks)."""
    from dvis_sdk.io import write_video

    rng = np.random.default_rng(0)
    bg = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)

    def gen():
        for t in range(frames):
            f = bg.copy()
            for k in range(4):
                y = int((height - 40) * (0.5 + 0.4 * np.sin(0.05 * t + k)))
                x = int((width - 40) * (0.5 + 0.4 * np.cos(0.03 * t + 2 * k)))
                f[y:y + 40, x:x + 40] = (200, 80 + 40 * k, 60)
            yield f
    write_video(path, gen(), fps=25.0)


def child(args: argparse.Namespace) -> None:
    import torch

    seg = build_segmenter(args.config, "offline" if args.method == "offline" else "online", args.device, args.dtype,
                          args.chunk_size, args.min_size)
    base = rss_mb()
    if seg.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    n_inst = 0
    if args.method in ("predict", "offline"):
        res = seg.predict(args.video)
        n_inst, frames = len(res.instances), res.num_frames
    elif args.method == "stream":
        frames = 0
        for fr in seg.stream(args.video):
            frames += 1
            n_inst = max(n_inst, len(fr.instances))
    else:  # official: decode everything, keep every query's mask logits for the whole video
        from dvis_sdk.io import open_video
        from dvis_sdk.ops.preprocess import resize_frame, resized_shape

        src = open_video(args.video)
        size = resized_shape(src.height, src.width, seg.cfg.input.min_size_test, seg.cfg.input.max_size_test)
        x = torch.from_numpy(np.stack([resize_frame(f, size) for _, f in src])).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            from dvis_sdk.inference.runner import video_inference

            out = video_inference(seg.model, x.to(seg.device), output_size=(src.height, src.width))
        n_inst, frames = len(out.scores), x.shape[0]
    secs = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if seg.device.type == "cuda" else None
    print(json.dumps({"method": args.method, "frames": frames, "peak_rss_mb": round(peak, 1),
                      "model_rss_mb": round(base, 1), "cuda_peak_mb": cuda_peak, "seconds": round(secs, 1),
                      "fps": round(frames / secs, 2), "instances": n_inst}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[300, 1000, 3000])
    p.add_argument("--methods", nargs="+", default=["stream", "predict", "offline", "official"],
                   choices=["stream", "predict", "offline", "official"])
    p.add_argument("--config", default="tiny",
                   help="'tiny' or a shipped official yaml, e.g. ovis/DVIS_Plus_Offline_R50.yaml")
    p.add_argument("--size", default="360x640", help="video HxW (the model resizes to its test size)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--chunk-size", type=int, default=300)
    p.add_argument("--min-size", type=int, default=0, help="override the model's test size (short edge)")
    p.add_argument("--official-max", type=int, default=1000, help="skip the official pattern above this length")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--video", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    h, w = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.frames:
            video = Path(tmp) / f"v{n}.mp4"
            make_video(video, n, h, w)
            for method in args.methods:
                if method == "official" and n > args.official_max:
                    rows.append({"method": method, "frames": n, "skipped": f"> --official-max {args.official_max}"})
                    continue
                cmd = [sys.executable, __file__, "--child", "--method", method, "--video", str(video),
                       "--config", args.config, "--device", args.device, "--dtype", args.dtype,
                       "--chunk-size", str(args.chunk_size), "--min-size", str(args.min_size)]
                r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
                if r.returncode != 0:
                    rows.append({"method": method, "frames": n, "error": (r.stderr.strip().splitlines() or ["?"])[-1]})
                else:
                    rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"\nconfig={args.config} video={h}x{w} model short edge={args.min_size or 'config'} device={args.device} "
          f"dtype={args.dtype} chunk={args.chunk_size}")
    print(f"{'method':<10}{'frames':>7}{'peak RSS MB':>13}{'model MB':>10}{'CUDA MB':>9}{'s':>8}{'fps':>7}")
    for r in rows:
        if "peak_rss_mb" in r:
            cuda = f"{r['cuda_peak_mb']:.0f}" if r["cuda_peak_mb"] else "-"
            print(f"{r['method']:<10}{r['frames']:>7}{r['peak_rss_mb']:>13.0f}{r['model_rss_mb']:>10.0f}{cuda:>9}"
                  f"{r['seconds']:>8.1f}{r['fps']:>7.2f}")
        else:
            print(f"{r['method']:<10}{r['frames']:>7}  {r.get('skipped') or 'failed: ' + r['error']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
