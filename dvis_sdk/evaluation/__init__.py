"""Evaluation: YouTube-VIS / OVIS video AP (:func:`evaluate_ytvis`), computed as the official YouTube-VIS API does."""
from .ytvis import AREA_RANGES, MAX_DETS, STAT_KEYS, EvaluationInputError, evaluate_ytvis, format_table

__all__ = ["evaluate_ytvis", "format_table", "EvaluationInputError", "STAT_KEYS", "AREA_RANGES", "MAX_DETS"]
