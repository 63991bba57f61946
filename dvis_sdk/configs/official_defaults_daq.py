"""Official config defaults of DVIS-DAQ (zhang-tao-whu/DVIS_Plus, ``DVIS_DAQ/`` @c0eb249).

``DVIS_DAQ/train_net_daq.py`` builds its cfg as the DVIS++ one (the DAQ folder's ``dvis_Plus/config.py`` equals
the DVIS++ folder's but for comments) plus ``dvis_daq/config.py::add_daq_config`` below.
"""
from __future__ import annotations

import copy
from typing import Any, Dict

from .official_defaults import OFFICIAL_DEFAULTS, _build

# add_daq_config (dvis_daq/config.py)
_DAQ: Dict[str, Any] = {
    "MODEL": {"VIDEO_HEAD": {
        "NUM_NEW_INS": 10,
        "NUM_SLOTS": 5,
        "OFFLINE_TOPK_NUM": 20,
        # training only
        "TRAINING_SELECT_THRESHOLD": 0.1,
        "USING_THR": False,
        "SKIP_PARAMS": [],
        "CL_ON_SLOTS": False,
        # inference
        "INFERENCE_SELECT_THRESHOLD": 0.1,
        "AUX_INFERENCE_SELECT_THRESHOLD": 0.01,
        "NOISE_FRAME_NUM": 1,
        "TEMPORAL_SCORE_TYPE": "mean",   # not read by VIS inference
        "DIS_FG_THRESHOLD": 0.01,
        "MASK_NMS_THR": 0.6,             # not read by VIS inference
        "OVIS_INFER": False,
        "USE_LOCAL_ATTN": False,
    }},
    "INPUT": {"USING_FRAME_NUM": None, "STEPS": None},
}

#: DVIS-DAQ defaults: the DVIS++ defaults plus ``MODEL.VIDEO_HEAD``.
OFFICIAL_DEFAULTS_DAQ: Dict[str, Any] = _build(OFFICIAL_DEFAULTS, _DAQ)



def official_defaults_daq() -> Dict[str, Any]:
    """A fresh deep copy of the DVIS-DAQ defaults."""
    return copy.deepcopy(OFFICIAL_DEFAULTS_DAQ)
