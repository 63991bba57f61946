"""Denoising study: does query noise help the DVIS++ tracker associate look-alike objects?

Protocol (every step checkpointed under ``--work``; a killed run resumes where it stopped):

1. Data: the ``lookalike`` synthetic preset (one class per video, one colour, similar sizes, paths aimed at each
   other: crossings, occlusions, objects leaving / appearing). Training videos of 12 frames (5-frame clips, as
   the official online stage), >= 50 validation videos of 24 frames (longer than the clips), other seeds.
2. A frozen, in-domain segmenter: ``dvis-tiny-shapes``' segmenter fine-tuned on the training videos
   (``SegmenterTrainer``, Mask2Former losses + re-id, ``--seg-iters`` at ``--seg-lr``); its per-frame AP (every
   third frame a one-frame video) is reported.
3. Baseline: plain cosine-similarity association of the segmenter's embeddings (Hungarian, frame to frame; the
   tracker's own re-ordering, no tracker layers). If it does not confuse identities the data cannot show anything.
4. Arms, same budget, same initial tracker, official recipe (consistent matcher, early matching on the segmenter,
   ``loss_reid``): ``none``, ``wa``, ``cc``, ``shuffle`` and ``two_stage`` (no noise for half the iterations, then
   ``wa``), each with the same seeds (paired: same data order, initialisation and loss draws; the noise has its
   own generator).
5. Metrics on the validation split: video AP (``evaluate_ytvis``), IDF1, HOTA / AssA, identity switches per
   matched object-frame (``dvis_sdk.evaluation.tracking``). Per arm mean +- std over seeds, and a paired bootstrap
   95% interval of (arm - none) and of (arm - cosine association), resampling seeds and validation videos (AP:
   mean per-video AP).

    python benchmarks/denoise_ablation.py --threads 1     # full study (~2 h on 2 cores); writes
                                                          # benchmarks/results/denoise_ablation.json
    python benchmarks/denoise_ablation.py --quick --out /tmp/q.json --work /tmp/q   # smoke test (seconds)
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvis_sdk import VideoSegmenter  # noqa: E402
from dvis_sdk.evaluation import evaluate_ytvis  # noqa: E402
from dvis_sdk.evaluation.tracking import tracking_metrics  # noqa: E402
from dvis_sdk.training import DenoisingTrainer, SegmenterTrainer, TrainConfig, VideoClipDataset  # noqa: E402
from dvis_sdk.training.datasets import YTVISAnnotations, load_frame  # noqa: E402
from dvis_sdk.training.fingerprint import segmenter_fingerprint  # noqa: E402
from dvis_sdk.training.noise import attach_noiser  # noqa: E402
from dvis_sdk.training.stages.tracker import reorder_segmenter_outputs  # noqa: E402
from dvis_sdk.training.synthetic import PRESETS, generate_ytvis  # noqa: E402
from dvis_sdk.training.utils import pad_clips  # noqa: E402

ARMS: Dict[str, List[tuple]] = {"none": [("none", 1.0)], "wa": [("wa", 1.0)], "cc": [("cc", 1.0)],
                                "shuffle": [("rs", 1.0)], "two_stage": [("none", 0.5), ("wa", 0.5)]}
METRICS = ("AP", "AP50", "AP75", "IDF1", "HOTA", "AssA", "idsw_per_matched")


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="dvis-tiny-shapes", help="segmenter + initial tracker (name or folder)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dvis_denoise_study"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "denoise_ablation.json")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=1000, help="tracker iterations per arm and seed")
    ap.add_argument("--seg-iters", type=int, default=3000, help="segmenter fine-tuning iterations")
    ap.add_argument("--seg-lr", type=float, default=1e-3, help="segmenter lr (the tiny model's own training lr)")
    ap.add_argument("--seg-backbone-multiplier", type=float, default=1.0,
                    help="the tiny backbone was trained from scratch, so it is not slowed down (official: 0.1)")
    ap.add_argument("--noise-ratio", type=float, default=0.5, help="official online configs: 0.5 at 40k iterations")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--num-points", type=int, default=1024)
    ap.add_argument("--train-videos", type=int, default=160)
    ap.add_argument("--val-videos", type=int, default=60)
    ap.add_argument("--val-frames", type=int, default=24)
    ap.add_argument("--tracker-init", choices=("model", "fresh"), default="model")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="CI smoke: tiny data, 2 iterations, one seed")
    a = ap.parse_args(argv)
    if a.quick:
        a.seeds, a.iters, a.seg_iters, a.train_videos, a.val_videos, a.val_frames, a.bootstrap = \
            [0], 2, 1, 3, 2, 6, 50
    return a


# ------------------------------------------------------------------------------------------------ data + models
def make_data(a) -> Dict[str, Path]:
    cfg = PRESETS["lookalike"]
    dirs = {"train": a.work / "train", "val": a.work / "val"}
    if not (dirs["train"] / "annotations.json").is_file():
        generate_ytvis(dirs["train"], a.train_videos, seed=1000, config=dataclasses.replace(cfg, num_frames=12))
    if not (dirs["val"] / "annotations.json").is_file():
        generate_ytvis(dirs["val"], a.val_videos, seed=2000, config=dataclasses.replace(cfg, num_frames=a.val_frames))
    return dirs


def dataset(dirs, split: str, model, frames: int) -> VideoClipDataset:
    d = dirs[split]
    return VideoClipDataset.from_files(d / "annotations.json", d / "JPEGImages", num_frames=frames,
                                       frame_range=frames // 2, min_sizes=(model.cfg.input.min_size_test,),
                                       max_size=model.cfg.input.max_size_test)


def train_cfg(a, iters: int, seed: int) -> TrainConfig:
    return TrainConfig(iters=iters, batch_size=a.batch_size, lr=a.lr, num_points=a.num_points, seed=seed,
                       ckpt_every=max(iters // 4, 1), log_every=max(iters // 10, 1), progress=False, device="cpu")


def segmenter_model(a, dirs):
    """The frozen segmenter: the base model's, fine-tuned in-domain (cached in ``work/segmenter``)."""
    out = a.work / "segmenter"
    if (out / "DONE").is_file():
        return VideoSegmenter.from_pretrained(out, mode="online").model
    model = VideoSegmenter.from_pretrained(a.model, mode="online").model
    cfg = dataclasses.replace(train_cfg(a, a.seg_iters, 0), lr=a.seg_lr, batch_size=4,
                              backbone_multiplier=a.seg_backbone_multiplier, warmup_iters=min(50, a.seg_iters),
                              warmup_factor=0.01, steps=(int(0.85 * a.seg_iters),))
    trainer = SegmenterTrainer(model, dataset(dirs, "train", model, 2), out, cfg)
    trainer.train(resume=(out / "checkpoints" / "last").is_file())
    (out / "DONE").write_text("ok")
    return VideoSegmenter.from_pretrained(out, mode="online").model


