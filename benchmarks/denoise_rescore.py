"""Re-score arms of the denoising study over a score-threshold sweep, with the tracker / cosine / swap sides.

Trains (or reuses, in ``--work/runs``) the study's arms exactly as ``denoise_ablation.py`` does (same data, frozen
segmenter, model tracker, lr 1e-4, ``--iters`` 1000), then scores each with ``tracker_sweep``: the tracker, plain
cosine association (segmenter-only) and the swap (tracker class scores with the segmenter's masks), each at score
thresholds 0.1..0.9. Tells whether the study's IDF1 gap at its fixed 0.3 threshold survives each side's best
threshold, and whether it comes from the tracker's scores or from its re-predicted masks.

    OMP_NUM_THREADS=1 python benchmarks/denoise_rescore.py --arms none wa shuffle --seeds 0 --work /work/study_work
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dvis_sdk import VideoSegmenter  # noqa: E402
from tracker_curve import STUDY, brief, context  # noqa: E402
from tracker_sweep import score_side, side_results  # noqa: E402


def main(argv=None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/work/study_work"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "denoise_rescore.json")
    ap.add_argument("--arms", nargs="+", default=["none", "wa", "shuffle"], choices=list(STUDY.ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    base = STUDY.parse(["--work", str(a.work), "--threads", str(a.threads), "--iters", str(a.iters)]
                       + (["--quick"] if a.quick else []))
    ctx = context(argparse.Namespace(work=a.work), base)
    out: Dict[str, Any] = {"iters": base.iters, "segmenter_fingerprint": ctx["fingerprint"],
                           "segmenter_per_frame_AP": ctx["per_frame_AP"], "cosine": brief(ctx["cosine"]),
                           "cosine_sweep": _strip(ctx["cosine"]["sweep"]), "runs": []}
    for seed in a.seeds:
        for arm in a.arms:
            m = STUDY.run_arm(base, arm, seed, ctx["seg_model"], STUDY.make_data(base), ctx["ann"],
                              ctx["seg_paths"], ctx["gt"])
            last = sorted((base.work / "runs" / f"{arm}_s{seed}").glob("stage*"))[-1]
            model = VideoSegmenter.from_pretrained(last, mode="online").model
            res = side_results(model, ctx["ann"], ctx["seg_paths"], STUDY.to_results, ("tracker", "swap"))
            sides = {s: score_side(ctx["gt"], res[s]) for s in res}
            out["runs"].append({"arm": arm, "seed": seed, "IDF1_at_0.3_study": m["IDF1"],
                                **{s: {**brief(v), "sweep": _strip(v["sweep"])} for s, v in sides.items()}})
            print(json.dumps({"arm": arm, "seed": seed, **{s: brief(v) for s, v in sides.items()}}), flush=True)
            a.out.write_text(json.dumps(out, indent=1))
    return out


def _strip(sweep: Dict[str, Any]) -> Dict[str, Any]:
    return {t: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items() if k != "per_video"}
            for t, m in sweep.items()}


if __name__ == "__main__":
    main()
