"""Evaluation with the official numbers: YouTube-VIS / OVIS video AP (:func:`evaluate_ytvis`), VIPSeg video
panoptic VPQ and STQ (:func:`evaluate_vps`), VSPW video semantic mIoU and VC (:func:`evaluate_vss`)."""
from .vps import evaluate_vps, format_vps
from .vss import evaluate_vss, format_vss
from .ytvis import AREA_RANGES, MAX_DETS, STAT_KEYS, EvaluationInputError, evaluate_ytvis, format_table

__all__ = ["evaluate_ytvis", "format_table", "EvaluationInputError", "STAT_KEYS", "AREA_RANGES", "MAX_DETS",
           "evaluate_vps", "format_vps", "evaluate_vss", "format_vss"]
