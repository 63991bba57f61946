"""Fine-tune the DVIS++ tracker on a custom dataset, then use the result.

A "custom dataset" here is built the way you would build yours: folders of frames plus folders of per-frame
instance-id PNG masks (0 = background, one value per object), converted to a YouTube-VIS annotation file with
``convert_png_masks``. The frames come from the synthetic generator so that the example runs anywhere. The
last videos are held out: the example prints AP / IDF1 on them before and after fine-tuning.

    python examples/finetune_custom.py                       # ~1-2 minutes on a CPU
    python examples/finetune_custom.py --iters 500 --out runs/custom
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

try:
    from dvis_sdk.training import convert_png_masks
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dvis_sdk.training import convert_png_masks

from dvis_sdk import VideoSegmenter  # noqa: E402
from dvis_sdk.training import DenoisingTrainer, TrainConfig, VideoClipDataset  # noqa: E402
from dvis_sdk.training.synthetic import CATEGORIES, PRESETS, render_video  # noqa: E402


def make_custom_dataset(root: Path, num_videos: int = 6) -> Path:
    """Write frames/<video>/<t>.jpg and masks/<video>/<t>.png, then convert them. Object ids encode the class as
    ``class_index * 1000 + instance`` so that ``convert_png_masks`` can read the categories from the ids."""
    for v in range(num_videos):
        frames, masks, shapes = render_video((42, v), PRESETS["occlusion"])
        (root / "frames" / f"clip{v}").mkdir(parents=True, exist_ok=True)
        (root / "masks" / f"clip{v}").mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            cv2.imwrite(str(root / "frames" / f"clip{v}" / f"{t:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            ids = np.zeros(frame.shape[:2], np.uint16)
            for k, s in enumerate(shapes):
                ids[masks[t, k]] = CATEGORIES.index(s.kind) * 1000 + k + 1
            cv2.imwrite(str(root / "masks" / f"clip{v}" / f"{t:05d}.png"), ids)  # 16-bit id PNG
    return convert_png_masks(root / "frames", root / "masks", root / "annotations.json", list(CATEGORIES))


def split(ann: Path, num_val: int) -> tuple:
    """Write train.json / val.json next to ``ann``: the last ``num_val`` videos are the validation split."""
    data = json.loads(ann.read_text())
    val_ids = {v["id"] for v in data["videos"][-num_val:]}
    paths = []
    for name, keep in (("train", lambda i: i not in val_ids), ("val", lambda i: i in val_ids)):
        part = {**data, "videos": [v for v in data["videos"] if keep(v["id"])],
                "annotations": [a for a in data["annotations"] if keep(a["video_id"])]}
        paths.append(ann.parent / f"{name}.json")
        paths[-1].write_text(json.dumps(part))
    return tuple(paths)


def scores(model, val_json: Path, frames: Path) -> dict:
    """Video AP (and identity metrics when ``trackeval`` is installed) on the validation split."""
    from dvis_sdk.training.datasets import YTVISAnnotations
    from dvis_sdk.training.validation import evaluate_model, predict_split

    out = {k: round(v, 1) for k, v in evaluate_model(model, val_json, frames).items() if k in ("AP", "AP50")}
    try:
        from dvis_sdk.evaluation.tracking import tracking_metrics
    except ImportError:
        return out
    try:
        t = tracking_metrics(val_json, predict_split(model, YTVISAnnotations(val_json, frames)))
    except ImportError:
        return out
    return {**out, "IDF1": round(t["IDF1"], 1), "id_switches_per_matched": round(t["id_switches_per_matched"], 3)}


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/dvis_custom_data"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/dvis_custom_finetune"))
    ap.add_argument("--model", default="dvis-tiny-shapes")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--videos", type=int, default=9, help="generated videos; the last 3 are held out")
    args = ap.parse_args(argv)

    ann = make_custom_dataset(args.data, args.videos)
    train_json, val_json = split(ann, 3)
    print(f"dataset: {ann} ({args.videos - 3} training, 3 validation videos)")

    # 1. the model whose tracker we fine-tune (its segmenter stays frozen)
    model = VideoSegmenter.from_pretrained(args.model).model
    before = scores(VideoSegmenter.from_pretrained(args.model), val_json, args.data / "frames")
    # 2. training clips as the official DVIS++ online stage samples them: 5 consecutive frames
    data = VideoClipDataset.from_files(train_json, args.data / "frames", num_frames=5, frame_range=2,
                                       min_sizes=(model.cfg.input.min_size_test,),
                                       max_size=model.cfg.input.max_size_test)
    # 3. denoising training with weighted-average noise (the official online configs' mode)
    trainer = DenoisingTrainer(model, data, args.out, TrainConfig(iters=args.iters, batch_size=2, lr=1e-4,
                                                                  ckpt_every=20, log_every=10),
                               noise="wa", noise_ratio=0.5)
    out = trainer.train()  # resumable: trainer.train(resume=True) continues from the last checkpoint
    print(f"fine-tuned model: {out} (metrics in {out / 'metrics.jsonl'})")

    # 4. use it like any other model
    seg = VideoSegmenter.from_pretrained(out)
    after = scores(seg, val_json, args.data / "frames")
    print(f"validation (3 held-out videos): before {before} -> after {after}")
    result = seg.predict(args.data / "frames" / "clip0")
    print(f"clip0: {len(result.filter(0.5))} instances scoring >= 0.5")
    return out


if __name__ == "__main__":
    main()
