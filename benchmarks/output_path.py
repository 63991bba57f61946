#!/usr/bin/env python
"""The long-video output path: how fast masks are up-sampled and run-length encoded, and how long the inference
loop waits for it.

Two measurements (CPU by default, random weights):

1. ``encode``: :func:`dvis_sdk.inference.runner.encode_window_masks` on one window of stride-4 mask logits
   (``--queries`` active queries x ``--window`` frames, blob-shaped masks, on ``--device``) at 480p (480x854) and
   1080p (1080x1920): query-frames/s with ``--threads`` CPU threads (best of ``--repeat``).
2. ``predict``: ``VideoSegmenter.predict`` of a synthetic ``--frames``-frame 480p video (frames given as a
   tensor, resized to the model's size, masks at 480x854) with ``mask_buffer_mb=0``, so every window's masks of
   all queries are up-sampled and encoded as the window arrives (what happens on a long video once the mask
   buffer is full). Reports the wall time, the time the inference loop spent waiting for the mask work (inside
   ``ScoreAccumulator.add`` and ``masks_of``: the synchronous encoding before the change, the back-pressure and
   the final flush after it) and its share of the wall time.

    python benchmarks/output_path.py --label after --json benchmarks/results/output_path_after.json
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, best_of, build_segmenter, environment, synthetic_frames, write_json  # noqa: E402

SIZES = {"480p": (480, 854), "1080p": (1080, 1920)}


def blob_logits(queries: int, frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(Q, t, h/4, w/4) mask logits: one moving disc per query (positive inside, negative outside), like a
    trained model's masks (a random-weight model's logits are noise, which makes RLE runs unrealistically short)."""
    g = torch.Generator().manual_seed(seed)
    h, w = -(-height // 32) * 8, -(-width // 32) * 8  # stride 4 of the size padded to 32
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    centre = torch.rand(queries, 1, 2, generator=g) * torch.tensor([h, w]) + torch.arange(frames).view(1, -1, 1)
    radius = (0.05 + 0.15 * torch.rand(queries, 1, 1, 1, generator=g)) * min(h, w)
    dist = ((yy - centre[..., 0, None, None]) ** 2 + (xx - centre[..., 1, None, None]) ** 2).sqrt()
    return (radius - dist) / radius * 8


def measure_encode(size: str, queries: int, window: int, repeat: int, device: str = "cpu") -> Dict[str, Any]:
    from dvis_sdk.inference.runner import encode_window_masks

    hw = SIZES[size]
    logits = blob_logits(queries, window, *hw).to(device)  # on a GPU: up-sampled there, then copied and encoded
    padded = (logits.shape[-2] * 4, logits.shape[-1] * 4)
    encode_window_masks(logits, padded, hw, hw)  # warm-up (pycocotools import, allocator)
    secs = best_of(lambda: encode_window_masks(logits, padded, hw, hw), repeat, device)
    qf = queries * window
    return {"size": size, "output": list(hw), "query_frames": qf, "seconds": round(secs, 4),
            "query_frames_per_s": round(qf / secs, 1), "ms_per_query_frame": round(1000 * secs / qf, 3)}


class _WaitClock:
    """Wall time spent inside the accumulator's mask work, seen from the inference loop."""

    def __init__(self) -> None:
        from dvis_sdk.inference.runner import ScoreAccumulator

        self.seconds = 0.0
        self._cls, self._saved = ScoreAccumulator, {}
        for name in ("add", "masks_of"):
            self._wrap(name)

    def _wrap(self, name: str) -> None:
        real = getattr(self._cls, name)
        self._saved[name] = real

        def timed(acc: Any, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(acc, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
        setattr(self._cls, name, timed)

    def close(self) -> None:
        for name, real in self._saved.items():
            setattr(self._cls, name, real)


def measure_predict(frames: int, window: int, device: str, repeat: int) -> Dict[str, Any]:
    seg = build_segmenter("tiny", "online", device, "fp32", 300, mask_buffer_mb=0, window_size=window)
    h, w = SIZES["480p"]
    video = torch.from_numpy(synthetic_frames(frames, h, w)).permute(0, 3, 1, 2).contiguous()
    seg.predict(video[:window])  # warm-up
    best: Optional[Dict[str, Any]] = None
    for _ in range(max(1, repeat)):
        clock = _WaitClock()
        try:
            t0 = time.perf_counter()
            res = seg.predict(video)
            wall = time.perf_counter() - t0
        finally:
            clock.close()
        run = {"wall_s": round(wall, 3), "wait_s": round(clock.seconds, 3),
               "wait_share": round(clock.seconds / wall, 3),
               "fps": round(frames / wall, 2), "instances": len(res.instances),
               "encoded_per_window": bool(res.meta.get("masks_encoded_per_window"))}
        if best is None or run["wall_s"] < best["wall_s"]:
            best = run
    return {"frames": frames, "window": window, "video": [h, w], "model_size": list(res.meta["model_size"]),
            "queries": seg.cfg.segmenter.num_queries, **best}


def main(argv: Optional[list] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--label", default="current", help="a name for this code state (before / after)")
    p.add_argument("--queries", type=int, default=20, help="active queries per encoded window")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--frames", type=int, default=60, help="length of the predict video")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--skip", nargs="*", default=[], choices=["encode", "predict"])
    p.add_argument("--json", default=None, help=f"write the figures here (e.g. {RESULTS}/output_path_after.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out: Dict[str, Any] = {"label": args.label, "env": environment(args.device)}
    if "encode" not in args.skip:
        out["encode"] = [measure_encode(s, args.queries, args.window, args.repeat, args.device) for s in SIZES]
        for r in out["encode"]:
            print(f"encode {r['size']:>6}: {r['query_frames_per_s']:8.1f} query-frames/s "
                  f"({r['ms_per_query_frame']:.3f} ms each)")
    if "predict" not in args.skip:
        r = out["predict"] = measure_predict(args.frames, args.window, args.device, args.repeat)
        print(f"predict {r['frames']} frames {r['video'][0]}x{r['video'][1]}: {r['fps']} frames/s, "
              f"wall {r['wall_s']} s, "
              f"waiting on masks {r['wait_s']} s ({100 * r['wait_share']:.0f}%)")
    if args.json:
        write_json(out, args.json)
    return out


if __name__ == "__main__":
    main()
