"""Train ``dvis-tiny-shapes``, the small DVIS++ model shipped with the package, end to end on CPU.

Stages (each resumable; ``--stage all`` runs them in order):

1. ``data``: synthetic YouTube-VIS splits (:mod:`dvis_sdk.training.synthetic`): train (seed 0), val (seed 1).
2. ``segmenter``: a narrow ResNet-50 + pixel decoder + decoder trained from scratch on frames
   (:class:`~dvis_sdk.training.SegmenterTrainer`, Mask2Former losses + re-id loss); ``segmenter_ft``: a second
   phase continuing from it at a lower learning rate.
3. ``tracker``: the DVIS++ tracker fine-tuned with the segmenter frozen (:class:`~dvis_sdk.training.DenoisingTrainer`,
   shuffle noise).
4. ``export``: the model into ``dvis_sdk/weights/dvis-tiny-shapes`` (``save_pretrained`` layout); its sha256 into
   both copies of ``weights_manifest.json``.
5. ``eval``: AP (``dvis_sdk.evaluation.evaluate_ytvis``) and identity switches on the val split; with
   ``--write-ap`` the AP becomes the manifest entry's ``reported_ap``.

    python scripts/train_tiny_shapes.py --work /tmp/tiny_shapes            # everything (~40 min on 2 CPU cores)
    python scripts/train_tiny_shapes.py --work /tmp/tiny_shapes --stage tracker --resume

Training runs single-threaded by default (``--threads``): on a shared 2-core machine one thread is several
times faster than two fighting for the cores.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvis_sdk.config import (BackboneConfig, DVISConfig, InputConfig, ResNetConfig, SegmenterConfig,  # noqa: E402
                             TestConfig, TrackerConfig)
from dvis_sdk.models.dvis import build_model  # noqa: E402
from dvis_sdk.training.datasets import VideoClipDataset  # noqa: E402
from dvis_sdk.training.synthetic import CATEGORIES, SyntheticConfig, generate_ytvis  # noqa: E402
from dvis_sdk.training.trainers import DenoisingTrainer, SegmenterTrainer, TrainConfig  # noqa: E402

EXPORT_DIR = ROOT / "dvis_sdk" / "weights" / "dvis-tiny-shapes"
TRAIN_VIDEOS, VAL_VIDEOS = 600, 12
TRAIN_SIZES = (96, 104, 112, 120, 128, 136, 144)


def tiny_config() -> DVISConfig:
    """The architecture: ResNet-50 layout at 1/4 width, 64-d heads, 10 queries, 3 decoder / 2 tracker layers."""
    return DVISConfig(
        variant="dvis++", mode="online",
        backbone=BackboneConfig(type="resnet", resnet=ResNetConfig(depth=50, stem_out_channels=16,
                                                                   res2_out_channels=64, width_per_group=16)),
        segmenter=SegmenterConfig(num_classes=len(CATEGORIES), convs_dim=64, mask_dim=64, transformer_enc_layers=2,
                                  transformer_enc_nheads=4, transformer_enc_dim_feedforward=256, hidden_dim=64,
                                  num_queries=10, nheads=4, dim_feedforward=256, dec_layers=3, reid_hidden_dim=64),
        tracker=TrackerConfig(decoder_layers=2, noise_mode="rs", noise_ratio=0.5),
        input=InputConfig(min_size_test=120, max_size_test=200),
        test=TestConfig(window_size=5, max_num=10),
        dataset="synthetic_shapes", class_names=list(CATEGORIES))


def stage_data(work: Path) -> None:
    t = time.time()
    generate_ytvis(work / "train", TRAIN_VIDEOS, seed=0, config=SyntheticConfig(num_frames=12))
    generate_ytvis(work / "val", VAL_VIDEOS, seed=1, config=SyntheticConfig(num_frames=16))
    print(f"data: {TRAIN_VIDEOS} train + {VAL_VIDEOS} val videos in {time.time() - t:.0f}s")


def stage_segmenter(work: Path, iters: int, resume: bool) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config())
    ds = VideoClipDataset.from_files(work / "train" / "annotations.json", work / "train" / "JPEGImages",
                                     num_frames=2, frame_range=3, min_sizes=TRAIN_SIZES, max_size=240)
    cfg = TrainConfig(iters=iters, batch_size=4, lr=1e-3, backbone_multiplier=1.0, warmup_iters=50,
                      warmup_factor=0.01, steps=(int(0.8 * iters),), num_points=1024, log_every=25, ckpt_every=200)
    SegmenterTrainer(model, ds, work / "segmenter", cfg, train_batchnorm=True).train(resume=resume)


def stage_segmenter_ft(work: Path, iters: int, resume: bool) -> None:
    """Second segmenter phase: continue from the first one's export with a fresh optimizer at half the peak LR."""
    from dvis_sdk import VideoSegmenter

    torch.manual_seed(1)
    model = VideoSegmenter.from_pretrained(work / "segmenter").model
    ds = VideoClipDataset.from_files(work / "train" / "annotations.json", work / "train" / "JPEGImages",
                                     num_frames=2, frame_range=3, min_sizes=TRAIN_SIZES, max_size=240)
    cfg = TrainConfig(iters=iters, batch_size=4, lr=5e-4, backbone_multiplier=1.0, warmup_iters=20,
                      warmup_factor=0.1, steps=(int(0.8 * iters),), num_points=1024, log_every=25, ckpt_every=200,
                      seed=1)
    SegmenterTrainer(model, ds, work / "segmenter_ft", cfg, train_batchnorm=True).train(resume=resume)


