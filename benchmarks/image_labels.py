"""From image labels to a video model, measured: COCO-format image labels with class names NEW to the model ->
``dvis finetune --stages segmenter`` -> a segmenter-only video model (official MinVIS association), scored with the
official video AP (``evaluate_ytvis``) and IDF1 on held-out synthetic videos of the same objects.

Before / after:
* before: the starting model (``dvis-tiny-shapes``) adapted to the new classes and not trained - what ``dvis
  finetune`` validates before training (every name is new: with ``--class-init auto`` the new classes' head rows
  start from the model's class that most of their training objects get, with ``none`` they are fresh);
* after: the fine-tuned segmenter-only model (``--iters`` iterations on the images);
* reference: the starting model with its classes renamed by hand (it was trained on 240k+ video frames of these
  shapes under their old names), run with its tracker and with its segmenter alone: the ceiling of this data.

    PYTHONPATH=. python benchmarks/image_labels.py --iters 300 --threads 1
    # -> benchmarks/results/image_labels.json

About 2 minutes on one CPU thread (300 iterations, 60 images, 8 validation videos).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

NAMES = {"circle": "ball", "square": "tile", "triangle": "wedge"}
IDS = {"circle": 7, "square": 3, "triangle": 12}  # neither contiguous nor sorted, as real COCO files


def _short(m: dict) -> dict:
    return {k: round(float(m[k]), 2) for k in ("AP", "AP50", "AP75", "IDF1", "AssA", "HOTA") if k in m}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--images", type=int, default=60)
    p.add_argument("--val-videos", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the tiny preset's)")
    p.add_argument("--class-init", choices=["auto", "none"], default="auto", help="head rows of the new classes")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    p.add_argument("--out", default="benchmarks/results/image_labels.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from dvis_sdk import VideoSegmenter
    from dvis_sdk.models.minvis import segmenter_only
    from dvis_sdk.training import finetune
    from dvis_sdk.training.synthetic import generate_ytvis
    from dvis_sdk.training.synthetic_coco import generate_coco
    from dvis_sdk.training.validation import evaluate_model

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="image_labels_"))
    try:
        coco = generate_coco(work / "coco", args.images, seed=1000 + args.seed, names=NAMES, category_ids=IDS)
        val = work / "val"
        ann = generate_ytvis(val, args.val_videos, seed=2000 + args.seed)
        data = json.loads(ann.read_text())
        for c in data["categories"]:
            c["name"] = NAMES[c["name"]]
        ann.write_text(json.dumps(data))

        t0 = time.perf_counter()
        extra = {"lr": args.lr} if args.lr is not None else {}
        extra["class_init"] = None if args.class_init == "none" else "auto"
        res = finetune(coco, work / "ft", model="dvis-tiny-shapes", stages="segmenter", iters=args.iters, val=val,
                       seed=args.seed, device="cpu", progress=False, log=lambda m: None, **extra)
        seconds = time.perf_counter() - t0
        trained = VideoSegmenter.from_pretrained(work / "ft").model

        ref = VideoSegmenter.from_pretrained("dvis-tiny-shapes").model
        ref.cfg.class_names = [NAMES[n] for n in ref.cfg.class_names]  # the same classes under the new names
        reference = {"with_tracker": _short(evaluate_model(ref, ann, val / "JPEGImages")),
                     "segmenter_alone": _short(evaluate_model(segmenter_only(ref), ann, val / "JPEGImages"))}
        record = {
            "what": "COCO image labels (new class names) -> dvis finetune --stages segmenter -> segmenter-only video "
                    "model; video AP / IDF1 on held-out synthetic videos",
            "setup": {"images": args.images, "val_videos": args.val_videos, "iters": args.iters, "seed": args.seed,
                      "lr": args.lr if args.lr is not None else "tiny preset (1e-4)", "class_init": args.class_init,
                      "threads": args.threads, "model": "dvis-tiny-shapes", "class_names": trained.cfg.class_names,
                      "category_ids": IDS, "cpu": platform.processor() or platform.machine(),
                      "torch": torch.__version__},
            "saved_model_mode": trained.cfg.mode,
            "before": _short(res.before), "after": _short(res.after),
            "reference_start_model_renamed": reference,
            "train_and_validate_seconds": round(seconds, 1),
        }
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
