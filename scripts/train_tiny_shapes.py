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

Offline model ``dvis-tiny-shapes-offline`` (not part of ``all``; ``--stage offline`` runs the three in order):

6. ``refiner``: the online model (``work/tracker``) plus a fresh 3-layer temporal refiner, trained with segmenter
   and tracker frozen (:class:`~dvis_sdk.training.RefinerTrainer`: flattened-clip mask losses, early matching on
   the tracker's outputs, contrastive loss with the class memory) on 12-frame clips, reversed with p = 0.5.
7. ``export_offline``: into ``dvis_sdk/weights/dvis-tiny-shapes-offline`` (+ its sha256 in the manifest entry of
   that name, if the entry exists).
8. ``eval_offline``: AP of the offline and the online model on ``--eval-videos`` held-out videos (seed 7, never
   used in training or selection), whole-video and chunked refinement; with ``--write-ap`` into the manifest.

    python scripts/train_tiny_shapes.py --work /tmp/tiny_shapes            # everything (~40 min on 2 CPU cores)
    python scripts/train_tiny_shapes.py --work /tmp/tiny_shapes --stage tracker --resume
    python scripts/train_tiny_shapes.py --work /tmp/tiny_shapes --stage offline   # refiner (~40 min) + eval (~5 min)

Training runs single-threaded by default (``--threads``): on a shared 2-core machine one thread is several
times faster than two fighting for the cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvis_sdk.config import (  # noqa: E402
    BackboneConfig,
    DVISConfig,
    InputConfig,
    ResNetConfig,
    SegmenterConfig,
    TestConfig,
    TrackerConfig,
)
from dvis_sdk.models.dvis import build_model  # noqa: E402
from dvis_sdk.training import DenoisingTrainer, SegmenterTrainer, TrainConfig  # noqa: E402
from dvis_sdk.training.datasets import VideoClipDataset  # noqa: E402
from dvis_sdk.training.synthetic import CATEGORIES, SyntheticConfig, generate_ytvis  # noqa: E402

EXPORT_DIR = ROOT / "dvis_sdk" / "weights" / "dvis-tiny-shapes"
EXPORT_DIR_OFFLINE = ROOT / "dvis_sdk" / "weights" / "dvis-tiny-shapes-offline"
REFINER_LAYERS, REFINER_FRAMES = 3, 12
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


def offline_model(online_dir: Path):
    """The online model of ``online_dir`` with a fresh temporal refiner (``REFINER_LAYERS`` layers)."""
    from dvis_sdk import VideoSegmenter
    from dvis_sdk.config import DVISConfig, RefinerConfig

    online = VideoSegmenter.from_pretrained(online_dir).model
    d = online.cfg.to_dict()
    d.update(mode="offline", refiner=dataclasses.asdict(RefinerConfig(decoder_layers=REFINER_LAYERS)))
    torch.manual_seed(0)
    model = build_model(DVISConfig.from_dict(d))
    missing, unexpected = model.load_state_dict(online.state_dict(), strict=False)
    if unexpected or any(not k.startswith("refiner.") for k in missing):
        raise RuntimeError(f"online weights do not fit the offline model: {unexpected or missing}")
    return model


def stage_refiner(work: Path, iters: int, resume: bool) -> None:
    from dvis_sdk.training import RefinerTrainer

    model = offline_model(work / "tracker")
    ds = VideoClipDataset.from_files(work / "train" / "annotations.json", work / "train" / "JPEGImages",
                                     num_frames=REFINER_FRAMES, frame_range=REFINER_FRAMES, reverse_prob=0.5,
                                     min_sizes=(120,), max_size=240)
    # official offline recipe (lr 1e-4, loss weights, reid 2, early matching on the tracker for half the run)
    # at the tiny scale: 256 points per frame, a higher lr for the short run
    cfg = TrainConfig(iters=iters, batch_size=1, lr=5e-4, num_points=256, log_every=25, ckpt_every=200)
    RefinerTrainer(model, ds, work / "refiner", cfg).train(resume=resume)


def stage_export_offline(work: Path) -> None:
    from dvis_sdk.weights import sha256_file

    EXPORT_DIR_OFFLINE.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(work / "refiner" / name, EXPORT_DIR_OFFLINE / name)
    info = {"trained_with": "scripts/train_tiny_shapes.py --stage offline", "online": "dvis-tiny-shapes",
            "refiner": _summary(work / "refiner")}
    (EXPORT_DIR_OFFLINE / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    (EXPORT_DIR_OFFLINE / "README.md").write_text(MODEL_CARD_OFFLINE)
    _update_manifest(name="dvis-tiny-shapes-offline", sha256=sha256_file(EXPORT_DIR_OFFLINE / "model.safetensors"))
    print(f"exported -> {EXPORT_DIR_OFFLINE}")


def stage_eval_offline(work: Path, num_videos: int, write_ap: bool) -> dict:
    """Offline vs online AP on held-out videos (seed 7); offline with whole-video and chunked refinement."""
    from dvis_sdk import VideoSegmenter
    from dvis_sdk.training.validation import evaluate_model

    split = work / f"heldout_{num_videos}"
    if not (split / "annotations.json").is_file():
        generate_ytvis(split, num_videos, seed=7, config=SyntheticConfig(num_frames=16))
    ann, frames = split / "annotations.json", split / "JPEGImages"
    out = {"videos": num_videos, "seed": 7}
    for name, seg in (("online", VideoSegmenter.from_pretrained(EXPORT_DIR)),
                      ("offline", VideoSegmenter.from_pretrained(EXPORT_DIR_OFFLINE))):
        out[name] = {k: round(v, 2) for k, v in evaluate_model(seg, ann, frames).items()}
    # chunked: the refiner sees chunks of 8 frames at a time instead of the whole video
    chunked = VideoSegmenter.from_pretrained(EXPORT_DIR_OFFLINE, chunk_size=8)
    out["offline_chunked_8"] = {k: round(v, 2) for k, v in evaluate_model(chunked, ann, frames).items()}
    print("held-out:", json.dumps(out))
    (work / "offline_eval.json").write_text(json.dumps(out, indent=2))
    if write_ap:
        o = out["offline"]
        _update_manifest(name="dvis-tiny-shapes-offline", reported_ap=round(o["AP"], 1),
                         reported_ap50=round(o["AP50"], 1), reported_ap75=round(o["AP75"], 1))
    return out


def stage_export(work: Path) -> None:
    from dvis_sdk.weights import sha256_file

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


def _update_manifest(name: str = "dvis-tiny-shapes", **fields) -> None:
    for path in (ROOT / "weights_manifest.json", ROOT / "dvis_sdk" / "weights_manifest.json"):
        data = json.loads(path.read_text())
        entries = [e for e in data["models"] if e["name"] == name]
        if not entries:
            print(f"note: {path} has no entry {name!r}; add one (source 'embedded') with {fields}")
        for entry in entries:
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


MODEL_CARD_OFFLINE = """# dvis-tiny-shapes-offline

`dvis-tiny-shapes` (same segmenter and tracker) plus a 3-layer temporal refiner trained with
`dvis_sdk.training.RefinerTrainer` on the synthetic shapes videos, by `scripts/train_tiny_shapes.py --stage offline`.
The refiner looks at the whole video (or chunks of it) and re-scores and refines the online model's tracks.

```python
from dvis_sdk import VideoSegmenter
seg = VideoSegmenter.from_pretrained("dvis-tiny-shapes-offline")
```
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/dvis_tiny_shapes"))
    ap.add_argument("--stage", choices=["all", "data", "segmenter", "segmenter_ft", "tracker", "export", "eval",
                                        "offline", "refiner", "export_offline", "eval_offline"], default="all")
    ap.add_argument("--write-ap", action="store_true", help="eval: write the AP into the manifest entry")
    ap.add_argument("--segmenter-iters", type=int, default=1500)
    ap.add_argument("--segmenter-ft-iters", type=int, default=1000)
    ap.add_argument("--tracker-iters", type=int, default=600)
    ap.add_argument("--refiner-iters", type=int, default=1500)
    ap.add_argument("--eval-videos", type=int, default=100, help="eval_offline: held-out videos")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    stages = {"all": ["data", "segmenter", "segmenter_ft", "tracker", "export", "eval"],
              "offline": ["refiner", "export_offline", "eval_offline"]}.get(args.stage, [args.stage])
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
        elif s == "refiner":
            stage_refiner(args.work, args.refiner_iters, args.resume)
        elif s == "export_offline":
            stage_export_offline(args.work)
        elif s == "eval_offline":
            stage_eval_offline(args.work, args.eval_videos, args.write_ap)
        else:
            try:
                stage_eval(args.work, args.write_ap)
            except ImportError as e:
                print(f"eval skipped: {e}")
        print(f"stage {s}: {time.time() - t:.0f}s", flush=True)


if __name__ == "__main__":
    main()
