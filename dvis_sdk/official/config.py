"""An official cfg tree -> :class:`DVISConfig` (architecture, backbone, heads, test settings, dataset classes)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

from ..config import (
    BackboneConfig,
    DVISConfig,
    InputConfig,
    RefinerConfig,
    ResNetConfig,
    SegmenterConfig,
    SwinConfig,
    TestConfig,
    TrackerConfig,
    ViTAdapterConfig,
)
from ..configs.datasets import CLASS_NAMES, dataset_key
from ..configs.vipseg import PANOPTIC_DATASETS
from .daq import daq_config_from_tree
from .defaults import META_ARCHS
from .errors import ConversionError
from .minvis import decoder_variant, stage1_config
from .vit_presets import VIT_ADAPTER_PRESETS
from .yaml_config import official_cfg_tree

_BACKBONES = {
    "build_resnet_backbone": "resnet",
    "D2SwinTransformer": "swin",
    "D2VitAdapterDinoV2": "vit_adapter",
}



def _vit_adapter_config(va: Mapping) -> ViTAdapterConfig:
    name = va.get("NAME", "vitl")
    if name == "custom":
        custom = va.get("CUSTOM") or {}
        vit, ad = custom.get("VIT", {}), custom.get("ADAPTER", {})
        return ViTAdapterConfig(
            img_size=vit["IMG_SIZE"], patch_size=vit["PATCH_SIZE"], embed_dim=vit["EMBED_DIM"], depth=vit["DEPTH"],
            num_heads=vit["NUM_HEADS"], mlp_ratio=vit.get("MLP_RATIO", 4.0),
            layer_scale_init_values=vit.get("INIT_VALUES", 1e-5), qkv_bias=vit.get("QKV_BIAS", True),
            proj_bias=vit.get("PROJ_BIAS", True), ffn_bias=vit.get("FFN_BIAS", True),
            ffn_layer=vit.get("FFN_LAYER", "mlp"), conv_inplane=ad["CONV_INPLANE"], n_points=ad.get("N_POINTS", 4),
            deform_num_heads=ad["DEFORM_NUM_HEADS"], init_values=ad.get("INIT_VALUES", 1e-6),
            with_cffn=ad.get("WITH_CFFN", True), cffn_ratio=ad.get("CFFN_RATIO", 0.25),
            deform_ratio=ad.get("DEFORM_RATIO", 0.5), add_vit_feature=ad.get("ADD_VIT_FEATURE", True),
            use_extra_extractor=ad.get("USE_EXTRA_EXTRACTOR", True),
            interaction_indexes=tuple(tuple(x) for x in ad["INTERACTION_INDEXES"]),
            freeze_vit=va.get("FREEZE_VIT", True),
        )
    if name not in VIT_ADAPTER_PRESETS:
        raise ConversionError(f"unknown MODEL.VIT_ADAPTER.NAME {name!r}; "
                              f"known: {sorted(VIT_ADAPTER_PRESETS)} or 'custom'")
    p = dict(VIT_ADAPTER_PRESETS[name])
    p["interaction_indexes"] = tuple(tuple(x) for x in p["interaction_indexes"])
    p["freeze_vit"] = va.get("FREEZE_VIT", True)
    return ViTAdapterConfig(**p)


def _backbone_config(model: Mapping) -> BackboneConfig:
    name = model["BACKBONE"]["NAME"]
    if name not in _BACKBONES:
        raise ConversionError(f"unsupported MODEL.BACKBONE.NAME {name!r}; supported: {sorted(_BACKBONES)}")
    kind = _BACKBONES[name]
    if kind == "resnet":
        r = model["RESNETS"]
        if r.get("NORM", "FrozenBN") != "FrozenBN":
            raise ConversionError(f"MODEL.RESNETS.NORM {r['NORM']!r} unsupported (official DVIS models use FrozenBN)")
        if any(r.get("DEFORM_ON_PER_STAGE", [False] * 4)):
            raise ConversionError("deformable convolutions in the ResNet (MODEL.RESNETS.DEFORM_ON_PER_STAGE) "
                                  "are unsupported")
        if r.get("STEM_TYPE", "basic") != "basic":
            raise ConversionError(f"MODEL.RESNETS.STEM_TYPE {r['STEM_TYPE']!r} unsupported")
        return BackboneConfig(type="resnet", resnet=ResNetConfig(
            depth=r["DEPTH"], stem_out_channels=r["STEM_OUT_CHANNELS"], res2_out_channels=r["RES2_OUT_CHANNELS"],
            width_per_group=r["WIDTH_PER_GROUP"], num_groups=r["NUM_GROUPS"], stride_in_1x1=r["STRIDE_IN_1X1"],
            res5_dilation=r["RES5_DILATION"]))
    if kind == "swin":
        s = model["SWIN"]
        return BackboneConfig(type="swin", swin=SwinConfig(
            pretrain_img_size=s["PRETRAIN_IMG_SIZE"], patch_size=s["PATCH_SIZE"], embed_dim=s["EMBED_DIM"],
            depths=tuple(s["DEPTHS"]), num_heads=tuple(s["NUM_HEADS"]), window_size=s["WINDOW_SIZE"],
            mlp_ratio=s["MLP_RATIO"], qkv_bias=s["QKV_BIAS"], qk_scale=s.get("QK_SCALE"), ape=s["APE"],
            patch_norm=s["PATCH_NORM"]))
    return BackboneConfig(type="vit_adapter", vit_adapter=_vit_adapter_config(model["VIT_ADAPTER"]))


def _dataset_and_classes(tree: Mapping, num_classes: int):
    for name in list(tree.get("DATASETS", {}).get("TEST", [])) + list(tree.get("DATASETS", {}).get("TRAIN", [])):
        key = dataset_key(name)
        if key is not None and len(CLASS_NAMES[key]) == num_classes:
            return key, list(CLASS_NAMES[key])
    return None, None


def _test_config(tree: Mapping, mf: Mapping) -> TestConfig:
    """``MODEL.MASK_FORMER.TEST``: window, top-k and the task with its post-processing settings."""
    test = mf["TEST"]
    task = str(test.get("TASK", "vis")).lower()
    if task not in ("vis", "vps", "vss"):
        raise ConversionError(f"MODEL.MASK_FORMER.TEST.TASK {task!r} is not supported; expected 'vis', 'vps' or 'vss'")
    things = None
    if task == "vps":
        # the official VPS post-processing: isthing = class index < len(thing_dataset_id_to_contiguous_id) of the
        # metadata of DATASETS.TRAIN[0]
        train = list(tree.get("DATASETS", {}).get("TRAIN", []))
        things = PANOPTIC_DATASETS.get(train[0], (None, None))[1] if train else None
        if things is None:
            known = sorted(k for k, v in PANOPTIC_DATASETS.items() if v[1])
            raise ConversionError(
                f"MODEL.MASK_FORMER.TEST.TASK 'vps' needs the number of thing classes of DATASETS.TRAIN[0] "
                f"({train[0] if train else 'none given'!r}); known: {known}. "
                "Set DATASETS.TRAIN to one of them, or build the DVISConfig and set test.num_thing_classes")
    return TestConfig(window_size=test.get("WINDOW_SIZE", 3), max_num=test.get("MAX_NUM", 20), task=task,
                      object_mask_threshold=float(test.get("OBJECT_MASK_THRESHOLD", 0.8)),
                      overlap_threshold=float(test.get("OVERLAP_THRESHOLD", 0.8)), num_thing_classes=things)


def load_official_config(cfg: Union[str, Path, Mapping], mode: Optional[str] = None) -> DVISConfig:
    """Parse an official DVIS / DVIS++ / DVIS-DAQ yaml (with its ``_BASE_`` chain) or the same tree as a nested dict.

    Args:
        cfg: path to the yaml, a path inside the shipped official configs, or the cfg tree as a dict.
        mode: override ``"online"`` / ``"offline"`` (an offline model can run online without its refiner) or
            ``"segmenter"`` (the segmenter alone, its queries matched frame to frame as the official MinVIS /
            CTMinVIS; what the stage-1 META_ARCHITECTUREs ``MinVIS`` / ``CTMinVIS`` always are).
    """
    tree = official_cfg_tree(cfg)
    model = tree["MODEL"]
    arch = model.get("META_ARCHITECTURE")
    if arch not in META_ARCHS:
        raise ConversionError(f"unsupported MODEL.META_ARCHITECTURE {arch!r}; supported: {sorted(META_ARCHS)}")
    variant, arch_mode = META_ARCHS[arch]
    mf, head = model["MASK_FORMER"], model["SEM_SEG_HEAD"]
    final_mode = mode or arch_mode
    if arch_mode == "segmenter":  # MinVIS / CTMinVIS: the decoder named in the yaml decides the variant
        if final_mode != "segmenter":
            raise ConversionError(f"MODEL.META_ARCHITECTURE {arch!r} is a segmenter-only model (no tracker): it runs "
                                  f"with mode='segmenter', not {mode!r}")
        variant = decoder_variant(mf)
    if final_mode == "segmenter":  # built as an online config first, converted at the end
        mode = "online" if arch_mode != "offline" else "offline"
    if final_mode != "segmenter" and variant in ("dvis++", "daq") and not mf.get("REID_BRANCH", True):
        raise ConversionError("DVIS++ without MODEL.MASK_FORMER.REID_BRANCH is not supported")
    if head.get("PIXEL_DECODER_NAME", "MSDeformAttnPixelDecoder") != "MSDeformAttnPixelDecoder":
        raise ConversionError(f"unsupported pixel decoder {head['PIXEL_DECODER_NAME']!r}")
    if mf.get("PRE_NORM", False):
        raise ConversionError("MODEL.MASK_FORMER.PRE_NORM=True is not supported (official DVIS models are post-norm)")
    num_classes = head["NUM_CLASSES"]
    segmenter = SegmenterConfig(
        num_classes=num_classes, convs_dim=head["CONVS_DIM"], mask_dim=head["MASK_DIM"], norm=head["NORM"],
        transformer_enc_layers=head["TRANSFORMER_ENC_LAYERS"],
        # the official pixel decoder takes its heads from MASK_FORMER.NHEADS and hard-codes a 1024-wide FFN
        transformer_enc_nheads=mf["NHEADS"], transformer_enc_dim_feedforward=1024,
        in_features=tuple(head["IN_FEATURES"]),
        deform_in_features=tuple(head["DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES"]),
        common_stride=head["COMMON_STRIDE"], hidden_dim=mf["HIDDEN_DIM"], num_queries=mf["NUM_OBJECT_QUERIES"],
        nheads=mf["NHEADS"], dim_feedforward=mf["DIM_FEEDFORWARD"], dec_layers=mf["DEC_LAYERS"] - 1,
        pre_norm=mf["PRE_NORM"], enforce_input_proj=mf["ENFORCE_INPUT_PROJ"],
        reid_hidden_dim=mf.get("REID_HIDDEN_DIM", mf["HIDDEN_DIM"]),
        num_reid_head_layers=mf.get("NUM_REID_HEAD_LAYERS", 3),
    )
    daq = daq_config_from_tree(tree) if variant == "daq" else None  # MODEL.VIDEO_HEAD, incl. HIDDEN_DIM == MASK_DIM
    if final_mode != "segmenter" and variant == "dvis++" and segmenter.hidden_dim != segmenter.mask_dim:
        raise ConversionError(f"DVIS++ needs MASK_FORMER.HIDDEN_DIM == SEM_SEG_HEAD.MASK_DIM "
                              f"(got {segmenter.hidden_dim} and {segmenter.mask_dim}): the tracker's mask head outputs "
                              "HIDDEN_DIM channels")
    inp = tree.get("INPUT", {})
    if inp.get("FORMAT", "RGB") != "RGB":
        raise ConversionError(f"INPUT.FORMAT {inp.get('FORMAT')!r} unsupported (official DVIS models use RGB)")
    dataset, class_names = _dataset_and_classes(tree, num_classes)
    tr = model.get("TRACKER", {})
    config = DVISConfig(
        variant=variant,
        mode=mode or arch_mode,
        backbone=_backbone_config(model),
        segmenter=segmenter,
        tracker=TrackerConfig(decoder_layers=tr.get("DECODER_LAYERS", 6), noise_mode=tr.get("NOISE_MODE", "wa"),
                              noise_ratio=float(tr.get("NOISE_RATIO", 0.5))),
        refiner=RefinerConfig(decoder_layers=model.get("REFINER", {}).get("DECODER_LAYERS", 6))
        if (mode or arch_mode) == "offline" else None,
        input=InputConfig(pixel_mean=tuple(model["PIXEL_MEAN"]), pixel_std=tuple(model["PIXEL_STD"]),
                          min_size_test=inp.get("MIN_SIZE_TEST", 360), max_size_test=inp.get("MAX_SIZE_TEST", 640),
                          size_divisibility=mf.get("SIZE_DIVISIBILITY", 32), format="RGB"),
        test=_test_config(tree, mf),
        dataset=dataset,
        class_names=class_names,
        daq=daq,
    )
    return stage1_config(config, arch) if final_mode == "segmenter" else config