# ------------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def val_segments(model, ann: YTVISAnnotations, cache: Path) -> List[Dict[str, torch.Tensor]]:
    """The frozen segmenter's outputs on every validation video (cached on disk under ``cache/<segmenter
    fingerprint>``: a work dir reused with another segmenter recomputes them)."""
    cache = cache / segmenter_fingerprint(model)
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for i, v in enumerate(ann.videos):
        p = cache / f"{i}.pt"
        if not p.is_file():
            frames = torch.from_numpy(np.stack([load_frame(ann.frames_root / f) for f in v.file_names]))
            images = pad_clips([frames.permute(0, 3, 1, 2).float()], model.cfg.input.pixel_mean,
                               model.cfg.input.pixel_std, model.cfg.input.size_divisibility)
            seg = model.segment(images)
            torch.save({k: seg[k].contiguous() for k in ("pred_embds", "pred_embds_without_norm", "pred_logits",
                                                         "pred_masks", "mask_features")}, p.with_suffix(".tmp"))
            p.with_suffix(".tmp").replace(p)  # a run killed mid-write leaves no partial file behind
        out.append(p)
    return out  # paths; loaded one at a time


def _rles(masks: torch.Tensor) -> List[dict]:
    from pycocotools import mask as mask_util

    rles = []
    for m in masks.numpy().astype(np.uint8):
        r = mask_util.encode(np.asfortranarray(m))
        r["counts"] = r["counts"].decode("ascii")
        rles.append(r)
    return rles


