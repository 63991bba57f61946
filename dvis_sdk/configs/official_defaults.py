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
:func:`decode_cfg_value` / :func:`decode_cfg_tree`.
"""
from __future__ import annotations

import ast
import copy
from typing import Any, Dict, Mapping

__all__ = [
    "OFFICIAL_DEFAULTS",
    "OFFICIAL_DEFAULTS_DVIS",
    "VIT_ADAPTER_PRESETS",
    "DINOV2_VIT_ARCHS",
    "DINOV2_VIT_COMMON_KWARGS",
    "official_defaults",
    "decode_cfg_value",
    "decode_cfg_tree",
]


def _merge(base: Dict[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """Recursively merge ``over`` into a deep copy of ``base`` (later config functions win)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# =============================================================================================
# detectron2/config/defaults.py  (facebookresearch/detectron2 @084acd0f781f217e8d7b93a0099b08fce82cd88f)
# Subset: blocks used by the DVIS models and their data/solver code.
# =============================================================================================
_DETECTRON2: Dict[str, Any] = {
    "VERSION": 2,
    "MODEL": {
        "LOAD_PROPOSALS": False,
        "MASK_ON": False,
        "KEYPOINT_ON": False,
        "DEVICE": "cuda",
        "META_ARCHITECTURE": "GeneralizedRCNN",
        "WEIGHTS": "",
        # BGR order because INPUT.FORMAT defaults to "BGR"; every DVIS yaml overrides both (RGB).
        "PIXEL_MEAN": [103.530, 116.280, 123.675],
        "PIXEL_STD": [1.0, 1.0, 1.0],
        "BACKBONE": {
            "NAME": "build_resnet_backbone",
            "FREEZE_AT": 2,
        },
        "SEM_SEG_HEAD": {
            "NAME": "SemSegFPNHead",
            "IN_FEATURES": ["p2", "p3", "p4", "p5"],
            "IGNORE_VALUE": 255,
            "NUM_CLASSES": 54,
            "CONVS_DIM": 128,
            "COMMON_STRIDE": 4,
            "NORM": "GN",
            "LOSS_WEIGHT": 1.0,
        },
        "RESNETS": {
            "DEPTH": 50,
            "OUT_FEATURES": ["res4"],
            "NUM_GROUPS": 1,
            "NORM": "FrozenBN",
            "WIDTH_PER_GROUP": 64,
            # True = stride on the 1x1 conv (MSRA); the DVIS yamls set False (stride on the 3x3).
            "STRIDE_IN_1X1": True,
            "RES5_DILATION": 1,
            "RES2_OUT_CHANNELS": 256,
            "STEM_OUT_CHANNELS": 64,
            "DEFORM_ON_PER_STAGE": [False, False, False, False],
            "DEFORM_MODULATED": False,
            "DEFORM_NUM_GROUPS": 1,
        },
    },
    "INPUT": {
        "MIN_SIZE_TRAIN": (800,),
        "MIN_SIZE_TRAIN_SAMPLING": "choice",
        "MAX_SIZE_TRAIN": 1333,
        "MIN_SIZE_TEST": 800,
        "MAX_SIZE_TEST": 1333,
        "RANDOM_FLIP": "horizontal",
        "CROP": {
            "ENABLED": False,
            "TYPE": "relative_range",
            "SIZE": [0.9, 0.9],
        },
        "FORMAT": "BGR",
        "MASK_FORMAT": "polygon",
    },
    "DATASETS": {
        "TRAIN": (),
        "PROPOSAL_FILES_TRAIN": (),
        "PRECOMPUTED_PROPOSAL_TOPK_TRAIN": 2000,
        "TEST": (),
        "PROPOSAL_FILES_TEST": (),
        "PRECOMPUTED_PROPOSAL_TOPK_TEST": 1000,
    },
    "DATALOADER": {
        "NUM_WORKERS": 4,
        "ASPECT_RATIO_GROUPING": True,
        "SAMPLER_TRAIN": "TrainingSampler",
        "REPEAT_THRESHOLD": 0.0,
        "FILTER_EMPTY_ANNOTATIONS": True,
    },
    "SOLVER": {
        "LR_SCHEDULER_NAME": "WarmupMultiStepLR",
        "MAX_ITER": 40000,
        "BASE_LR": 0.001,
        "MOMENTUM": 0.9,
        "NESTEROV": False,
        "WEIGHT_DECAY": 0.0001,
        "WEIGHT_DECAY_NORM": 0.0,
        "GAMMA": 0.1,
        "STEPS": (30000,),
        "WARMUP_FACTOR": 1.0 / 1000,
        "WARMUP_ITERS": 1000,
        "WARMUP_METHOD": "linear",
        "CHECKPOINT_PERIOD": 5000,
        "IMS_PER_BATCH": 16,
        "REFERENCE_WORLD_SIZE": 0,
        "BIAS_LR_FACTOR": 1.0,
        "WEIGHT_DECAY_BIAS": 0.0001,  # = SOLVER.WEIGHT_DECAY at definition time
        "CLIP_GRADIENTS": {
            "ENABLED": False,
            "CLIP_TYPE": "value",
            "CLIP_VALUE": 1.0,
            "NORM_TYPE": 2.0,
        },
        "AMP": {"ENABLED": False},
    },
    "TEST": {
        "EXPECTED_RESULTS": [],
        "EVAL_PERIOD": 0,
        "KEYPOINT_OKS_SIGMAS": [],
        "DETECTIONS_PER_IMAGE": 100,
        "AUG": {
            "ENABLED": False,
            "MIN_SIZES": (400, 500, 600, 700, 800, 900, 1000, 1100, 1200),
            "MAX_SIZE": 4000,
            "FLIP": True,
        },
        "PRECISE_BN": {"ENABLED": False, "NUM_ITER": 200},
    },
    "OUTPUT_DIR": "./output",
    "SEED": -1,
    "CUDNN_BENCHMARK": False,
    "VIS_PERIOD": 0,
}

