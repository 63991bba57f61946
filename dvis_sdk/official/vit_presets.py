"""ViT-Adapter presets (``MODEL.VIT_ADAPTER.NAME``) and the DINOv2 ViT sizes they build on."""
from __future__ import annotations

from typing import Any, Dict

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