def to_results(logits: torch.Tensor, masks: torch.Tensor, hw, video_id, top_k: int = 10) -> List[dict]:
    """Official DVIS++ online post-processing on raw outputs: time-averaged class logits -> softmax, the top-k
    (query, class) pairs, masks upsampled to the padded size, cropped. logits (T, Q, K+1), masks (Q, T, h, w)."""
    k = logits.shape[-1] - 1
    scores = logits.float().mean(0).softmax(-1)[:, :-1].flatten()
    top = scores.topk(min(top_k, scores.numel()))
    out = []
    for s, flat in zip(top.values.tolist(), top.indices.tolist()):
        q, c = divmod(flat, k)
        m = F.interpolate(masks[q][None].float(), scale_factor=4, mode="bilinear", align_corners=False)[0]
        out.append({"video_id": video_id, "category_id": c + 1, "score": s, "track_id": q,
                    "segmentations": _rles(m[:, :hw[0], :hw[1]] > 0)})
    return out


def evaluate(model, ann, seg_paths, gt: dict, *, tracker: bool) -> Dict[str, Any]:
    """Video AP + association metrics of the tracker (or, ``tracker=False``, of plain cosine association)."""
    model.eval()
    attach_noiser(model.tracker, "none", 0.0)
    results, per_video_ap = [], []
    for v, p in zip(ann.videos, seg_paths):
        seg = torch.load(p, weights_only=True)
        with torch.no_grad():
            out, _, idx = model.tracker(seg["pred_embds"], seg["mask_features"][None], None,
                                        frame_embeds_no_norm=seg["pred_embds_without_norm"])
        if not tracker:  # the tracker's Hungarian re-ordering of the segmenter queries = cosine association
            out = reorder_segmenter_outputs(seg["pred_logits"], seg["pred_masks"], idx if idx.dim() == 2 else idx[:, 0])
        res = to_results(out["pred_logits"][0], out["pred_masks"][0], (v.height, v.width), v.id)
        results += res
        one = {**gt, "videos": [x for x in gt["videos"] if x["id"] == v.id],
               "annotations": [x for x in gt["annotations"] if x["video_id"] == v.id]}
        per_video_ap.append(float(evaluate_ytvis(one, res)["AP"]))
    m = {k: float(evaluate_ytvis(gt, results)[k]) for k in ("AP", "AP50", "AP75")}
    t = tracking_metrics(gt, results, per_video=True)
    m.update({k: t[k] for k in ("IDF1", "HOTA", "AssA", "id_switches", "matched", "gt_dets")})
    m["idsw_per_matched"] = t["id_switches_per_matched"]
    m["per_video"] = [{**c, "AP": ap} for c, ap in zip(t["per_video"], per_video_ap)]
    return m


def per_frame_ap(model, ann, seg_paths, gt: dict, every: int = 3) -> float:
    """Segmenter AP with every (``every``-th) validation frame as a one-frame video (top-10 queries per frame)."""
    vids, anns, results = [], [], []
    for v, p in zip(ann.videos, seg_paths):
        seg = torch.load(p, weights_only=True)
        src = [a for a in gt["annotations"] if a["video_id"] == v.id]
        for t in range(0, len(v.file_names), every):
            fid = v.id * 1000 + t
            vids.append({"id": fid, "height": v.height, "width": v.width, "length": 1,
                         "file_names": [v.file_names[t]]})
            anns += [{**{k: x for k, x in a.items() if k not in ("areas", "bboxes")}, "id": a["id"] * 1000 + t,
                      "video_id": fid, "segmentations": [a["segmentations"][t]]}
                     for a in src if a["segmentations"][t] is not None]
            results += to_results(seg["pred_logits"][0, t:t + 1], seg["pred_masks"][0, :, t:t + 1],
                                  (v.height, v.width), fid)
    return float(evaluate_ytvis({**gt, "videos": vids, "annotations": anns}, results)["AP"])