# =============================================================================================
# detectron2 projects/DeepLab/deeplab/config.py :: add_deeplab_config
# (USE_DEPTHWISE_SEPARABLE_CONV exists in newer detectron2 versions and in the environment that
# produced the test fixtures.)
# =============================================================================================
_DEEPLAB: Dict[str, Any] = {
    "INPUT": {"CROP": {"SINGLE_CATEGORY_MAX_AREA": 1.0}},
    "SOLVER": {"POLY_LR_POWER": 0.9, "POLY_LR_CONSTANT_ENDING": 0.0},
    "MODEL": {
        "SEM_SEG_HEAD": {
            "LOSS_TYPE": "hard_pixel_mining",
            "PROJECT_FEATURES": ["res2"],
            "PROJECT_CHANNELS": [48],
            "ASPP_CHANNELS": 256,
            "ASPP_DILATIONS": [6, 12, 18],
            "ASPP_DROPOUT": 0.1,
            "USE_DEPTHWISE_SEPARABLE_CONV": False,
        },
        "RESNETS": {
            "RES4_DILATION": 1,
            # RES5_MULTI_GRID / STEM_TYPE are only read by DeepLab's own backbone builder;
            # detectron2's build_resnet_backbone (used by DVIS) ignores them ("not used" in the yamls).
            "RES5_MULTI_GRID": [1, 2, 4],
            "STEM_TYPE": "deeplab",
        },
    },
}

