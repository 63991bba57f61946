"""Typed, JSON-serialisable model configuration.

A :class:`DVISConfig` holds everything needed to build a model and run the official test
pipeline; it never refers to detectron2. :func:`dvis_sdk.official.load_official_config` turns an
official yaml into one of these.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

from .runtime import jsonable

VARIANTS = ("dvis++", "dvis", "daq")
#: "online": segmenter + tracker; "offline": + temporal refiner; "segmenter": the segmenter alone, its queries
#: associated frame to frame by cosine similarity (the official stage-1 MinVIS / CTMinVIS meta-architectures)
MODES = ("online", "offline", "segmenter")
#: what a segmenter-only model matches frames by: "embeds" = the decoder's ``pred_embds`` (MinVIS), "reid" = the
#: DVIS++ re-identification embeddings ``pred_reid_embed`` (CTMinVIS); "auto": "reid" for DVIS++, else "embeds"
MATCH_EMBEDDINGS = ("auto", "embeds", "reid")
BACKBONES = ("resnet", "swin", "vit_adapter")


@dataclass
class ResNetConfig:
    """detectron2 ResNet (FrozenBN, res2..res5)."""

    depth: int = 50
    stem_out_channels: int = 64
    res2_out_channels: int = 256
    width_per_group: int = 64
    num_groups: int = 1
    stride_in_1x1: bool = False
    res5_dilation: int = 1


@dataclass
class SwinConfig:
    """Mask2Former's D2SwinTransformer."""

    pretrain_img_size: int = 224
    patch_size: int = 4
    embed_dim: int = 96
    depths: Tuple[int, ...] = (2, 2, 6, 2)
    num_heads: Tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: Optional[float] = None
    ape: bool = False
    patch_norm: bool = True


@dataclass
class ViTAdapterConfig:
    """DINOv2 ViT + the compact (injector-free) ViT-Adapter of DVIS++. Defaults: the official ``vitl``."""

    img_size: int = 592
    patch_size: int = 16
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    layer_scale_init_values: float = 1e-5
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    ffn_layer: str = "mlp"
    conv_inplane: int = 64
    n_points: int = 4
    deform_num_heads: int = 16
    init_values: float = 1e-6
    with_cffn: bool = True
    cffn_ratio: float = 0.25
    deform_ratio: float = 0.5
    add_vit_feature: bool = True
    use_extra_extractor: bool = True
    interaction_indexes: Tuple[Tuple[int, int], ...] = ((0, 5), (6, 11), (12, 17), (18, 23))
    freeze_vit: bool = True


@dataclass
class BackboneConfig:
    """Which backbone, and its hyper-parameters (only the block for ``type`` is used)."""

    type: str = "resnet"
    resnet: Optional[ResNetConfig] = None
    swin: Optional[SwinConfig] = None
    vit_adapter: Optional[ViTAdapterConfig] = None

    def __post_init__(self) -> None:
        if self.type not in BACKBONES:
            raise ValueError(f"unknown backbone type {self.type!r}; expected one of {BACKBONES}")
        if self.type == "resnet" and self.resnet is None:
            self.resnet = ResNetConfig()
        if self.type == "swin" and self.swin is None:
            self.swin = SwinConfig()
        if self.type == "vit_adapter" and self.vit_adapter is None:
            self.vit_adapter = ViTAdapterConfig()


@dataclass
class SegmenterConfig:
    """Pixel decoder + masked-attention decoder (Mask2Former head).

    ``dec_layers`` is the number of decoder layers actually built: the official cfg's
    ``MASK_FORMER.DEC_LAYERS`` minus one (the official code counts the initial prediction).
    """

    num_classes: int = 25
    convs_dim: int = 256
    mask_dim: int = 256
    norm: str = "GN"
    transformer_enc_layers: int = 6
    transformer_enc_nheads: int = 8
    transformer_enc_dim_feedforward: int = 1024
    in_features: Tuple[str, ...] = ("res2", "res3", "res4", "res5")
    deform_in_features: Tuple[str, ...] = ("res3", "res4", "res5")
    common_stride: int = 4
    hidden_dim: int = 256
    num_queries: int = 100
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9
    pre_norm: bool = False
    enforce_input_proj: bool = False
    reid_hidden_dim: int = 256
    num_reid_head_layers: int = 3


@dataclass
class TrackerConfig:
    decoder_layers: int = 6
    noise_mode: str = "wa"
    noise_ratio: float = 0.5


@dataclass
class RefinerConfig:
    decoder_layers: int = 6


@dataclass
class DAQConfig:
    """DVIS-DAQ's ``MODEL.VIDEO_HEAD`` (inference keys only); used when ``DVISConfig.variant == "daq"``.

    ``kick_out`` (frames dropped in a row before a sequence dies) is the official constructor default (8), not a
    cfg key. ``num_new_ins`` must equal ``segmenter.num_queries``.
    """

    num_new_ins: int = 10
    num_slots: int = 5
    inference_select_threshold: float = 0.1
    aux_inference_select_threshold: float = 0.01
    dis_fg_threshold: float = 0.01
    noise_frame_num: int = 1
    offline_topk_num: int = 20
    ovis_infer: bool = False
    use_local_attn: bool = False
    kick_out: int = 8


@dataclass
class InputConfig:
    """The official test pipeline: RGB, resize shortest edge, normalise, pad."""

    pixel_mean: Tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: Tuple[float, float, float] = (58.395, 57.12, 57.375)
    min_size_test: int = 360
    max_size_test: int = 640
    size_divisibility: int = 32
    format: str = "RGB"