# ------------------------------------------------------------------------------------------------ arms
def run_arm(a, arm: str, seed: int, seg_model, dirs, ann, seg_paths, gt) -> Dict[str, Any]:
    run = a.work / "runs" / f"{arm}_s{seed}"
    if (run / "result.json").is_file():
        return json.loads((run / "result.json").read_text())
    model = copy.deepcopy(seg_model)
    torch.manual_seed(1234)  # the same initial tracker for every arm and seed
    if a.tracker_init == "fresh":
        for mod in model.tracker.modules():
            if hasattr(mod, "reset_parameters") and mod is not model.tracker:
                mod.reset_parameters()
    data = dataset(dirs, "train", model, 5)
    t0 = time.perf_counter()
    for k, (mode, share) in enumerate(ARMS[arm]):
        n = max(int(round(a.iters * share)), 1)
        stage = run / f"stage{k}"
        if (stage / "DONE").is_file():
            done_model = VideoSegmenter.from_pretrained(stage, mode="online").model
            model.tracker.load_state_dict(done_model.tracker.state_dict())
            continue
        tr = DenoisingTrainer(model, data, stage, train_cfg(a, n, seed), noise=mode, noise_ratio=a.noise_ratio,
                              cache=a.work / "train_segments")
        tr.train(resume=(stage / "checkpoints" / "last").is_file())
        (stage / "DONE").write_text("ok")
    m = evaluate(model, ann, seg_paths, gt, tracker=True)
    m.update(arm=arm, seed=seed, train_s=round(time.perf_counter() - t0, 1), iters=a.iters)
    (run / "result.json").write_text(json.dumps(m))
    return m


# ------------------------------------------------------------------------------------------------ statistics
def _stat(per_video: List[dict], idx: np.ndarray, metric: str) -> float:
    rows = [per_video[i] for i in idx]
    s = lambda k: float(sum(r[k] for r in rows))  # noqa: E731
    if metric == "IDF1":
        return 100 * 2 * s("IDTP") / max(2 * s("IDTP") + s("IDFN") + s("IDFP"), 1)
    if metric == "idsw_per_matched":
        return s("IDSW") / max(s("CLR_TP"), 1)
    return float(np.mean([r["AP"] for r in rows]))  # "AP_per_video"


def paired_bootstrap(arm_runs: Dict[int, dict], base_runs: Dict[int, dict], metric: str, b: int,
                     rng: np.random.Generator) -> Dict[str, Any]:
    seeds = sorted(set(arm_runs) & set(base_runs))
    nv = len(base_runs[seeds[0]]["per_video"])
    full = np.arange(nv)
    diff = float(np.mean([_stat(arm_runs[s]["per_video"], full, metric) - _stat(base_runs[s]["per_video"], full,
                                                                                    metric) for s in seeds]))
    draws = []
    for _ in range(b):
        ss = rng.choice(seeds, size=len(seeds))
        vv = rng.integers(0, nv, size=nv)
        draws.append(np.mean([_stat(arm_runs[s]["per_video"], vv, metric) - _stat(base_runs[s]["per_video"], vv,
                                                                                    metric) for s in ss]))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"diff": diff, "ci95": [float(lo), float(hi)]}


