"""Default values of the OFFICIAL DVIS / DVIS++ cfg tree, recorded without detectron2.

The official training / test scripts build their cfg as::

    cfg = get_cfg()                      # detectron2/config/defaults.py
    add_deeplab_config(cfg)              # detectron2 projects/DeepLab/deeplab/config.py
    add_maskformer2_config(cfg)          # mask2former/config.py
    add_maskformer2_video_config(cfg)    # mask2former_video/config.py
    add_minvis_config(cfg)               # dvis_Plus/config.py  (original DVIS: dvis/config.py)
    add_dvis_config(cfg)                 # dvis_Plus/config.py  (original DVIS: dvis/config.py)
    add_ctvis_config(cfg)                # dvis_Plus/config.py  (DVIS++ only)
    cfg.merge_from_file(yaml)            # follows _BASE_ chains (relative to the yaml's folder)

``OFFICIAL_DEFAULTS`` (DVIS++, repo zhang-tao-whu/DVIS_Plus) and ``OFFICIAL_DEFAULTS_DVIS`` (original
DVIS, repo zhang-tao-whu/DVIS) are that cfg BEFORE the yaml merge, as nested dicts mirroring the cfg
tree. Python types follow the official code (tuples stay tuples, lists stay lists).

Scope: every block that inference, weight conversion or fine-tuning reads (MODEL.{BACKBONE, RESNETS,
SWIN, VIT_ADAPTER, SEM_SEG_HEAD, MASK_FORMER, TRACKER, REFINER, CL_PLUGIN}, INPUT, DATASETS,
DATALOADER, SOLVER, TEST, misc). detectron2 blocks that no DVIS model reads (FPN, RPN, ROI_*,
RETINANET, ANCHOR_GENERATOR, PROPOSAL_GENERATOR, PANOPTIC_FPN, KEYPOINT heads) are left out, so this
is not a drop-in replacement for yacs' strict "unknown key" check.

Differences between the two code bases (all in the DVIS++-only additions; everything else is equal):

=====================================================  ===================  ==================
key                                                    DVIS++               original DVIS
=====================================================  ===================  ==================
MODEL.MASK_FORMER.REID_BRANCH (add_minvis_config)      True                 (absent)
MODEL.MASK_FORMER.REID_HIDDEN_DIM (add_ctvis_config)   256                  (absent)
MODEL.MASK_FORMER.NUM_REID_HEAD_LAYERS                 3                    (absent)
MODEL.TRACKER                                          DECODER_LAYERS 6,    DECODER_LAYERS 6
                                                       NOISE_MODE 'none',
                                                       NOISE_RATIO 0.5,
                                                       USE_CL True
MODEL.REFINER                                          DECODER_LAYERS 6,    DECODER_LAYERS 6
                                                       USE_CL True
MODEL.SEM_SEG_HEAD.RETURN_TRANSFORMER_FEATURE          False                (absent)
MODEL.CL_PLUGIN.* (training only)                      present              (absent)
MODEL.VIT_ADAPTER.* (DVIS++'s mask2former/config.py)   present              (absent)
=====================================================  ===================  ==================

``MODEL.MASK_FORMER.TEST.MAX_NUM`` defaults to 20 in BOTH code bases; the official YouTube-VIS Base
yamls set it to 10, the OVIS Base yamls leave it at 20.

Official yamls hold python-tuple strings such as ``STEPS: (28000,)`` or
``TRAIN: ("coco2ovis_train", "ovis_train")``; ``yaml.safe_load`` returns them as ``str``. yacs
(detectron2's CfgNode) runs ``ast.literal_eval`` on every string value of a merged yaml, see
:func:`dvis_sdk.official.yacs.decode_cfg_value`.
"""
from __future__ import annotations

import copy
from typing import Any, Dict, Mapping

from .defaults_detectron2 import _DEEPLAB, _DETECTRON2, _MASKFORMER2, _MASKFORMER2_VIDEO, _VIT_ADAPTER_DVISPLUS
from .merge import deep_merge