@dataclass
class TestConfig:
    """Test-time settings: frames per segmenter call, instances kept per video (top-k) and, for segmenter-only
    models (``mode="segmenter"``), the embedding their frame-to-frame matching uses (:data:`MATCH_EMBEDDINGS`)."""

    window_size: int = 3
    max_num: int = 20
    match_embedding: str = "auto"

    def __post_init__(self) -> None:
        if self.match_embedding not in MATCH_EMBEDDINGS:
            raise ValueError(f"unknown test.match_embedding {self.match_embedding!r}; expected one of "
                             f"{MATCH_EMBEDDINGS}")


@dataclass
class DVISConfig:
    """Complete description of a DVIS / DVIS++ model (architecture + test pipeline)."""

    variant: str = "dvis++"
    mode: str = "online"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    refiner: Optional[RefinerConfig] = None
    input: InputConfig = field(default_factory=InputConfig)
    test: TestConfig = field(default_factory=TestConfig)
    dataset: Optional[str] = None
    class_names: Optional[List[str]] = None
    daq: Optional[DAQConfig] = None  # DVIS-DAQ only

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {VARIANTS}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if self.mode == "offline" and self.refiner is None:
            self.refiner = RefinerConfig()
        if self.mode == "segmenter":
            if self.variant == "daq":
                raise ValueError("a segmenter-only config has variant 'dvis++' (DVIS-DAQ's segmenter is the DVIS++ "
                                 "one) or 'dvis'; use segmenter_only_config(cfg) to convert a DAQ config")
            if self.refiner is not None:
                raise ValueError("a segmenter-only config (mode='segmenter') has no refiner: set refiner=None")
            if self.match_embedding == "reid" and self.variant != "dvis++":
                raise ValueError("test.match_embedding='reid' needs the DVIS++ segmenter (variant 'dvis++'): the "
                                 "original DVIS decoder has no re-identification head; use 'embeds'")
        if self.variant == "daq" and self.daq is None:
            self.daq = DAQConfig(num_new_ins=self.segmenter.num_queries)
        if self.class_names is not None and len(self.class_names) != self.segmenter.num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names given for {self.segmenter.num_classes} classes")

    @property
    def match_embedding(self) -> str:
        """What a segmenter-only model matches frames by, "auto" resolved: "reid" (DVIS++) or "embeds"."""
        m = self.test.match_embedding
        return m if m != "auto" else ("reid" if self.variant == "dvis++" else "embeds")

    @property
    def tracker_hidden_dim(self) -> int:
        """DVIS++ tracks cat(query, re-id embedding): twice the decoder width; DVIS and DAQ the width itself."""
        return 2 * self.segmenter.hidden_dim if self.variant == "dvis++" else self.segmenter.hidden_dim

    # --- JSON round trip -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "DVISConfig":
        return _from_dict(cls, d)

    def to_json(self, path: Union[str, Path, None] = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: Union[str, Path]) -> "DVISConfig":
        p = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(text_or_path)
        return cls.from_dict(json.loads(text))


def segmenter_only_config(cfg: DVISConfig, class_names: Optional[List[str]] = None, max_num: Optional[int] = 10,
                          match_embedding: Optional[str] = None) -> DVISConfig:
    """The config of ``cfg``'s segmenter run alone as a video model (``mode="segmenter"``, the official MinVIS /
    CTMinVIS inference): no tracker, no refiner; a DVIS-DAQ config becomes ``variant="dvis++"`` (same segmenter).

    Args:
        cfg: any DVIS / DVIS++ / DVIS-DAQ config (left unchanged; a new config is returned).
        class_names: replace the class names (as many as ``cfg.segmenter.num_classes``); None keeps them.
        max_num: instances kept per video (the official MinVIS keeps 10); None keeps ``cfg.test.max_num``.
        match_embedding: "embeds", "reid" or "auto" (:data:`MATCH_EMBEDDINGS`); None keeps ``cfg``'s.
    """
    d = cfg.to_dict()
    d.update(mode="segmenter", refiner=None, daq=None)
    if d["variant"] == "daq":
        d["variant"] = "dvis++"
    if class_names is not None:
        d["class_names"] = list(class_names)
    if max_num is not None:
        d["test"]["max_num"] = int(max_num)
    if match_embedding is not None:
        d["test"]["match_embedding"] = match_embedding
    return DVISConfig.from_dict(d)


def _from_dict(cls: type, d: Any) -> Any:
    """Rebuild nested dataclasses from plain dicts, turning lists back into tuples where typed so."""
    if not isinstance(d, dict):
        raise TypeError(f"expected a dict for {cls.__name__}, got {type(d).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {sorted(unknown)}")
    kwargs = {}
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for k, v in d.items():
        kwargs[k] = _convert(hints[k], v)
    return cls(**kwargs)


_NESTED = {
    "BackboneConfig": BackboneConfig, "ResNetConfig": ResNetConfig, "SwinConfig": SwinConfig,
    "ViTAdapterConfig": ViTAdapterConfig, "SegmenterConfig": SegmenterConfig, "TrackerConfig": TrackerConfig,
    "RefinerConfig": RefinerConfig, "DAQConfig": DAQConfig, "InputConfig": InputConfig, "TestConfig": TestConfig,
}


def _convert(type_str: Any, v: Any) -> Any:
    t = str(type_str)
    if v is None:
        return None
    for name, sub in _NESTED.items():
        if name in t:
            return _from_dict(sub, v)
    if t.startswith("Tuple") and isinstance(v, list):
        return tuple(tuple(x) if isinstance(x, list) else x for x in v)
    return v
