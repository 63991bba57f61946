#!/usr/bin/env python
"""CPU speed of DVIS-DAQ vs DVIS++ (online, R50, official OVIS yamls, random weights) on the same input.

    python benchmarks/daq_speed.py --frames 10 --resolution 240p --threads 1

Both models get the SAME segmenter weights (the DAQ segmenter has the DVIS++ keys), so the segmenter cost is
identical by construction and the difference is the tracker: DVIS++'s referring tracker vs DAQ's track module
(track queries + NUM_NEW_INS new-instance queries + slot branch + per-sequence bookkeeping). The cost of the DAQ
track module grows with the number of tracked sequences, which depends on the weights and the video. With plain
random weights every DAQ query passes the 0.1 threshold (NUM_NEW_INS = 100 new sequences per frame: the worst
case); ``--no-object-bias B ...`` adds B to the no-object logit of the DAQ class head to measure the tracker at
realistic sequence counts (each value is one run; the counts are reported). Times are the best of ``--repeat``
runs, DAQ and DVIS++ tracker runs interleaved (other processes only ever slow a run down); totals = segmenter +
tracker (the post-processing is the same for both). ``predict_end_to_end``: ``VideoSegmenter.predict`` of both
(and of the original DVIS R50 online, random weights) through the one window runner, default fast paths,
post-processing included, DAQ at the last no-object bias.
Writes ``benchmarks/results/daq_speed.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))
import dvis_sdk  # noqa: E402
from dvis_sdk.official import load_official_config  # noqa: E402

RESOLUTIONS = {"240p": (240, 426), "360p": (360, 640)}


def synthetic_video(T: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) float 0..255: a few coloured rectangles moving over a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = np.stack([xx / W * 255, yy / H * 255, np.full((H, W), 128.0)], 0)
    boxes = [(rng.integers(0, H // 2), rng.integers(0, W // 2), rng.integers(H // 6, H // 3),
              rng.integers(W // 6, W // 3), rng.integers(0, 255, 3), rng.integers(-6, 7, 2)) for _ in range(4)]
    frames = []
    for t in range(T):
        f = base.copy()
        for y, x, h, w, c, (dy, dx) in boxes:
            y0, x0 = int(np.clip(y + dy * t, 0, H - h)), int(np.clip(x + dx * t, 0, W - w))
            f[:, y0:y0 + h, x0:x0 + w] = c[:, None, None]
        frames.append(f)
    return torch.tensor(np.stack(frames), dtype=torch.float32)


def _mean_tracked(daq, segs) -> float:
    """Mean number of track queries entering a frame (the DAQ tracker's cost driver)."""
    state, counts = None, []
    for s in segs:
        state, recs = daq.track_window(s, state, return_records=True)
        counts += [int(r["n_track"]) for r in recs]
    return sum(counts) / len(counts)


def _time(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="240p")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-object-bias", type=float, nargs="+", default=[0.0])
    ap.add_argument("--json", default=str(_ROOT / "benchmarks" / "results" / "daq_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    plus = dvis_sdk.build_model(load_official_config("ovis/DVIS_Plus_Online_R50_16wIter.yaml"))
    daq = dvis_sdk.build_model(load_official_config("ovis/DAQ_Online_R50.yaml"))
    shared = {k: v for k, v in plus.state_dict().items() if not k.startswith("tracker.")}
    daq.load_state_dict({**daq.state_dict(), **shared})  # identical segmenters
    H, W = RESOLUTIONS[args.resolution]
    video = synthetic_video(args.frames, H, W)
    images = plus.preprocess(video)
    win = 5  # DAQ's hard-coded window; DVIS++ run with the same windows so the segmenter calls are identical
    chunks = [images[s:s + win] for s in range(0, images.shape[0], win)]

    t_seg, segs = _time(lambda: [daq.segment(c) for c in chunks], args.repeat)
    plus_segs = [plus.segment(c) for c in chunks]

    def run_daq():
        state = None
        for s in segs:
            state, _ = daq.track_window(s, state)
        return state

    def run_plus():
        state = None
        for s in plus_segs:
            _, state, _ = plus.track(s, state)
        return state

    T = args.frames
    bias = daq.tracker.class_embed.bias
    base = bias[-1].item()
    daq_runs = []
    t_plus = float("inf")
    for b in args.no_object_bias:
        bias[-1] = base + b
        t_daq, state = _time(run_daq, args.repeat)
        t_plus = min(t_plus, _time(run_plus, args.repeat)[0])  # interleaved: both see the same machine load
        daq_runs.append({"no_object_bias": b, "sequences": len(state.sequences),
                         "tracked_at_end": len(state.tracked),
                         "mean_track_queries_per_frame": _mean_tracked(daq, segs),
                         "tracker_ms_per_frame": 1000 * t_daq / T,
                         "total_ms_per_frame": 1000 * (t_seg + t_daq) / T})
    # the public API end to end (WindowRunner, default fast paths, post-processing), at the last bias above
    frames_u8 = video.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
    dvis = dvis_sdk.build_model(load_official_config("dvis/ovis/DVIS_Online_R50.yaml"))  # original DVIS, for the table
    segs_e2e = {k: dvis_sdk.VideoSegmenter(m, device="cpu", window_size=win)
                for k, m in (("dvis", dvis), ("dvis++", plus), ("daq", daq))}
    e2e = {"no_object_bias": args.no_object_bias[-1], **{k: {"predict_ms_per_frame": float("inf")} for k in segs_e2e}}
    for _ in range(args.repeat):  # interleaved rounds: the three see the same machine load; best of the rounds
        for key, seg in segs_e2e.items():
            t, result = _time(lambda seg=seg: seg.predict(frames_u8, resize=False), 1)
            e2e[key] = {"predict_ms_per_frame": min(e2e[key]["predict_ms_per_frame"], 1000 * t / T),
                        "instances": len(result.instances)}
    res = {
        "frames": T, "input": [H, W], "padded": list(images.shape[-2:]), "threads": args.threads,
        "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
        "configs": ["ovis/DVIS_Plus_Online_R50_16wIter.yaml", "ovis/DAQ_Online_R50.yaml"],
        "segmenter_ms_per_frame": 1000 * t_seg / T,
        "dvis++": {"tracker_ms_per_frame": 1000 * t_plus / T, "total_ms_per_frame": 1000 * (t_seg + t_plus) / T},
        "daq": daq_runs,
        "predict_end_to_end": e2e,
    }
    print(json.dumps(res, indent=1))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
