"""dvis_sdk: pure-PyTorch DVIS / DVIS++ video instance segmentation.

>>> from dvis_sdk import VideoSegmenter
>>> seg = VideoSegmenter.from_official("ovis/DVIS_Plus_Online_R50_16wIter.yaml", "model_final.pth")  # doctest: +SKIP
>>> result = seg.predict(frames)                                                              # doctest: +SKIP
"""
from ._version import __version__
from .batch import predict_folder
from .config import DVISConfig
from .inference.predictor import VideoSegmenter
from .models.dvis import OfflineDVIS, OnlineDVIS, build_model
from .results import Instance, VideoResult

__all__ = ["DVISConfig", "VideoSegmenter", "OnlineDVIS", "OfflineDVIS", "build_model", "Instance", "VideoResult",
           "predict_folder", "__version__"]
