"""Where the denoising study's IDF1 gaps come from, from its stored per-video counts (no retraining).

IDF1 = 2 IDTP / (2 IDTP + IDFN + IDFP): IDTP counts object-frames given the RIGHT identity, IDFP predicted
object-frames that match no identity (false detections, or the wrong identity), IDFN missed object-frames. For every
arm of ``benchmarks/results/denoise_ablation*.json`` (at the study's fixed 0.3 score threshold) this reports the
totals, their difference from plain cosine association with paired bootstrap 95% intervals (validation videos and
seeds resampled), and the IDF1 the arm would have with cosine association's IDFP (what its identity assignment is
worth once its extra false positives are set aside).

    python benchmarks/denoise_decomposition.py        # writes benchmarks/results/denoise_decomposition.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KEYS = ("IDTP", "IDFN", "IDFP", "IDSW", "CLR_TP")


def counts(per_video: List[dict]) -> np.ndarray:
    """(videos, 5) array of IDTP, IDFN, IDFP, IDSW, CLR_TP."""
    return np.array([[r[k] for k in KEYS] for r in per_video], dtype=float)


def idf1(tot: np.ndarray, idfp: Any = None) -> np.ndarray:
    fp = tot[..., 2] if idfp is None else idfp
    return 100 * 2 * tot[..., 0] / np.maximum(2 * tot[..., 0] + tot[..., 1] + fp, 1)


def decompose(report: Dict[str, Any], b: int = 2000, seed: int = 0) -> Dict[str, Any]:
    """Per arm: mean / std over seeds of the totals and IDF1; arm - cosine of IDTP, IDFP, IDF1 and the IDF1 with
    cosine's IDFP, each with a paired bootstrap interval."""
    rng = np.random.default_rng(seed)
    cos = counts(report["cosine_association"]["per_video"])
    nv = len(cos)
    by: Dict[str, Dict[int, np.ndarray]] = {}
    for r in report["runs"]:
        by.setdefault(r["arm"], {})[r["seed"]] = counts(r["per_video"])
    idx = rng.integers(0, nv, size=(b, nv))
    cos_tot = cos.sum(0)
    cos_draw = cos[idx].sum(1)  # (b, 5)
    out: Dict[str, Any] = {"cosine": {**{k: int(v) for k, v in zip(KEYS, cos_tot)}, "IDF1": float(idf1(cos_tot))}}
    for arm, runs in by.items():
        seeds = sorted(runs)
        pick = rng.integers(0, len(seeds), size=(b, len(seeds)))
        tots = np.stack([runs[s].sum(0) for s in seeds])  # (S, 5)
        draws = np.stack([runs[s][idx].sum(1) for s in seeds])  # (S, b, 5)

        def interval(point_fn, draw_fn, tots=tots, draws=draws, seeds=seeds, pick=pick) -> Dict[str, Any]:
            point = float(np.mean([point_fn(tots[j], cos_tot) for j in range(len(seeds))]))
            per = np.stack([draw_fn(draws[j], cos_draw) for j in range(len(seeds))])  # (S, b)
            boot = per[pick, np.arange(b)[:, None]].mean(1)
            lo, hi = np.percentile(boot, [2.5, 97.5])
            return {"diff": round(point, 2), "ci95": [round(float(lo), 2), round(float(hi), 2)]}

        out[arm] = {
            "seeds": seeds,
            **{k: {"mean": float(tots[:, j].mean()), "std": float(tots[:, j].std(ddof=1)) if len(seeds) > 1 else 0.0}
               for j, k in enumerate(KEYS)},
            "IDF1": {"mean": float(idf1(tots).mean())},
            "IDF1_with_cosine_IDFP": {"mean": float(idf1(tots, cos_tot[2]).mean()),
                                      "range": [float(idf1(tots, cos_tot[2]).min()),
                                                float(idf1(tots, cos_tot[2]).max())]},
            "minus_cosine": {
                "IDTP": interval(lambda t, c: t[0] - c[0], lambda t, c: t[:, 0] - c[:, 0]),
                "IDFP": interval(lambda t, c: t[2] - c[2], lambda t, c: t[:, 2] - c[:, 2]),
                "IDF1": interval(lambda t, c: idf1(t) - idf1(c), lambda t, c: idf1(t) - idf1(c)),
                "IDF1_with_cosine_IDFP": interval(lambda t, c: idf1(t, c[2]) - idf1(c),
                                                  lambda t, c: idf1(t, c[:, 2]) - idf1(c))}}
    return out


def main(argv=None) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", nargs="+", type=Path,
                    default=[RESULTS / "denoise_ablation.json", RESULTS / "denoise_ablation_3000.json"])
    ap.add_argument("--out", type=Path, default=RESULTS / "denoise_decomposition.json")
    ap.add_argument("--bootstrap", type=int, default=2000)
    a = ap.parse_args(argv)
    result = {}
    for p in a.inputs:
        rep = json.loads(p.read_text())
        if "per_video" not in rep.get("cosine_association", {}):
            print(f"{p.name}: no per-video cosine association counts, skipped")
            continue
        result[p.stem] = {"iters": rep["protocol"]["iters"], **decompose(rep, a.bootstrap)}
    a.out.write_text(json.dumps(result, indent=1))
    for name, d in result.items():
        c = d["cosine"]
        print(f"\n{name} ({d['iters']} iterations); cosine: IDTP {c['IDTP']} IDFN {c['IDFN']} IDFP {c['IDFP']} "
              f"IDF1 {c['IDF1']:.1f}")
        print("| arm | IDTP - cosine | IDFP - cosine | IDF1 - cosine | IDF1 with cosine's IDFP - cosine |\n"
              "|---|---|---|---|---|")
        for arm, v in d.items():
            if arm in ("cosine", "iters"):
                continue
            m = v["minus_cosine"]
            print(f"| {arm} | " + " | ".join(f"{m[k]['diff']:+.1f} [{m[k]['ci95'][0]:+.1f}, {m[k]['ci95'][1]:+.1f}]"
                                             for k in ("IDTP", "IDFP", "IDF1", "IDF1_with_cosine_IDFP")) + " |")
    return result


if __name__ == "__main__":
    main()