# =============================================================================================
# mask2former/config.py :: add_maskformer2_config
# facebookresearch/Mask2Former @161be514814ea63440fae520d2ec72707b62ba54. The original DVIS ships this
# file unchanged (the index stores no separate copy for zhang-tao-whu/DVIS: identical content).
# DVIS++ (zhang-tao-whu/DVIS_Plus, DVIS_DAQ/mask2former/config.py @c0eb249) adds MODEL.VIT_ADAPTER,
# see _VIT_ADAPTER_DVISPLUS below; the rest is identical.
# =============================================================================================
_MASKFORMER2: Dict[str, Any] = {
    "INPUT": {
        "DATASET_MAPPER_NAME": "mask_former_semantic",
        "COLOR_AUG_SSD": False,
        "CROP": {"SINGLE_CATEGORY_MAX_AREA": 1.0},
        "SIZE_DIVISIBILITY": -1,
        # LSJ aug
        "IMAGE_SIZE": 1024,
        "MIN_SCALE": 0.1,
        "MAX_SCALE": 2.0,
    },
    "SOLVER": {
        "WEIGHT_DECAY_EMBED": 0.0,
        "OPTIMIZER": "ADAMW",
        "BACKBONE_MULTIPLIER": 0.1,
    },
    "MODEL": {
        "MASK_FORMER": {
            # loss
            "DEEP_SUPERVISION": True,
            "NO_OBJECT_WEIGHT": 0.1,
            "CLASS_WEIGHT": 1.0,
            "DICE_WEIGHT": 1.0,
            "MASK_WEIGHT": 20.0,
            # transformer
            "NHEADS": 8,
            "DROPOUT": 0.1,
            "DIM_FEEDFORWARD": 2048,
            "ENC_LAYERS": 0,
            # DEC_LAYERS counts the learnable-query "layer": the decoder has DEC_LAYERS - 1 layers.
            "DEC_LAYERS": 6,
            "PRE_NORM": False,
            "HIDDEN_DIM": 256,
            "NUM_OBJECT_QUERIES": 100,
            "TRANSFORMER_IN_FEATURE": "res5",
            "ENFORCE_INPUT_PROJ": False,
            "TEST": {
                "SEMANTIC_ON": True,
                "INSTANCE_ON": False,
                "PANOPTIC_ON": False,
                "OBJECT_MASK_THRESHOLD": 0.0,
                "OVERLAP_THRESHOLD": 0.0,
                "SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE": False,
            },
            "SIZE_DIVISIBILITY": 32,
            "TRANSFORMER_DECODER_NAME": "MultiScaleMaskedTransformerDecoder",
            # point loss
            "TRAIN_NUM_POINTS": 112 * 112,
            "OVERSAMPLE_RATIO": 3.0,
            "IMPORTANCE_SAMPLE_RATIO": 0.75,
        },
        "SEM_SEG_HEAD": {
            "MASK_DIM": 256,
            "TRANSFORMER_ENC_LAYERS": 0,
            "PIXEL_DECODER_NAME": "BasePixelDecoder",
            "DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES": ["res3", "res4", "res5"],
            # NOTE: MSDeformAttnPixelDecoder.from_config reads neither of the next two keys: the
            # encoder uses MODEL.MASK_FORMER.NHEADS heads, n_points 4 and a hard-coded FFN of 1024.
            "DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS": 4,
            "DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS": 8,
        },
        "SWIN": {
            "PRETRAIN_IMG_SIZE": 224,
            "PATCH_SIZE": 4,
            "EMBED_DIM": 96,
            "DEPTHS": [2, 2, 6, 2],
            "NUM_HEADS": [3, 6, 12, 24],
            "WINDOW_SIZE": 7,
            "MLP_RATIO": 4.0,
            "QKV_BIAS": True,
            "QK_SCALE": None,
            "DROP_RATE": 0.0,
            "ATTN_DROP_RATE": 0.0,
            "DROP_PATH_RATE": 0.3,
            "APE": False,
            "PATCH_NORM": True,
            "OUT_FEATURES": ["res2", "res3", "res4", "res5"],
            "USE_CHECKPOINT": False,
        },
    },
}

# DVIS++ mask2former/config.py (zhang-tao-whu/DVIS_Plus, DVIS_DAQ/mask2former/config.py @c0eb249;
# the DVIS_Plus/ copy is not stored separately in the index, i.e. identical) :: "vit adapter backbone".
# NAME selects an entry of get_adapter_args (see VIT_ADAPTER_PRESETS); WITH_CP is gradient
# checkpointing (numerically irrelevant).
_VIT_ADAPTER_DVISPLUS: Dict[str, Any] = {
    "MODEL": {
        "VIT_ADAPTER": {
            "NAME": "vitl",
            "VIT_WEIGHT": "dinov2_vitl14_pretrain.pth",
            "FREEZE_VIT": True,
            "FINETUNE": False,
            "FINETUNE_INDEXES": [0],
            "WITH_CP": True,
        },
    },
}

# =============================================================================================
# mask2former_video/config.py :: add_maskformer2_video_config
# (facebookresearch/Mask2Former @7fd0562; DVIS and DVIS++ ship it unchanged)
# =============================================================================================
_MASKFORMER2_VIDEO: Dict[str, Any] = {
    "INPUT": {
        "SAMPLING_FRAME_NUM": 2,
        "SAMPLING_FRAME_RANGE": 20,
        "SAMPLING_FRAME_SHUFFLE": False,
        "AUGMENTATIONS": [],  # "brightness", "contrast", "saturation", "rotation"
    },
}

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
        out = _merge(out, p)
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


def official_defaults(variant: str = "dvis++") -> Dict[str, Any]:
    """A fresh deep copy of the defaults of ``"dvis++"`` (DVIS_Plus) or ``"dvis"`` (original DVIS)."""
    if variant in ("dvis++", "dvis_plus", "dvisplus"):
        return copy.deepcopy(OFFICIAL_DEFAULTS)
    if variant == "dvis":
        return copy.deepcopy(OFFICIAL_DEFAULTS_DVIS)
    raise ValueError(f"unknown variant {variant!r}; expected 'dvis++' or 'dvis'")


