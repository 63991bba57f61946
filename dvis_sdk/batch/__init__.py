"""Batch processing of video folders: resumable, fault-isolated, several devices or a Ray cluster.

>>> from dvis_sdk import VideoSegmenter                                             # doctest: +SKIP
>>> seg = VideoSegmenter.from_pretrained("dvis++-r50-ovis-online")                  # doctest: +SKIP
>>> summary = dvis_sdk.predict_folder(seg, "videos/", "out/", pattern="*.mp4", recursive=True)  # doctest: +SKIP
>>> print(summary.table())                                                          # doctest: +SKIP

See ``docs/batch.md`` for the output layout, resume and failure semantics.
"""
from .core import BatchInterrupted, BatchSummary, predict_folder
from .discover import VideoTask, discover_videos
from .store import BatchLockedError, fingerprint

__all__ = ["BatchInterrupted", "BatchLockedError", "BatchSummary", "VideoTask", "discover_videos", "fingerprint",
           "predict_folder"]
