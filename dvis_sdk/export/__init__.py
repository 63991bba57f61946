"""Deployment without PyTorch weights: ONNX export (:func:`export_onnx`) and the ONNX Runtime backend
(:class:`OnnxDVIS`, run by ``VideoSegmenter.from_pretrained(EXPORT_DIR)``).

Needs the optional extra: ``pip install 'dvis_sdk[onnx]'``. See ``docs/deployment.md``.
"""
from .onnx_export import export_onnx, is_onnx_export, require_onnx
from .ort_model import OnnxDVIS, OnnxMinVIS, OnnxOfflineDVIS, OnnxTrackerState, available_providers

__all__ = ["export_onnx", "is_onnx_export", "require_onnx", "OnnxDVIS", "OnnxMinVIS", "OnnxOfflineDVIS",
           "OnnxTrackerState",
           "available_providers"]