# =============================================================================================
# ViT-Adapter presets: DVIS++ mask2former/modeling/backbones_vitAdapter/adapter.py :: get_adapter_args
# (zhang-tao-whu/DVIS_Plus, DVIS_DAQ/... @c0eb249; DVIS_Plus/ copy identical) combined with
# backbones.py :: get_models (DVIS_Plus/mask2former/modeling/backbones_vitAdapter/backbones.py @c0eb249).
# Keys are the field names of dvis_sdk.config.ViTAdapterConfig (minus freeze_vit, which comes from
# MODEL.VIT_ADAPTER.FREEZE_VIT).
# get_adapter_args only knows 'vitl' and 'vitb' (any other NAME raises NotImplementedError), although
# get_models can build 'vits' / 'vitg' ViTs, see DINOV2_VIT_ARCHS.
# =============================================================================================

#: get_models(): keyword arguments shared by every DINOv2 ViT built for the adapter.
DINOV2_VIT_COMMON_KWARGS: Dict[str, Any] = {
    "img_size": 592,        # pos_embed holds (592 // 16) ** 2 + 1 = 1370 tokens; also the adapter's pretrain_size
    "patch_size": 16,       # DINOv2's 14x14 patch kernel is bilinearly resized to 16x16 when loading
    "init_values": 1.0e-05,  # ViT LayerScale
    "ffn_layer": "mlp",     # forced to "mlp" for every size (also vitg)
    "block_chunks": 0,      # blocks are a flat ModuleList (keys vit_module.blocks.<i>.*)
    "qkv_bias": True,
    "proj_bias": True,
    "ffn_bias": True,
    "drop_path_rate": 0.0,
    "in_chans": 3,
}

#: backbones.py vit_small / vit_base / vit_large / vit_giant2 (all mlp_ratio 4, MemEffAttention blocks,
#: LayerNorm eps 1e-6).
DINOV2_VIT_ARCHS: Dict[str, Dict[str, Any]] = {
    "vits": {"embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0},
    "vitb": {"embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0},
    "vitl": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0},
    "vitg": {"embed_dim": 1536, "depth": 40, "num_heads": 24, "mlp_ratio": 4.0},
}


def _adapter_preset(vit: str, deform_num_heads: int, interaction_indexes) -> Dict[str, Any]:
    arch = DINOV2_VIT_ARCHS[vit]
    kw = DINOV2_VIT_COMMON_KWARGS
    return {
        # ViT (get_models)
        "img_size": kw["img_size"],
        "patch_size": kw["patch_size"],
        "embed_dim": arch["embed_dim"],
        "depth": arch["depth"],
        "num_heads": arch["num_heads"],
        "mlp_ratio": arch["mlp_ratio"],
        "layer_scale_init_values": kw["init_values"],
        "qkv_bias": kw["qkv_bias"],
        "proj_bias": kw["proj_bias"],
        "ffn_bias": kw["ffn_bias"],
        "ffn_layer": kw["ffn_layer"],
        # adapter (get_adapter_args)
        "conv_inplane": 64,
        "n_points": 4,
        "deform_num_heads": deform_num_heads,
        "init_values": 1e-6,  # injector gamma (the compact adapter of DVIS++ builds no injector)
        "with_cffn": True,
        "cffn_ratio": 0.25,
        "deform_ratio": 0.5,
        "add_vit_feature": True,
        "use_extra_extractor": True,
        "interaction_indexes": [list(x) for x in interaction_indexes],
    }


#: get_adapter_args presets, keyed by MODEL.VIT_ADAPTER.NAME.
VIT_ADAPTER_PRESETS: Dict[str, Dict[str, Any]] = {
    "vitl": _adapter_preset("vitl", 16, [[0, 5], [6, 11], [12, 17], [18, 23]]),
    "vitb": _adapter_preset("vitb", 12, [[0, 2], [3, 5], [6, 8], [9, 11]]),
}


# =============================================================================================
# yacs value decoding
# =============================================================================================
def decode_cfg_value(value: Any) -> Any:
    """Decode one yaml value the way yacs' ``CfgNode._decode_cfg_value`` does during ``merge_from_file``.

    Strings are passed through ``ast.literal_eval`` and kept as they are when that fails, so
    ``"(28000,)"`` -> ``(28000,)``, ``'("ovis_val",)'`` -> ``("ovis_val",)``, ``"1e-5"`` -> ``1e-05``
    (PyYAML reads a float without a dot as a string), while ``"vis"`` / ``"RGB"`` stay strings.
    Non-strings are returned unchanged. (yacs then coerces tuple <-> list to the default's type.)
    """
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def decode_cfg_tree(tree: Any) -> Any:
    """Apply :func:`decode_cfg_value` to every leaf of a nested dict (returns a new tree)."""
    if isinstance(tree, Mapping):
        return {k: decode_cfg_tree(v) for k, v in tree.items()}
    return decode_cfg_value(tree)
