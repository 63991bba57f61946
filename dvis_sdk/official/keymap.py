"""Official checkpoint key names -> ours: a prefix table per component plus the keys dropped on purpose."""
from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from ..config import DVISConfig
from .errors import ConversionError

# official checkpoint prefix -> our module prefix (one row per component)
KEY_PREFIXES = {
    "backbone.": "backbone.",
    "sem_seg_head.pixel_decoder.": "pixel_decoder.",
    "sem_seg_head.predictor.": "decoder.",
    "tracker.": "tracker.",
    "refiner.": "refiner.",
}
# keys official checkpoints carry for training only (or as non-persistent constants); DVIS-DAQ checkpoints use the
# DVIS++ segmenter keys plus ``tracker.*`` (track module) / ``refiner.*`` (DAQ refiner) and a ``daq_criterion.*``
TRAINING_ONLY_PREFIXES = ("criterion.", "daq_criterion.")
CONSTANT_KEYS = ("pixel_mean", "pixel_std")


def convert_official_state_dict(state_dict: Mapping[str, Any], cfg: DVISConfig) -> Dict[str, torch.Tensor]:
    """Map an official DVIS / DVIS++ / DVIS-DAQ state dict (or a detectron2 checkpoint ``{"model": ...}``) to ours.

    Training-only entries (``criterion.*``, ``daq_criterion.*``) and the non-persistent ``pixel_mean`` /
    ``pixel_std`` are dropped explicitly; refiner weights are dropped when ``cfg.mode == "online"``, tracker and
    refiner weights when ``cfg.mode == "segmenter"``. Any other key
    that does not belong to a known component raises :class:`ConversionError` listing the keys.
    """
    if not isinstance(state_dict, Mapping):
        raise ConversionError(f"expected a state dict (mapping), got {type(state_dict).__name__}")
    if "model" in state_dict and isinstance(state_dict["model"], Mapping):
        state_dict = state_dict["model"]
    out: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state_dict.items():
        if key.startswith(TRAINING_ONLY_PREFIXES) or key in CONSTANT_KEYS:
            continue
        for src, dst in KEY_PREFIXES.items():  # noqa: B007 (the matching pair is used after the break)
            if key.startswith(src):
                break
        else:
            unknown.append(key)
            continue
        if src == "refiner." and cfg.mode != "offline":
            continue  # an offline checkpoint run online: the refiner is simply not used
        if src == "tracker." and cfg.mode == "segmenter":
            continue  # a DVIS checkpoint run segmenter-only (official stage-1 checkpoints have no tracker)
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value)
        out[dst + key[len(src):]] = value
    if unknown:
        raise ConversionError(f"{len(unknown)} key(s) of the official checkpoint belong to no known component: "
                              f"{sorted(unknown)[:20]}{' ...' if len(unknown) > 20 else ''}")
    if cfg.mode != "segmenter" and out and not any(k.startswith("tracker.") for k in out):
        raise ConversionError("the checkpoint has no 'tracker.*' keys: a stage-1 (segmenter-only, MinVIS / CTMinVIS) "
                              "checkpoint? run it with mode='segmenter' (or its MinVIS / CTVIS yaml)")
    if cfg.mode == "offline" and not any(k.startswith("refiner.") for k in out):
        raise ConversionError("an offline config needs refiner weights, but the checkpoint has no 'refiner.*' keys "
                              "(is this an online checkpoint? use mode='online')")
    return out
