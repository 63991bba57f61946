"""Batch throughput of the local backend: videos/hour and CPU (or GPU) utilisation, with and without decode overlap.

    python benchmarks/batch_throughput.py [--videos 12] [--frames 16] [--size 640x360] [--model DIR] [--device cpu]

Generates a folder of clips, then runs ``predict_folder`` on it (a fresh output folder each time) in these modes:

- ``serial``:   no overlap at all: each window is decoded, then inferred (the prefetch of
  :mod:`dvis_sdk.inference.handle`, which opened videos decode through, replaced by a plain iterator);
- ``prefetch``: decoding of the next window overlaps inference within a video (``overlap=False``: what
  ``predict()`` does), but each video is opened and its first windows decoded while the model waits;
- ``overlap``:  the default: in addition, the next video is opened and decodes while the current one infers;
- ``workers2``: (``--workers 2``) two worker processes, each with half of the cores.

Without ``--model`` the model is the tests' tiny R50 configuration with random weights (shapes are what count for
speed) at test size ``--min-size``. CPU utilisation is the process tree's CPU time over wall time x cores; on
CUDA the GPU's utilisation is sampled every 50 ms (needs ``pynvml``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dvis_sdk  # noqa: E402
from dvis_sdk.batch import predict_folder  # noqa: E402
from dvis_sdk.inference import handle  # noqa: E402
from dvis_sdk.io import write_video  # noqa: E402


def make_clips(folder: Path, n: int, frames: int, w: int, h: int) -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        clip = []
        for t in range(frames):
            f = np.zeros((h, w, 3), np.uint8)
            f[..., 0] = (xx * 255 // w).astype(np.uint8)
            f[..., 1] = (yy * 255 // h).astype(np.uint8)
            for k in range(3):  # moving discs plus sensor-like noise, so the decoder has real work
                cx, cy = (w * (k + 1) // 4 + 4 * t * (k + 1)) % w, h // 2 + (k - 1) * h // 4
                f[(xx - cx) ** 2 + (yy - cy) ** 2 < (h // 8) ** 2] = (255, 255 - 60 * k, 60 * k)
            f = np.clip(f.astype(np.int16) + rng.integers(-12, 13, f.shape), 0, 255).astype(np.uint8)
            clip.append(f)
        write_video(folder / f"clip{i:03d}.mp4", clip, fps=25)


def tiny_model(min_size: int, device: str) -> "dvis_sdk.VideoSegmenter":
    import torch

    from dvis_sdk.official import load_official_config

    cfg_path = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "11_e2e_online_r50" / "config.json"
    cfg = load_official_config(json.loads(cfg_path.read_text()))
    cfg.input.min_size_test, cfg.input.max_size_test = min_size, int(min_size * 16 / 9) + 1
    torch.manual_seed(0)
    return dvis_sdk.VideoSegmenter.from_config(cfg, None, device=device)


class SimulatedAccelerator:
    """Stands in for inference on an accelerator: ``ms`` per frame of waiting that uses no CPU (and no GIL), no
    masks. Measures how much of the decoding the pipeline hides on a machine without a GPU."""

    def __init__(self, seg, ms: float):
        self.seg, self.ms = seg, ms

    def __enter__(self):
        import torch

        from dvis_sdk.inference.runner import WindowResult

        q, c = self.seg.cfg.segmenter.num_queries, self.seg.cfg.segmenter.num_classes + 1
        ms = self.ms

        class Runner:
            offline, window_size, chunk_size = False, self.seg.window_size, None

            def __init__(self):
                self.done = 0

            def run(self, images):
                t = int(images.shape[0])
                time.sleep(ms * t / 1000)
                self.done += t
                yield WindowResult(self.done - t, torch.zeros(t, q, c), [[None] * t for _ in range(q)])

            def finish(self):
                return iter(())

        self._real = self.seg._runner
        self.seg._runner = lambda *a, **k: Runner()
        return self

    def __exit__(self, *exc) -> None:
        self.seg._runner = self._real


class GpuSampler:
    def __init__(self) -> None:
        self.samples: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import torch
        while not self._stop.is_set():
            try:
                self.samples.append(torch.cuda.utilization())
            except Exception:  # noqa: BLE001 - pynvml missing
                return
            time.sleep(0.05)

    def __enter__(self) -> "GpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def run(seg, src: Path, mode: str, device: str, threads=None) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"dvis-bench-{mode}-"))
    real_prefetch, patched_calls = handle.prefetch, []

    def no_prefetch(iterable, depth=2):
        patched_calls.append(1)
        return iter(iterable)

    if mode == "serial":
        # VideoHandle (what VideoSegmenter.open returns and predict / the batch workers use) calls the name it
        # imported into dvis_sdk.inference.handle; replacing it there turns the background decoding off
        handle.prefetch = no_prefetch
    kwargs = dict(overlap=mode != "serial" and mode != "prefetch", cpus_per_worker=threads)
    if mode == "workers2":
        kwargs.update(workers=2)
    try:
        c0, t0 = cpu_seconds(), time.perf_counter()
        with GpuSampler() if device.startswith("cuda") else _Null() as gpu:
            s = predict_folder(seg, src, out, progress=False, **kwargs)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    finally:
        handle.prefetch = real_prefetch
        shutil.rmtree(out, ignore_errors=True)
    assert s.exit_code == 0, s.table()
    if mode == "serial" and not patched_calls:
        raise RuntimeError("serial mode measured nothing different: the predictor no longer decodes through "
                           "dvis_sdk.inference.handle.prefetch; patch what it uses now")
    frames = sum(r["frames"] for r in s.ok)
    res = {"mode": mode, "videos": len(s.ok), "wall_s": round(wall, 2),
           "videos_per_hour": round(len(s.ok) * 3600 / wall),
           "frames_per_s": round(frames / wall, 2),
           "cpu_util": round(cpu / (wall * (os.cpu_count() or 1)), 3)}
    if gpu is not None and getattr(gpu, "samples", None):
        res["gpu_util"] = round(float(np.mean(gpu.samples)) / 100, 3)
    return res


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="640x360", help="WxH of the generated clips")
    ap.add_argument("--min-size", type=int, default=128, help="model test size (shortest edge) of the tiny model")
    ap.add_argument("--model", default=None, help="a save_pretrained folder or manifest name instead of the tiny model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default="serial,prefetch,overlap", help="comma-separated; also: workers2")
    ap.add_argument("--repeat", type=int, default=1, help="runs per mode (the best is reported)")
    ap.add_argument("--simulate-accelerator-ms", type=float, default=None, metavar="MS",
                    help="replace inference by MS ms per frame of CPU-free waiting (a stand-in for a GPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: all cores, "
                    "divided among the workers)")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    seg = (dvis_sdk.VideoSegmenter.from_pretrained(args.model, device=args.device) if args.model
           else tiny_model(args.min_size, args.device))
    sim = SimulatedAccelerator(seg, args.simulate_accelerator_ms) if args.simulate_accelerator_ms else _Null()
    with tempfile.TemporaryDirectory(prefix="dvis-bench-clips-") as tmp, sim:
        src = Path(tmp)
        make_clips(src, args.videos, args.frames, w, h)
        run(seg, src, "overlap", args.device, args.threads)  # warm-up (first-call initialisation, file cache)
        print(f"{args.videos} clips of {args.frames} frames {w}x{h}, model input {args.min_size}p, device "
              f"{args.device}, {os.cpu_count()} cores, torch threads per worker "
              f"{args.threads or __import__('torch').get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
              + (f", inference simulated: {args.simulate_accelerator_ms} ms/frame" if args.simulate_accelerator_ms
                 else ""))
        for mode in args.modes.split(","):
            best = min((run(seg, src, mode, args.device, args.threads) for _ in range(args.repeat)),
                       key=lambda r: r["wall_s"])
            print(json.dumps(best))


if __name__ == "__main__":
    main()
