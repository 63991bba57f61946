"""One module per training stage: the frame segmenter, the DVIS++ tracker (with query noise) and the offline
refiner. Each holds its trainer and a pure function computing one clip's losses from the model's outputs (what the
fixture tests replay)."""
from .refiner import RefinerTrainer, refiner_clip_losses
from .segmenter import SegmenterTrainer
from .tracker import DenoisingTrainer, tracker_clip_losses

__all__ = ["SegmenterTrainer", "DenoisingTrainer", "RefinerTrainer", "tracker_clip_losses", "refiner_clip_losses"]