# =============================================================================================
# DVIS++: dvis_Plus/config.py (zhang-tao-whu/DVIS_Plus; dvis_Plus/config.py @8d01001 and
# DVIS_DAQ/dvis_Plus/config.py @c0eb249 hold the same values)
# =============================================================================================
# add_minvis_config
_MINVIS_DVISPLUS: Dict[str, Any] = {
    "INPUT": {"SAMPLING_FRAME_RATIO": 1.0},
    "MODEL": {
        "MASK_FORMER": {
            "TEST": {"WINDOW_INFERENCE": False},
            "REID_BRANCH": True,
        },
    },
}

# add_dvis_config (the parts shared with the original DVIS)
_DVIS_COMMON: Dict[str, Any] = {
    "INPUT": {
        "REVERSE_AGU": False,
        "PSEUDO": {
            "AUGMENTATIONS": ["rotation"],
            "MIN_SIZE_TRAIN": (480, 512, 544, 576, 608, 640, 672, 704, 736, 768),
            "MAX_SIZE_TRAIN": 768,
            "MIN_SIZE_TRAIN_SAMPLING": "choice_by_clip",
            "CROP": {
                "ENABLED": False,
                "TYPE": "absolute_range",
                "SIZE": (384, 600),
            },
        },
        "LSJ_AUG": {
            "ENABLED": False,
            "IMAGE_SIZE": 1024,
            "MIN_SCALE": 0.1,
            "MAX_SCALE": 2.0,
        },
    },
    "MODEL": {
        "TRACKER": {"DECODER_LAYERS": 6},
        "REFINER": {"DECODER_LAYERS": 6},
        "MASK_FORMER": {
            "TEST": {
                # frames per segmenter call in window inference (and the refiner's window)
                "WINDOW_SIZE": 3,
                "TASK": "vis",
                # top-k instances kept per video (VIS post-processing)
                "MAX_NUM": 20,
            },
        },
    },
    "DATASETS": {
        "DATASET_RATIO": [1.0],
        # whether the dataset's category ids must be mapped to the last TRAIN dataset's categories
        "DATASET_NEED_MAP": [False],
        # 'video_instance', 'video_panoptic', 'video_semantic', 'image_instance', 'image_panoptic',
        # 'image_semantic'
        "DATASET_TYPE": ["video_instance"],
        "DATASET_TYPE_TEST": ["video_instance"],
    },
    "SEED": 42,
    "DATALOADER": {"NUM_WORKERS": 4},
}

# add_dvis_config: DVIS++-only additions
_DVIS_DVISPLUS_EXTRA: Dict[str, Any] = {
    "MODEL": {
        "SEM_SEG_HEAD": {"RETURN_TRANSFORMER_FEATURE": False},
        "TRACKER": {
            "NOISE_MODE": "none",
            "NOISE_RATIO": 0.5,
            "USE_CL": True,
        },
        "REFINER": {"USE_CL": True},
        # contrastive learning plugin (training only)
        "CL_PLUGIN": {
            "CL_PLUGIN_NAME": "CTCLPlugin",
            "REID_WEIGHT": 2.0,
            "AUX_REID_WEIGHT": 3.0,
            "NUM_NEGATIVES": 99,
            "FUSION_LOSS": False,
            "BIO_CL": False,
            "ONE_DIRECTION": True,
            "MOMENTUM_EMBED": True,
            "NOISE_EMBED": False,
        },
    },
}

# add_ctvis_config
_CTVIS_DVISPLUS: Dict[str, Any] = {
    "MODEL": {
        "MASK_FORMER": {
            "REID_HIDDEN_DIM": 256,
            "NUM_REID_HEAD_LAYERS": 3,
        },
    },
}

