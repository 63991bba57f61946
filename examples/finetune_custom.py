"""Fine-tune the DVIS++ tracker on a custom dataset, then use the result.

A "custom dataset" here is built the way you would build yours: folders of frames plus folders of per-frame
instance-id PNG masks (0 = background, one value per object), converted to a YouTube-VIS annotation file with
``convert_png_masks``. The frames come from the synthetic generator so that the example runs anywhere.

    python examples/finetune_custom.py                       # ~1 minute on a CPU
    python examples/finetune_custom.py --iters 500 --out runs/custom
"""
from __future__ import annotations

import argparse
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


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/dvis_custom_data"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/dvis_custom_finetune"))
    ap.add_argument("--model", default="dvis-tiny-shapes")
    ap.add_argument("--iters", type=int, default=40)
    args = ap.parse_args(argv)

    ann = make_custom_dataset(args.data)
    print(f"dataset: {ann}")

    # 1. the model whose tracker we fine-tune (its segmenter stays frozen)
    model = VideoSegmenter.from_pretrained(args.model).model
    # 2. training clips as the official DVIS++ online stage samples them: 5 consecutive frames
    data = VideoClipDataset.from_files(ann, args.data / "frames", num_frames=5, frame_range=2,
                                       min_sizes=(model.cfg.input.min_size_test,),
                                       max_size=model.cfg.input.max_size_test)
    # 3. denoising training with shuffled queries (the best mode of the DVIS++ report)
    trainer = DenoisingTrainer(model, data, args.out, TrainConfig(iters=args.iters, batch_size=2, lr=1e-4,
                                                                  ckpt_every=20, log_every=10),
                               noise="wa", noise_ratio=0.5)
    out = trainer.train()  # resumable: trainer.train(resume=True) continues from the last checkpoint
    print(f"fine-tuned model: {out} (metrics in {out / 'metrics.jsonl'})")

    # 4. use it like any other model
    seg = VideoSegmenter.from_pretrained(out)
    result = seg.predict(args.data / "frames" / "clip0")
    print(f"clip0: {len(result.filter(0.5))} instances scoring >= 0.5")
    return out


if __name__ == "__main__":
    main()
