"""Learning curve of the DVIS++ tracker on the denoising study's data: when does a trained tracker beat
segmenter-only (cosine) association, and does query noise help there?

Protocol (``denoise_ablation.py``'s data and frozen in-domain segmenter, shared through ``--work``):

- Runs: arm (``none`` / ``shuffle``) x tracker init (``fresh``: the official module initialisation, xavier on the
  attention / FFN layers and c2_xavier on ``ref_proj``; ``model``: ``dvis-tiny-shapes``' tracker) x lr (1e-4, the
  official, and 5e-4) x seed, trained in the order of :data:`PRIORITY` (most informative comparisons first).
  Every run is ONE schedule of ``--iters`` (default 20k) iterations (official shape: warm-up 10, lr x0.1 at 70%,
  segmenter matching for the first half) evaluated every ``--eval-every`` (2k) iterations and at 0, so a point
  at budget b is b iterations of a 20k schedule, not a run of budget b.
- Evaluation: the 60 validation videos of 24 frames; per side (``tracker``, ``swap`` = tracker class scores with
  the segmenter's masks, ``cosine`` = segmenter-only association, computed once): video AP, per-video AP, and at
  score thresholds 0.1..0.9: IDF1, HOTA / DetA / AssA, IDTP / IDFN / IDFP, ID switches (``tracker_sweep.py``).
- Analysis (:func:`summarise`): per budget, every side at 0.3 and at its own best threshold; paired bootstrap 95%
  intervals (validation videos, and seeds where there are several) of tracker - cosine (AP per video, IDF1 at each
  side's best threshold) and of shuffle - none.

Everything lives under ``--work`` (``curve/<run>/``: training checkpoints every ``--ckpt-every`` iterations,
``eval_<iter>.json``); the results JSON is rewritten after every evaluation. A killed run resumes from its last
checkpoint when the same command is run again:

    OMP_NUM_THREADS=1 nohup python benchmarks/tracker_curve.py --threads 1 --work /work/study_work \
        >> /work/study_work/curve.log 2>&1 &
    python benchmarks/tracker_curve.py --quick --work /tmp/qc --out /tmp/qc.json      # smoke test (seconds)
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dvis_sdk.training import DenoisingTrainer  # noqa: E402
from dvis_sdk.training.datasets import YTVISAnnotations  # noqa: E402
from tracker_sweep import best_threshold, score_side, side_results  # noqa: E402


def _study():
    spec = importlib.util.spec_from_file_location("denoise_ablation", ROOT / "benchmarks" / "denoise_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


STUDY = _study()
NOISE = {"none": "none", "shuffle": "rs"}


class Run(NamedTuple):
    init: str
    lr: float
    arm: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.init}_lr{self.lr:g}_{self.arm}_s{self.seed}"


_CELLS = [("fresh", 5e-4), ("model", 5e-4), ("fresh", 1e-4), ("model", 1e-4)]
# fresh init at the faster lr first (the official recipe's init; the one most likely to converge in 20k), both arms,
# two paired seeds; then one seed of each other cell; then their second seeds; then a third seed of the first cell
PRIORITY: List[Run] = (
    [Run("fresh", 5e-4, arm, s) for s in (0, 1) for arm in ("none", "shuffle")]
    + [Run(i, lr, arm, 0) for i, lr in _CELLS[1:] for arm in ("none", "shuffle")]
    + [Run(i, lr, arm, 1) for i, lr in _CELLS[1:] for arm in ("none", "shuffle")]
    + [Run("fresh", 5e-4, arm, 2) for arm in ("none", "shuffle")])


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/work/study_work"),
                    help="the denoising study's work dir (data, segmenter, caches); the curve goes in work/curve")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tracker_curve.json")
    ap.add_argument("--iters", type=int, default=20000)
    ap.add_argument("--eval-every", type=int, default=2000)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--runs", nargs="+", default=None, help="run names (default: all, in priority order)")
    ap.add_argument("--max-runs", type=int, default=None, help="only the first N runs of the priority order")
    ap.add_argument("--noise-ratio", type=float, default=0.5)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary-only", action="store_true", help="rewrite the results JSON from stored evaluations")
    ap.add_argument("--quick", action="store_true", help="CI smoke: tiny data, 4 iterations, 2 runs")
    a = ap.parse_args(argv)
    if a.quick:
        a.iters, a.eval_every, a.ckpt_every, a.bootstrap = 4, 2, 2, 50
        a.runs = a.runs or [PRIORITY[0].name, PRIORITY[1].name]
    if a.eval_every % a.ckpt_every or a.iters % a.eval_every:
        ap.error("--ckpt-every must divide --eval-every, which must divide --iters")
    return a


def selected_runs(a) -> List[Run]:
    runs = PRIORITY if a.runs is None else [r for r in PRIORITY if r.name in a.runs]
    unknown = set(a.runs or ()) - {r.name for r in PRIORITY}
    if unknown:
        raise SystemExit(f"unknown run(s) {sorted(unknown)}; choose from: {' '.join(r.name for r in PRIORITY)}")
    return runs[: a.max_runs] if a.max_runs else runs


def official_tracker_init(tracker: nn.Module, seed: int) -> None:
    """Re-initialise a DVIS++ tracker as the official ``ReferringTracker_noiser`` constructor does: PyTorch's
    default initialisation of every layer, then xavier-uniform on the matrices of the attention and FFN layers
    (their ``_reset_parameters``) and c2_xavier_fill (kaiming-uniform a=1, zero bias) on ``ref_proj``."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in tracker.modules():
            if isinstance(m, nn.MultiheadAttention):
                m._reset_parameters()
            elif isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)):
                m.reset_parameters()
        for name in ("transformer_self_attention_layers", "transformer_cross_attention_layers",
                     "transformer_ffn_layers"):
            for p in getattr(tracker, name).parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for layer in tracker.ref_proj.layers:
            nn.init.kaiming_uniform_(layer.weight, a=1)
            nn.init.zeros_(layer.bias)


