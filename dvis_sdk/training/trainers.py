"""Compatibility re-exports: the trainers now live in :mod:`.config`, :mod:`.loop`, :mod:`.checkpoint` and
:mod:`.stages` (one module per stage)."""
from .config import TrainConfig
from .loop import Trainer
from .stages import DenoisingTrainer, RefinerTrainer, SegmenterTrainer

__all__ = ["TrainConfig", "Trainer", "SegmenterTrainer", "DenoisingTrainer", "RefinerTrainer"]
