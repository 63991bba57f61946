"""Fine-tune a model on a custom dataset, then use the result.

A "custom dataset" here is built the way you would build yours: folders of frames plus folders of per-frame
instance-id PNG masks (0 = background, one value per object), converted to a YouTube-VIS annotation file with
``convert_png_masks``. The frames come from the synthetic generator (its ``occlusion`` preset: more, crossing,
look-alike objects than the model was trained on) so that the example runs anywhere. ``finetune`` holds out 3 videos
and prints AP / IDF1 on them before and after fine-tuning; ``dvis finetune`` on the command line does the same.

    python examples/finetune_custom.py                       # about a minute on a CPU
    python examples/finetune_custom.py --iters 300 --stages segmenter,tracker --out runs/custom
"""
from __future__ import annotations

import argparse
import shutil
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
from dvis_sdk.training import finetune  # noqa: E402
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


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/dvis_custom_data"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/dvis_custom_finetune"))
    ap.add_argument("--model", default="dvis-tiny-shapes")
    ap.add_argument("--stages", default="tracker", help="segmenter, tracker, refiner (comma-separated)")
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--videos", type=int, default=9, help="generated videos; 3 of them are held out")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    args = ap.parse_args(argv)

    if not args.resume and (args.out / "finetune.json").is_file():
        shutil.rmtree(args.out)  # an earlier run of this example: start over (--resume continues it instead)
    ann = make_custom_dataset(args.data, args.videos)
    print(f"dataset: {ann} ({args.videos} videos, 3 held out for validation)")
    # the same as: dvis finetune --data <ann> --frames <frames> --model dvis-tiny-shapes --stages tracker
    #              --holdout 3 --iters 60 --out <out> --batch-size 2 --ckpt-every 20
    result = finetune(ann, args.out, frames=args.data / "frames", model=args.model, stages=args.stages,
                      holdout=3, iters=args.iters, batch_size=2, ckpt_every=20, resume=args.resume,
                      device="cpu")
    keys = ("AP", "AP50", "IDF1")
    before = {k: round(v, 1) for k, v in result.before.items() if k in keys}
    after = {k: round(v, 1) for k, v in result.after.items() if k in keys}
    print(f"validation (3 held-out videos): before {before} -> after {after}")

    # use it like any other model
    seg = VideoSegmenter.from_pretrained(result.out_dir)
    clip = sorted((args.data / "frames").iterdir())[0]
    print(f"{clip.name}: {len(seg.predict(clip).filter(0.5))} instances scoring >= 0.5")
    return result.out_dir


if __name__ == "__main__":
    main()
