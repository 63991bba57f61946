"""Training DVIS / DVIS++: synthetic data, YouTube-VIS datasets, losses, query noise, trainers and fine-tuning.

>>> from dvis_sdk.training import finetune                                          # doctest: +SKIP
>>> finetune("my_ytvis/", "runs/ft", model="dvis-tiny-shapes",                     # doctest: +SKIP
...          stages="segmenter,tracker", holdout=0.2)
>>> finetune("coco/annotations.json", "runs/img", stages="segmenter", val="my_ytvis_val/")  # doctest: +SKIP

>>> from dvis_sdk.training import DenoisingTrainer, TrainConfig, VideoClipDataset   # doctest: +SKIP
>>> from dvis_sdk import VideoSegmenter                                             # doctest: +SKIP
>>> model = VideoSegmenter.from_pretrained("dvis-tiny-shapes").model                # doctest: +SKIP
>>> data = VideoClipDataset.from_files("ann.json", "frames/", num_frames=5, frame_range=2)  # doctest: +SKIP
>>> DenoisingTrainer(model, data, "out/", TrainConfig(iters=1000), noise="shuffle").train()  # doctest: +SKIP

See ``docs/training.md``.
"""
from .coco import CocoAnnotations, CocoClipDataset
from .config import PRESETS, TrainConfig, preset
from .datasets import Clip, DatasetError, VideoClipDataset, YTVISAnnotations, convert_png_masks
from .draws import Draws, ReplayDraws
from .finetuning import FinetuneResult, finetune
from .loop import Trainer
from .mixing import MixedClipDataset
from .noise import NOISE_MODES, QueryNoiser, apply_noise, attach_noiser
from .pseudo_video import PseudoVideoAugmentation
from .stages import DenoisingTrainer, RefinerTrainer, SegmenterTrainer
from .start import FinetuneError, LoadReport

__all__ = ["Clip", "DatasetError", "VideoClipDataset", "YTVISAnnotations", "convert_png_masks", "NOISE_MODES",
           "QueryNoiser", "apply_noise", "attach_noiser", "DenoisingTrainer", "RefinerTrainer", "SegmenterTrainer",
           "TrainConfig", "Trainer", "PRESETS", "preset", "Draws", "ReplayDraws", "finetune", "FinetuneResult",
           "FinetuneError", "LoadReport", "CocoAnnotations", "CocoClipDataset", "MixedClipDataset",
           "PseudoVideoAugmentation"]
