"""Deployment without PyTorch: ONNX export (:func:`export_onnx`) and the ONNX Runtime model (:class:`OnnxDVIS`).

Needs the optional extra: ``pip install 'dvis_sdk[onnx]'``. See ``docs/deployment.md``.
"""
from .onnx_export import export_onnx, is_onnx_export, require_onnx
from .ort_model import OnnxDVIS, OnnxTrackerState

__all__ = ["export_onnx", "is_onnx_export", "require_onnx", "OnnxDVIS", "OnnxTrackerState"]
