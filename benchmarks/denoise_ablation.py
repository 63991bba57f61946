"""Denoising ablation: the same frozen segmenter, the tracker trained from the same initialisation with each noise
mode for the same iterations on occlusion-heavy synthetic videos; AP and identity switches on a held-out split.

    python benchmarks/denoise_ablation.py                        # dvis-tiny-shapes' segmenter, 300 iterations / mode
    python benchmarks/denoise_ablation.py --iters 1000 --model path/to/model --modes none shuffle

Prints one row per mode (a Markdown table). AP needs ``dvis_sdk.evaluation``; without it only identity switches
are reported. CPU-friendly defaults: a few minutes per mode for the tiny model.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvis_sdk import VideoSegmenter  # noqa: E402
from dvis_sdk.training.datasets import VideoClipDataset, YTVISAnnotations  # noqa: E402
from dvis_sdk.training.synthetic import PRESETS, generate_ytvis  # noqa: E402
from dvis_sdk.training.trainers import DenoisingTrainer, TrainConfig  # noqa: E402
from dvis_sdk.training.validation import id_switches, load_evaluator, predict_split  # noqa: E402

MODES = ("none", "weighted_average", "crop_concat", "shuffle")


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="dvis-tiny-shapes", help="model whose segmenter is used (name or folder)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dvis_denoise_ablation"))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--noise-ratio", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--train-videos", type=int, default=150)
    ap.add_argument("--val-videos", type=int, default=12)
    ap.add_argument("--val-frames", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reinit-tracker", action=argparse.BooleanOptionalAction, default=True,
                    help="train every mode from the same freshly initialised tracker (default) instead of the "
                         "model's trained one")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    occl = PRESETS["occlusion"]
    train_dir, val_dir = args.work / "train", args.work / "val"
    if not (train_dir / "annotations.json").is_file():
        generate_ytvis(train_dir, args.train_videos, seed=100, config=_with(occl, num_frames=12))
    if not (val_dir / "annotations.json").is_file():
        generate_ytvis(val_dir, args.val_videos, seed=101, config=_with(occl, num_frames=args.val_frames))
    val_ann = YTVISAnnotations(val_dir / "annotations.json", val_dir / "JPEGImages")
    val_json = json.loads((val_dir / "annotations.json").read_text())
    try:
        evaluate_ytvis = load_evaluator()
    except ImportError as e:
        print(f"note: {e}; reporting identity switches only")
        evaluate_ytvis = None

    base = VideoSegmenter.from_pretrained(args.model, mode="online")
    torch.manual_seed(args.seed)
    tracker_init = type(base.model.tracker)(**_tracker_kwargs(base.model)).state_dict() if args.reinit_tracker \
        else base.model.tracker.state_dict()
    rows = []
    for mode in args.modes:
        model = copy.deepcopy(base.model)
        model.tracker.load_state_dict(tracker_init)
        data = VideoClipDataset.from_files(train_dir / "annotations.json", train_dir / "JPEGImages", num_frames=5,
                                           frame_range=2, min_sizes=(model.cfg.input.min_size_test,),
                                           max_size=model.cfg.input.max_size_test)
        cfg = TrainConfig(iters=args.iters, batch_size=args.batch_size, lr=args.lr, num_points=1024, seed=args.seed,
                          ckpt_every=0, log_every=50, progress=False)
        t0 = time.perf_counter()
        trainer = DenoisingTrainer(model, data, args.work / f"run_{mode}", cfg, noise=mode,
                                   noise_ratio=args.noise_ratio, cache=args.work / "segmenter_cache")
        trainer.train()
        train_s = time.perf_counter() - t0
        model.eval()
        results = predict_split(VideoSegmenter(model), val_ann)
        row = {"mode": mode, "train_s": round(train_s, 1)}
        if evaluate_ytvis is not None:
            m = evaluate_ytvis(val_json, results)
            row.update(AP=round(float(m["AP"]), 1), AP50=round(float(m["AP50"]), 1), AP75=round(float(m["AP75"]), 1))
        ids = id_switches(val_json, results)
        row.update(id_switches=ids["id_switches"], matched=f"{ids['matched']}/{ids['gt_frames']}")
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in ("mode", "AP", "AP50", "AP75", "id_switches", "matched", "train_s") if k in rows[0]]
    print(f"\n{args.iters} iterations per mode, noise ratio {args.noise_ratio}, {args.train_videos} training / "
          f"{args.val_videos} validation videos (occlusion preset), segmenter of {args.model}\n")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return rows


def _with(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


def _tracker_kwargs(model) -> dict:
    cfg, seg = model.cfg, model.cfg.segmenter
    return dict(hidden_channel=cfg.tracker_hidden_dim, feedforward_channel=seg.dim_feedforward, num_head=seg.nheads,
                decoder_layer_num=cfg.tracker.decoder_layers, mask_dim=seg.hidden_dim, class_num=seg.num_classes)


if __name__ == "__main__":
    main()