class CurveTrainer(DenoisingTrainer):
    """The tracker trainer, stopping at ``stop_at`` (an evaluation point) instead of the end of its schedule."""

    stop_at: Optional[int] = None

    def _batches(self, start: int):
        from dvis_sdk.io import prefetch

        end = min(self.stop_at or self.cfg.iters, self.cfg.iters)
        gen = ((it, [self._micro_batch(it, m) for m in range(self.cfg.grad_accum)]) for it in range(start, end))
        return prefetch(gen, depth=2)


def train_config(base, a, run: Run):
    return dataclasses.replace(STUDY.train_cfg(base, a.iters, run.seed), lr=run.lr, ckpt_every=a.ckpt_every,
                               log_every=max(a.ckpt_every // 5, 1), keep_checkpoints=2)


def evaluate_point(model, ctx: Dict[str, Any], sides=("tracker", "swap")) -> Dict[str, Any]:
    res = side_results(copy.deepcopy(model), ctx["ann"], ctx["seg_paths"], STUDY.to_results, sides)
    return {s: score_side(ctx["gt"], res[s]) for s in sides}


def run_curve(a, base, run: Run, ctx: Dict[str, Any]) -> None:
    rdir = a.work / "curve" / run.name
    points = [k for k in range(0, a.iters + 1, a.eval_every) if not (rdir / f"eval_{k:06d}.json").is_file()]
    if not points:
        return
    model = copy.deepcopy(ctx["seg_model"])
    if run.init == "fresh":
        # paired: the arms of one seed start from the same tracker; seeds differ in initialisation too
        official_tracker_init(model.tracker, 1234 + run.seed)
    trainer = CurveTrainer(model, ctx["data"], rdir / "train", train_config(base, a, run), noise=NOISE[run.arm],
                           noise_ratio=a.noise_ratio, cache=a.work / "train_segments")
    rdir.mkdir(parents=True, exist_ok=True)
    if (rdir / "train" / "checkpoints" / "last").is_file():
        trainer.resume()
    for k in points:
        if trainer.iter > k:  # a checkpoint past an evaluation that was lost: the point cannot be redone exactly
            print(json.dumps({"run": run.name, "skipped_eval": k, "reached": trainer.iter}), flush=True)
            continue
        t0 = time.perf_counter()
        if trainer.iter < k:
            trainer.stop_at = k
            trainer.train()
        train_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        ev = {"iter": k, "run": run._asdict(), "train_s": round(train_s, 1), "segmenter": ctx["fingerprint"],
              **evaluate_point(trainer.model, ctx)}
        ev["eval_s"] = round(time.perf_counter() - t1, 1)
        (rdir / f"eval_{k:06d}.json").write_text(json.dumps(ev))
        print(json.dumps({"run": run.name, "iter": k, "train_s": ev["train_s"], "eval_s": ev["eval_s"],
                          **{s: brief(ev[s]) for s in ("tracker", "swap")}}), flush=True)
        write_report(a, ctx)


def brief(side: Dict[str, Any]) -> Dict[str, Any]:
    """AP, and IDF1 / AssA / IDTP / IDFP at 0.3 and at the side's best threshold."""
    sw, best = side["sweep"], best_threshold(side["sweep"])
    keys = ("IDF1", "AssA", "HOTA", "IDTP", "IDFP", "IDFN", "IDSW")
    return {"AP": round(side["AP"], 2), "AP50": round(side["AP50"], 2),
            "at_0.3": {k: round(sw["0.3"][k], 2) for k in keys},
            "best_thr": float(best), "at_best": {k: round(sw[best][k], 2) for k in keys}}


# ------------------------------------------------------------------------------------------------ analysis
def _arrays(side: Dict[str, Any]) -> Dict[str, np.ndarray]:
    return {"AP": np.asarray(side["per_video_AP"], dtype=float),
            **{t: np.asarray(m["per_video"], dtype=float) for t, m in side["sweep"].items()}}


def _metric(arr: Dict[str, np.ndarray], key: str, idx: np.ndarray) -> np.ndarray:
    """Per bootstrap draw (rows of ``idx``, video indices): mean per-video AP (``key="AP"``) or pooled IDF1 at
    threshold ``key``."""
    if key == "AP":
        return arr["AP"][idx].mean(-1)
    tot = arr[key][idx].sum(-2)  # (..., 5): IDTP, IDFN, IDFP, IDSW, CLR_TP
    return 100 * 2 * tot[..., 0] / np.maximum(2 * tot[..., 0] + tot[..., 1] + tot[..., 2], 1)


def compare(evs_a: Dict[int, dict], evs_b: Dict[int, dict], side_a: str, side_b: str, b: int, rng
            ) -> Dict[str, Any]:
    """Paired bootstrap 95% intervals of (a - b), resampling validation videos and the shared seeds: per-video AP,
    IDF1 at each one's best threshold (chosen per seed on the whole validation set), IDF1 at 0.3."""
    seeds = sorted(set(evs_a) & set(evs_b))
    arr_a = [_arrays(evs_a[s][side_a]) for s in seeds]
    arr_b = [_arrays(evs_b[s][side_b]) for s in seeds]
    best_a = [best_threshold(evs_a[s][side_a]["sweep"]) for s in seeds]
    best_b = [best_threshold(evs_b[s][side_b]["sweep"]) for s in seeds]
    nv = len(arr_a[0]["AP"])
    full = np.arange(nv)[None]
    idx = rng.integers(0, nv, size=(b, nv))
    pick = rng.integers(0, len(seeds), size=(b, len(seeds)))
    out: Dict[str, Any] = {}
    for name, ka, kb in (("AP_per_video", ["AP"] * len(seeds), ["AP"] * len(seeds)),
                         ("IDF1_best", best_a, best_b), ("IDF1_0.3", ["0.3"] * len(seeds), ["0.3"] * len(seeds))):
        d = np.stack([_metric(arr_a[j], ka[j], idx) - _metric(arr_b[j], kb[j], idx) for j in range(len(seeds))])
        point = float(np.mean([(_metric(arr_a[j], ka[j], full) - _metric(arr_b[j], kb[j], full))[0]
                               for j in range(len(seeds))]))
        draws = d[pick, np.arange(b)[:, None]].mean(1)
        lo, hi = np.percentile(draws, [2.5, 97.5])
        out[name] = {"diff": round(point, 3), "ci95": [round(float(lo), 3), round(float(hi), 3)],
                     "seeds": len(seeds)}
    return out


def load_evals(a, fingerprint: str) -> Dict[str, Dict[int, dict]]:
    """Stored evaluations of the runs, those of another segmenter left out (with a note)."""
    out: Dict[str, Dict[int, dict]] = {}
    for r in PRIORITY:
        d = a.work / "curve" / r.name
        for p in sorted(d.glob("eval_*.json")) if d.is_dir() else []:
            ev = json.loads(p.read_text())
            if ev.get("segmenter", fingerprint) != fingerprint:
                print(f"{p}: evaluated with another segmenter ({ev['segmenter']}), left out", flush=True)
                continue
            out.setdefault(r.name, {})[int(p.stem.split("_")[1])] = ev
    return out


def summarise(a, evals: Dict[str, Dict[int, dict]], cosine: Dict[str, Any]) -> Dict[str, Any]:
    rng = np.random.default_rng(0)
    table, comparisons = [], []
    for r in PRIORITY:
        for k, ev in sorted(evals.get(r.name, {}).items()):
            table.append({"run": r.name, **r._asdict(), "iter": k, "train_s": ev["train_s"],
                          **{s: brief(ev[s]) for s in ("tracker", "swap")}})
    cells = {(r.init, r.lr) for r in PRIORITY}
    for init, lr in sorted(cells):
        by = {arm: {r.seed: evals.get(r.name, {}) for r in PRIORITY if (r.init, r.lr, r.arm) == (init, lr, arm)}
              for arm in NOISE}
        iters = sorted({k for runs in by.values() for e in runs.values() for k in e})
        for k in iters:
            at = {arm: {s: e[k] for s, e in runs.items() if k in e} for arm, runs in by.items()}
            row: Dict[str, Any] = {"init": init, "lr": lr, "iter": k}
            for arm, evs in at.items():
                if evs:
                    cos = {s: {"cosine": cosine} for s in evs}
                    row[f"{arm}-cosine"] = compare(evs, cos, "tracker", "cosine", a.bootstrap, rng)
                    row[f"{arm}_swap-cosine"] = compare(evs, cos, "swap", "cosine", a.bootstrap, rng)
            if at["none"] and at["shuffle"] and set(at["none"]) & set(at["shuffle"]):
                row["shuffle-none"] = compare(at["shuffle"], at["none"], "tracker", "tracker", a.bootstrap, rng)
            comparisons.append(row)
    return {"table": table, "comparisons": comparisons}


def write_report(a, ctx: Dict[str, Any]) -> Dict[str, Any]:
    evals = load_evals(a, ctx["fingerprint"])
    cos = ctx["cosine"]
    report = {"protocol": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
              "priority": [r.name for r in PRIORITY],
              "data": {"preset": "lookalike", "train": "160 videos x 12 frames (seed 1000)",
                       "val": "60 videos x 24 frames (seed 2000)"} if not a.quick else "quick",
              "segmenter_fingerprint": ctx["fingerprint"],
              "segmenter_per_frame_AP": ctx["per_frame_AP"],
              "cosine": {"AP": cos["AP"], "AP50": cos["AP50"], **brief(cos),
                         "sweep": {t: {k: v for k, v in m.items() if k != "per_video"}
                                   for t, m in cos["sweep"].items()}},
              "sweeps": {n: {k: {s: {t: {m: v for m, v in x.items() if m != "per_video"}
                                     for t, x in ev[s]["sweep"].items()} for s in ("tracker", "swap")}
                             for k, ev in e.items()} for n, e in evals.items()},
              **summarise(a, evals, cos)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(a.out)
    return report


def context(a, base) -> Dict[str, Any]:
    """Data, frozen segmenter, validation caches, segmenter-only (cosine) scores: shared by every run."""
    from dvis_sdk.training.fingerprint import segmenter_fingerprint

    dirs = STUDY.make_data(base)
    seg_model = STUDY.segmenter_model(base, dirs)
    ann = YTVISAnnotations(dirs["val"] / "annotations.json", dirs["val"] / "JPEGImages")
    gt = json.loads((dirs["val"] / "annotations.json").read_text())
    seg_paths = STUDY.val_segments(seg_model, ann, a.work / "val_segments")
    fp = segmenter_fingerprint(seg_model)
    ctx = {"seg_model": seg_model, "ann": ann, "gt": gt, "seg_paths": seg_paths, "fingerprint": fp,
           "data": STUDY.dataset(dirs, "train", seg_model, 5)}
    base_file = a.work / "curve" / f"cosine_{fp}.json"
    if base_file.is_file():
        stored = json.loads(base_file.read_text())
    else:
        t0 = time.perf_counter()
        stored = {"cosine": evaluate_point(seg_model, ctx, sides=("cosine",))["cosine"],
                  "per_frame_AP": STUDY.per_frame_ap(seg_model, ann, seg_paths, gt)}
        stored["eval_s"] = round(time.perf_counter() - t0, 1)
        base_file.parent.mkdir(parents=True, exist_ok=True)
        base_file.write_text(json.dumps(stored))
    ctx.update(cosine=stored["cosine"], per_frame_AP=stored["per_frame_AP"])
    return ctx


def main(argv=None) -> Dict[str, Any]:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    base = STUDY.parse(["--work", str(a.work), "--threads", str(a.threads)] + (["--quick"] if a.quick else []))
    a.work.mkdir(parents=True, exist_ok=True)
    ctx = context(a, base)
    print(json.dumps({"segmenter_per_frame_AP": ctx["per_frame_AP"], "cosine": brief(ctx["cosine"])}), flush=True)
    if not a.summary_only:
        for run in selected_runs(a):
            run_curve(a, base, run, ctx)
    report = write_report(a, ctx)
    print_table(report)
    return report


def print_table(report: Dict[str, Any]) -> None:
    """Markdown: segmenter-only association over the threshold sweep, then per (init, lr, budget, arm) the mean over
    seeds of the tracker at its best threshold, the swap, and the paired intervals against segmenter-only."""
    c = report["cosine"]
    print("\n| segmenter-only (cosine) | " + " | ".join(c["sweep"]) + " |\n|---|" + "---|" * len(c["sweep"]))
    for k in ("IDF1", "AssA", "IDTP", "IDFP"):
        print(f"| {k} | " + " | ".join(f"{m[k]:.1f}" if k in ("IDF1", "AssA") else f"{m[k]}"
                                       for m in c["sweep"].values()) + " |")
    print(f"AP {c['AP']:.1f}; best IDF1 {c['at_best']['IDF1']:.1f} at {c['best_thr']:g}")
    rows: Dict[tuple, List[dict]] = {}
    for r in report["table"]:
        rows.setdefault((r["init"], r["lr"], r["iter"], r["arm"]), []).append(r)
    comp = {(x["init"], x["lr"], x["iter"]): x for x in report["comparisons"]}
    print("\n| init | lr | iter | arm | seeds | AP | IDF1 @0.3 | IDF1 @best (thr) | AssA @best | IDTP / IDFP @best | "
          "swap AP / IDF1 @best | tracker - cosine: AP/video, IDF1 @best | swap - cosine IDF1 @best |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    mean = lambda rs, f: float(np.mean([f(r) for r in rs]))  # noqa: E731
    fmt = lambda d: f"{d['diff']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"  # noqa: E731
    for (init, lr, it, arm), rs in sorted(rows.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2], kv[0][3])):
        t = lambda f, rs=rs: mean(rs, lambda row: f(row["tracker"]))  # noqa: E731
        cm = comp.get((init, lr, it), {})
        vs, sw = cm.get(f"{arm}-cosine"), cm.get(f"{arm}_swap-cosine")
        thr = "/".join(f"{r['tracker']['best_thr']:g}" for r in rs)
        print(f"| {init} | {lr:g} | {it} | {arm} | {len(rs)} | {t(lambda x: x['AP']):.1f} | "
              f"{t(lambda x: x['at_0.3']['IDF1']):.1f} | {t(lambda x: x['at_best']['IDF1']):.1f} ({thr}) | "
              f"{t(lambda x: x['at_best']['AssA']):.1f} | {t(lambda x: x['at_best']['IDTP']):.0f} / "
              f"{t(lambda x: x['at_best']['IDFP']):.0f} | {mean(rs, lambda r: r['swap']['AP']):.1f} / "
              f"{mean(rs, lambda r: r['swap']['at_best']['IDF1']):.1f} | "
              + (f"{fmt(vs['AP_per_video'])}, {fmt(vs['IDF1_best'])} | {fmt(sw['IDF1_best'])} |" if vs else "| |"))
    for (init, lr, it), cm in sorted(comp.items()):
        if "shuffle-none" in cm:
            d = cm["shuffle-none"]
            print(f"shuffle - none, {init} lr {lr:g} at {it}: AP/video {fmt(d['AP_per_video'])}, IDF1 @best "
                  f"{fmt(d['IDF1_best'])}, IDF1 @0.3 {fmt(d['IDF1_0.3'])} ({d['AP_per_video']['seeds']} seeds)")


if __name__ == "__main__":
    main()