def summarise(runs: List[dict], a, cosine: Dict[str, Any]) -> Dict[str, Any]:
    by: Dict[str, Dict[int, dict]] = {}
    for r in runs:
        by.setdefault(r["arm"], {})[r["seed"]] = r
    summary = {arm: {m: {"mean": float(np.mean([r[m] for r in rs.values()])),
                         "std": float(np.std([r[m] for r in rs.values()], ddof=1)) if len(rs) > 1 else 0.0}
                     for m in METRICS} for arm, rs in by.items()}
    rng = np.random.default_rng(0)
    keys = ("AP_per_video", "IDF1", "idsw_per_matched")
    vs = {}
    if "none" in by:
        for arm, rs in by.items():
            if arm != "none":
                vs[arm] = {m: paired_bootstrap(rs, by["none"], m, a.bootstrap, rng) for m in keys}
    # does a trained tracker associate better than its own segmenter's embeddings? (the same for every seed)
    vs_cos = {arm: {m: paired_bootstrap(rs, {s: cosine for s in rs}, m, a.bootstrap, rng) for m in keys}
              for arm, rs in by.items()}
    return {"summary": summary, "vs_none": vs, "vs_cosine_association": vs_cos}


def main(argv=None) -> Dict[str, Any]:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    a.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dirs = make_data(a)
    seg_model = segmenter_model(a, dirs)
    ann = YTVISAnnotations(dirs["val"] / "annotations.json", dirs["val"] / "JPEGImages")
    gt = json.loads((dirs["val"] / "annotations.json").read_text())
    seg_paths = val_segments(seg_model, ann, a.work / "val_segments")
    base_file = a.work / "baseline.json"
    baseline = json.loads(base_file.read_text()) if base_file.is_file() else {}
    stored = dict(baseline)
    if "segmenter_per_frame_AP" not in baseline:
        baseline["segmenter_per_frame_AP"] = per_frame_ap(seg_model, ann, seg_paths, gt)
    if "per_video" not in baseline.get("cosine_association", {}):  # work dirs of the first study lack it
        baseline["cosine_association"] = evaluate(seg_model, ann, seg_paths, gt, tracker=False)
    if "initial_tracker" not in baseline:
        baseline["initial_tracker"] = {k: v for k, v in evaluate(seg_model, ann, seg_paths, gt, tracker=True).items()
                                       if k != "per_video"}
    if baseline != stored:
        base_file.write_text(json.dumps(baseline))
    print(json.dumps({k: ({m: x for m, x in v.items() if m != "per_video"} if isinstance(v, dict) else v)
                      for k, v in baseline.items()}), flush=True)
    runs = []
    for seed in a.seeds:  # seed-major: a killed run has complete seeds for every arm first
        for arm in a.arms:
            r = run_arm(a, arm, seed, seg_model, dirs, ann, seg_paths, gt)
            print(json.dumps({k: v for k, v in r.items() if k != "per_video"}), flush=True)
            runs.append(r)
    report = {"protocol": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
              "data": {"preset": "lookalike", "train": f"{a.train_videos} videos x 12 frames (seed 1000)",
                       "val": f"{a.val_videos} videos x {a.val_frames} frames (seed 2000)"},
              **baseline, "runs": [{k: v for k, v in r.items()} for r in runs],
              **summarise(runs, a, baseline["cosine_association"]),
              "wall_s": round(time.perf_counter() - t0, 1)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1))
    print_table(report)
    return report


def print_table(report: Dict[str, Any]) -> None:
    print(f"\nsegmenter per-frame AP {report['segmenter_per_frame_AP']:.1f}; cosine association: "
          + ", ".join(f"{k} {report['cosine_association'][k]:.3g}" for k in ("AP", "IDF1", "AssA", "idsw_per_matched")))
    print("\n| arm | " + " | ".join(METRICS) + " |\n|" + "---|" * (len(METRICS) + 1))
    for arm, s in report["summary"].items():
        print(f"| {arm} | " + " | ".join(f"{s[m]['mean']:.3g} ± {s[m]['std']:.2g}" for m in METRICS) + " |")
    for ref, key in (("none", "vs_none"), ("cosine", "vs_cosine_association")):
        for arm, d in report[key].items():
            print(f"{arm} - {ref}: " + "; ".join(f"{m} {v['diff']:+.3g} [{v['ci95'][0]:+.3g}, {v['ci95'][1]:+.3g}]"
                                                 for m, v in d.items()))


if __name__ == "__main__":
    main()
