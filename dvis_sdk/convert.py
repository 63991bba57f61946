"""Official DVIS / DVIS++ configs and checkpoints -> :class:`DVISConfig` and a state dict for our modules.

Official yaml files are parsed with their ``_BASE_`` chain and merged over the official default
values (recorded in :mod:`dvis_sdk.configs.official_defaults`), so no detectron2 is needed.
State-dict conversion is a prefix table per component plus an explicit list of training-only
keys; anything else is an error that names the keys.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Dict, Mapping, MutableMapping, Optional, Union

import torch

from .config import (
    BackboneConfig, DVISConfig, InputConfig, RefinerConfig, ResNetConfig, SegmenterConfig, SwinConfig, TestConfig,
    TrackerConfig, ViTAdapterConfig,
)

OFFICIAL_CONFIG_DIR = Path(__file__).parent / "configs" / "official"

# official checkpoint prefix -> our module prefix (one row per component)
KEY_PREFIXES = {
    "backbone.": "backbone.",
    "sem_seg_head.pixel_decoder.": "pixel_decoder.",
    "sem_seg_head.predictor.": "decoder.",
    "tracker.": "tracker.",
    "refiner.": "refiner.",
}
# keys official checkpoints carry for training only (or as non-persistent constants)
TRAINING_ONLY_PREFIXES = ("criterion.", "daq_criterion.")
CONSTANT_KEYS = ("pixel_mean", "pixel_std")

_META_ARCHS = {
    "DVIS_Plus_online": ("dvis++", "online"),
    "DVIS_Plus_offline": ("dvis++", "offline"),
    "DVIS_online": ("dvis", "online"),
    "DVIS_offline": ("dvis", "offline"),
    "DVIS_DAQ_online": ("daq", "online"),  # DVIS-DAQ: see convert_daq.py
    "DVIS_DAQ_offline": ("daq", "offline"),
}
_BACKBONES = {
    "build_resnet_backbone": "resnet",
    "D2SwinTransformer": "swin",
    "D2VitAdapterDinoV2": "vit_adapter",
}


class ConversionError(ValueError):
    """An official config or checkpoint that cannot be converted; the message says which keys / values."""


# ---------------------------------------------------------------------------------------------
# yaml
# ---------------------------------------------------------------------------------------------
def _deep_merge(base: MutableMapping, override: Mapping) -> MutableMapping:
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), Mapping):
            _deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _shipped_configs() -> list:
    return sorted(OFFICIAL_CONFIG_DIR.rglob("*.yaml")) if OFFICIAL_CONFIG_DIR.is_dir() else []


def find_official_yaml(name: Union[str, Path]) -> Path:
    """Resolve an official yaml: an existing path, or a (suffix of a) path inside the shipped official configs.

    ``"ovis/DVIS_Plus_Offline_R50.yaml"`` or ``"DVIS_Online_SwinL.yaml"`` work when unambiguous.
    """
    p = Path(name).expanduser()
    if p.is_file():
        return p
    want = Path(str(name).replace("\\", "/")).parts
    candidates = [c for c in _shipped_configs() if c.parts[-len(want):] == want]
    if len(candidates) == 1:
        return candidates[0]
    rel = [str(c.relative_to(OFFICIAL_CONFIG_DIR)) for c in candidates]
    if len(candidates) > 1:
        raise FileNotFoundError(f"official config {str(name)!r} is ambiguous; candidates: {rel}. "
                                "Give a longer path, e.g. one of these.")
    names = [str(c.relative_to(OFFICIAL_CONFIG_DIR)) for c in _shipped_configs()]
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.3)
    hint = f" Did you mean: {close}?" if close else ""
    raise FileNotFoundError(f"official config {str(name)!r} not found (not a file, not a shipped config).{hint}")


def _read_yaml_chain(path: Path, _seen: Optional[set] = None) -> dict:
    import yaml

    _seen = set() if _seen is None else _seen
    path = path.resolve()
    if path in _seen:
        raise ConversionError(f"_BASE_ cycle at {path}")
    _seen.add(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConversionError(f"cannot parse yaml {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} does not hold a yaml mapping")
    base = data.pop("_BASE_", None)
    if base is None:
        return data
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not base_path.is_file():
        raise ConversionError(f"{path}: _BASE_ {base!r} not found at {base_path}")
    tree = _read_yaml_chain(base_path, _seen)
    return dict(_deep_merge(tree, data))


def official_cfg_tree(cfg: Union[str, Path, Mapping]) -> dict:
    """The official cfg as a nested dict: yaml chain (or given dict) merged over the official defaults."""
    from .configs import official_defaults as od

    if isinstance(cfg, Mapping):
        tree = copy.deepcopy(dict(cfg))
        if "_BASE_" in tree:
            raise ConversionError("a config dict cannot use _BASE_; pass the yaml path instead")
    else:
        tree = _read_yaml_chain(find_official_yaml(cfg))
    # yacs literal-evaluates yaml strings on merge: '("ovis_val",)' is a tuple, "1e-5" a float
    tree = od.decode_cfg_tree(tree)
    arch = tree.get("MODEL", {}).get("META_ARCHITECTURE", "")
    defaults = od.OFFICIAL_DEFAULTS_DVIS if arch.startswith("DVIS_") and not arch.startswith("DVIS_Plus") \
        else od.OFFICIAL_DEFAULTS
    if arch.startswith("DVIS_DAQ"):  # DVIS-DAQ: the DVIS++ defaults + MODEL.VIDEO_HEAD
        from .configs.official_defaults_daq import OFFICIAL_DEFAULTS_DAQ as defaults
    return dict(_deep_merge(copy.deepcopy(defaults), tree))


def _vit_adapter_config(va: Mapping) -> ViTAdapterConfig:
    from .configs.official_defaults import VIT_ADAPTER_PRESETS

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
        raise ConversionError(f"unknown MODEL.VIT_ADAPTER.NAME {name!r}; known: {sorted(VIT_ADAPTER_PRESETS)} or 'custom'")
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
            raise ConversionError("deformable convolutions in the ResNet (MODEL.RESNETS.DEFORM_ON_PER_STAGE) are unsupported")
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
    from .configs.datasets import CLASS_NAMES, dataset_key

    for name in list(tree.get("DATASETS", {}).get("TEST", [])) + list(tree.get("DATASETS", {}).get("TRAIN", [])):
        key = dataset_key(name)
        if key is not None and len(CLASS_NAMES[key]) == num_classes:
            return key, list(CLASS_NAMES[key])
    return None, None


def load_official_config(cfg: Union[str, Path, Mapping], mode: Optional[str] = None) -> DVISConfig:
    """Parse an official DVIS / DVIS++ yaml (with its ``_BASE_`` chain) or the same tree as a nested dict.

    Args:
        cfg: path to the yaml, a path inside the shipped official configs, or the cfg tree as a dict.
        mode: override ``"online"`` / ``"offline"`` (an offline model can run online without its refiner).
    """
    tree = official_cfg_tree(cfg)
    model = tree["MODEL"]
    arch = model.get("META_ARCHITECTURE")
    if arch not in _META_ARCHS:
        raise ConversionError(f"unsupported MODEL.META_ARCHITECTURE {arch!r}; supported: {sorted(_META_ARCHS)}")
    variant, arch_mode = _META_ARCHS[arch]
    mf, head = model["MASK_FORMER"], model["SEM_SEG_HEAD"]
    if variant in ("dvis++", "daq") and not mf.get("REID_BRANCH", True):
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
    daq = None
    if variant == "daq":  # DVIS-DAQ: MODEL.VIDEO_HEAD (validated there, incl. HIDDEN_DIM == MASK_DIM)
        from .convert_daq import DAQConfigError, daq_config_from_tree
        try:
            daq = daq_config_from_tree(tree)
        except DAQConfigError as e:
            raise ConversionError(str(e)) from None
    if variant == "dvis++" and segmenter.hidden_dim != segmenter.mask_dim:
        raise ConversionError(f"DVIS++ needs MASK_FORMER.HIDDEN_DIM == SEM_SEG_HEAD.MASK_DIM "
                              f"(got {segmenter.hidden_dim} and {segmenter.mask_dim}): the tracker's mask head outputs "
                              "HIDDEN_DIM channels")
    inp = tree.get("INPUT", {})
    if inp.get("FORMAT", "RGB") != "RGB":
        raise ConversionError(f"INPUT.FORMAT {inp.get('FORMAT')!r} unsupported (official DVIS models use RGB)")
    dataset, class_names = _dataset_and_classes(tree, num_classes)
    tr = model.get("TRACKER", {})
    return DVISConfig(
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
        test=TestConfig(window_size=mf["TEST"].get("WINDOW_SIZE", 3), max_num=mf["TEST"].get("MAX_NUM", 20)),
        dataset=dataset,
        class_names=class_names,
        daq=daq,
    )


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def load_official_checkpoint(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read an official ``.pth`` safely (``weights_only=True``: no pickled code runs) or a ``.safetensors``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a plain weights file"
        raise ConversionError(f"cannot read {path} as a weights-only PyTorch checkpoint: {e}") from None
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return dict(obj)


def convert_official_state_dict(state_dict: Mapping[str, Any], cfg: DVISConfig) -> Dict[str, torch.Tensor]:
    """Map an official DVIS / DVIS++ state dict (or a detectron2 checkpoint ``{"model": ...}``) to our key names.

    Training-only entries (``criterion.*``) and the non-persistent ``pixel_mean``/``pixel_std`` are dropped
    explicitly; refiner weights are dropped when ``cfg.mode == "online"``. Any other key that does not belong
    to a known component raises :class:`ConversionError` listing the keys.
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
        for src, dst in KEY_PREFIXES.items():
            if key.startswith(src):
                break
        else:
            unknown.append(key)
            continue
        if src == "refiner." and cfg.mode != "offline":
            continue  # an offline checkpoint run online: the refiner is simply not used
        if not isinstance(value, torch.Tensor):
            value = torch.as_tensor(value)
        out[dst + key[len(src):]] = value
    if unknown:
        raise ConversionError(f"{len(unknown)} key(s) of the official checkpoint belong to no known component: "
                              f"{sorted(unknown)[:20]}{' ...' if len(unknown) > 20 else ''}")
    if cfg.mode == "offline" and not any(k.startswith("refiner.") for k in out):
        raise ConversionError("an offline config needs refiner weights, but the checkpoint has no 'refiner.*' keys "
                              "(is this an online checkpoint? use mode='online')")
    return out
