"""Official cfg blocks shared by every DVIS family: detectron2 ``get_cfg``, DeepLab, Mask2Former (image and
video) and the DVIS++ ViT-Adapter block. :mod:`.defaults` composes them into per-family default tables."""
from __future__ import annotations

from typing import Any, Dict

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