def stage_tracker(work: Path, iters: int, resume: bool, noise: str = "shuffle") -> None:
    from dvis_sdk import VideoSegmenter

    torch.manual_seed(0)
    model = VideoSegmenter.from_pretrained(work / "segmenter_ft").model
    ds = VideoClipDataset.from_files(work / "train" / "annotations.json", work / "train" / "JPEGImages",
                                     num_frames=5, frame_range=2, min_sizes=(120,), max_size=240)
    cfg = TrainConfig(iters=iters, batch_size=2, lr=5e-4, num_points=1024, log_every=25, ckpt_every=200)
    DenoisingTrainer(model, ds, work / "tracker", cfg, noise=noise, noise_ratio=0.5).train(resume=resume)


def stage_export(work: Path) -> None:
    from dvis_sdk.hub import sha256_file

    src = work / "tracker"
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(src / name, EXPORT_DIR / name)
    info = {"trained_with": "scripts/train_tiny_shapes.py",
            "segmenter": _summary(work / "segmenter"), "segmenter_ft": _summary(work / "segmenter_ft"),
            "tracker": _summary(work / "tracker")}
    (EXPORT_DIR / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    (EXPORT_DIR / "README.md").write_text(MODEL_CARD)
    size = (EXPORT_DIR / "model.safetensors").stat().st_size / 2**20
    _update_manifest(sha256=sha256_file(EXPORT_DIR / "model.safetensors"))
    print(f"exported -> {EXPORT_DIR} ({size:.1f} MiB)")


def stage_eval(work: Path, write_ap: bool) -> dict:
    from dvis_sdk import VideoSegmenter
    from dvis_sdk.training.validation import evaluate_model

    seg = VideoSegmenter.from_pretrained(EXPORT_DIR)
    metrics = evaluate_model(seg, work / "val" / "annotations.json", work / "val" / "JPEGImages")
    print("val:", json.dumps({k: round(v, 2) for k, v in metrics.items()}))
    if write_ap:
        _update_manifest(reported_ap=round(metrics["AP"], 1), reported_ap50=round(metrics["AP50"], 1),
                         reported_ap75=round(metrics["AP75"], 1))
    return metrics


def _update_manifest(**fields) -> None:
    for path in (ROOT / "weights_manifest.json", ROOT / "dvis_sdk" / "weights_manifest.json"):
        data = json.loads(path.read_text())
        for entry in data["models"]:
            if entry["name"] == "dvis-tiny-shapes":
                entry.update(fields)
        path.write_text(json.dumps(data, indent=2) + "\n")


def _summary(run: Path) -> dict:
    """Iterations, wall time (sum of the logged seconds per iteration) and the last logged losses of a run."""
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    lines = [x for x in lines if "loss" in x]
    cfg = json.loads((run / "train_config.json").read_text())
    seconds, prev = 0.0, 0
    for x in lines:
        seconds += x["sec_per_iter"] * (x["iter"] - prev)
        prev = x["iter"]
    last = {k: round(v, 4) for k, v in lines[-1].items() if k.startswith("loss")} if lines else {}
    return {"trainer": cfg["trainer"], "iters": prev, "train_seconds": round(seconds), "last_losses": last,
            "config": cfg["config"]}


MODEL_CARD = """# dvis-tiny-shapes

A small DVIS++ online model (narrow ResNet-50, 64-d heads, 10 queries, 3 classes: circle, square, triangle)
trained from scratch with `dvis_sdk.training` on the synthetic shapes videos of `dvis_sdk.training.synthetic`,
by `scripts/train_tiny_shapes.py`. It ships with the package as the manifest's default model so that the
README's main job and the end-to-end tests run offline with real segmentation and tracking. It knows nothing
but these shapes: use an official model for real videos.

```python
from dvis_sdk import VideoSegmenter
seg = VideoSegmenter.from_pretrained("dvis-tiny-shapes")
```
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/dvis_tiny_shapes"))
    ap.add_argument("--stage", choices=["all", "data", "segmenter", "segmenter_ft", "tracker", "export", "eval"],
                    default="all")
    ap.add_argument("--write-ap", action="store_true", help="eval: write the AP into the manifest entry")
    ap.add_argument("--segmenter-iters", type=int, default=1500)
    ap.add_argument("--segmenter-ft-iters", type=int, default=1000)
    ap.add_argument("--tracker-iters", type=int, default=600)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = ["data", "segmenter", "segmenter_ft", "tracker", "export", "eval"] if args.stage == "all" \
        else [args.stage]
    for s in stages:
        t = time.time()
        if s == "data":
            stage_data(args.work)
        elif s == "segmenter":
            stage_segmenter(args.work, args.segmenter_iters, args.resume)
        elif s == "segmenter_ft":
            stage_segmenter_ft(args.work, args.segmenter_ft_iters, args.resume)
        elif s == "tracker":
            stage_tracker(args.work, args.tracker_iters, args.resume)
        elif s == "export":
            stage_export(args.work)
        else:
            try:
                stage_eval(args.work, args.write_ap)
            except ImportError as e:
                print(f"eval skipped: {e}")
        print(f"stage {s}: {time.time() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