# =============================================================================================
# original DVIS: dvis/config.py (zhang-tao-whu/DVIS @5cad4d95ef69c3b19780cad4efba4ca8711ee1c1)
# add_minvis_config: no REID_BRANCH; add_dvis_config: TRACKER / REFINER hold only DECODER_LAYERS;
# there is no add_ctvis_config and no VIT_ADAPTER block.
# =============================================================================================
_MINVIS_DVIS: Dict[str, Any] = {
    "INPUT": {"SAMPLING_FRAME_RATIO": 1.0},
    "MODEL": {"MASK_FORMER": {"TEST": {"WINDOW_INFERENCE": False}}},
}


def _build(*parts: Mapping[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for p in parts:
        out = deep_merge(out, p)
    return out


#: DVIS++ defaults (get_cfg + deeplab + maskformer2 (+VIT_ADAPTER) + video + minvis + dvis + ctvis).
OFFICIAL_DEFAULTS: Dict[str, Any] = _build(
    _DETECTRON2, _DEEPLAB, _MASKFORMER2, _VIT_ADAPTER_DVISPLUS, _MASKFORMER2_VIDEO,
    _MINVIS_DVISPLUS, _DVIS_COMMON, _DVIS_DVISPLUS_EXTRA, _CTVIS_DVISPLUS,
)

#: Original DVIS defaults (get_cfg + deeplab + maskformer2 + video + minvis + dvis).
OFFICIAL_DEFAULTS_DVIS: Dict[str, Any] = _build(
    _DETECTRON2, _DEEPLAB, _MASKFORMER2, _MASKFORMER2_VIDEO, _MINVIS_DVIS, _DVIS_COMMON,
)


# =============================================================================================
# DVIS-DAQ: DVIS_DAQ/train_net_daq.py builds the DVIS++ cfg (its dvis_Plus/config.py equals the DVIS++ folder's
# but for comments) plus dvis_daq/config.py::add_daq_config (zhang-tao-whu/DVIS_Plus @c0eb249).
# =============================================================================================
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


#: official MODEL.META_ARCHITECTURE -> (family, mode); the family picks the default table below.
META_ARCHS = {
    "DVIS_Plus_online": ("dvis++", "online"),
    "DVIS_Plus_offline": ("dvis++", "offline"),
    "DVIS_online": ("dvis", "online"),
    "DVIS_offline": ("dvis", "offline"),
    "DVIS_DAQ_online": ("daq", "online"),
    "DVIS_DAQ_offline": ("daq", "offline"),
    # stage 1 (the segmenter alone, queries matched frame to frame): MinVIS exists in both the DVIS++ and the
    # original DVIS repositories (same code; its decoder is the original-DVIS one, so the DVIS defaults apply),
    # CTMinVIS (DVIS++ only) adds the re-identification head and matches by it
    "MinVIS": ("dvis", "segmenter"),
    "CTMinVIS": ("dvis++", "segmenter"),
}

#: Default table per model family (the ``variant`` of :class:`DVISConfig`). A new family adds its table here and
#: its META_ARCHITECTURE names to :data:`META_ARCHS`.
DEFAULTS_BY_FAMILY: Dict[str, Dict[str, Any]] = {
    "dvis++": OFFICIAL_DEFAULTS,
    "dvis": OFFICIAL_DEFAULTS_DVIS,
    "daq": OFFICIAL_DEFAULTS_DAQ,
}
_ALIASES = {"dvis_plus": "dvis++", "dvisplus": "dvis++", "dvis_daq": "daq", "dvis-daq": "daq"}


def official_defaults(variant: str = "dvis++") -> Dict[str, Any]:
    """A fresh deep copy of the defaults of a family: ``"dvis++"`` (DVIS_Plus), ``"dvis"`` (original DVIS) or
    ``"daq"`` (DVIS-DAQ)."""
    family = _ALIASES.get(variant, variant)
    if family not in DEFAULTS_BY_FAMILY:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(DEFAULTS_BY_FAMILY)}")
    return copy.deepcopy(DEFAULTS_BY_FAMILY[family])
