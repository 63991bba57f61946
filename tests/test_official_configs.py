"""The vendored official yamls, the recorded official defaults and the dataset class lists."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import yaml

from dvis_sdk import official as od
from dvis_sdk.configs import datasets as ds

OFFICIAL = Path(od.OFFICIAL_CONFIG_DIR)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ALL_YAMLS = sorted(OFFICIAL.rglob("*.yaml"))
_ABSENT = object()

# the entry configs the SDK must be able to load (brief / official model zoos)
ENTRY_DVIS_PLUS = [
    f"dvis_plus/dvis_Plus/{d}/{n}"
    for d, online in (("ovis", "DVIS_Plus_Online_R50_16wIter.yaml"),
                      ("ytvis19", "DVIS_Plus_Online_R50_8wIter.yaml"),
                      ("ytvis21", "DVIS_Plus_Online_R50_8wIter.yaml"))
    for n in (online, "DVIS_Plus_Online_R50_4wIter.yaml", "DVIS_Plus_Offline_R50.yaml",
              "vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml", "vit_adapter/DVIS_Plus_Offline_VitAdapterL.yaml")
]
ENTRY_DVIS = [
    f"dvis/{d}/{n}"
    for d in ("ovis", "youtubevis_2019", "youtubevis_2021")
    for n in ("DVIS_Online_R50.yaml", "DVIS_Offline_R50.yaml",
              "swin/DVIS_Online_SwinL.yaml", "swin/DVIS_Offline_SwinL.yaml")
]


def _load(path: Path) -> Dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _chain(path: Path) -> List[Path]:
    """The _BASE_ chain of a yaml, the file itself first."""
    out = [path.resolve()]
    while True:
        base = _load(out[-1]).get("_BASE_")
        if base is None:
            return out
        nxt = (out[-1].parent / base).resolve()
        assert nxt not in out, f"_BASE_ cycle at {nxt}"
        out.append(nxt)


def _merged(rel: str) -> Dict[str, Any]:
    """Tiny test-only merge of a chain (later files win), values decoded like yacs does."""
    def merge(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    tree: Dict[str, Any] = {}
    for p in reversed(_chain(OFFICIAL / rel)):
        d = _load(p)
        d.pop("_BASE_", None)
        tree = merge(tree, d)
    return od.decode_cfg_tree(tree)


def _get(tree: Dict[str, Any], dotted: str, default: Any = KeyError) -> Any:
    cur: Any = tree
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            if default is KeyError:
                raise KeyError(dotted)
            return default
        cur = cur[part]
    return cur


def _leaves(tree: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any]]:
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


# ------------------------------------------------------------------------------------------- yamls
# stage 1 (segmenter-only MinVIS / CTMinVIS), with the Base files their chains need
ENTRY_STAGE1 = [
    *(f"dvis_plus/dvis_Plus/{d}/{n}" for d in ("ovis", "ytvis19", "ytvis21")
      for n in ("MinVIS_R50.yaml", "CTVIS_R50.yaml", "vit_adapter/MinVIS_VitAdapterL.yaml",
                "vit_adapter/CTVIS_VitAdapterL.yaml")),
    "dvis_plus/dvis_Plus/VIPSeg/MinVIS_R50.yaml", "dvis_plus/dvis_Plus/VIPSeg/CTVIS_r50.yaml",
    "dvis_plus/dvis_Plus/VSPW/MinVIS_R50_480p.yaml", "dvis_plus/dvis_Plus/VSPW/MinVIS_R50_720p.yaml",
    "dvis_plus/dvis_Plus/VSPW/CTVIS_R50.yaml",
    *(f"dvis/{d}/{n}" for d in ("ovis", "youtubevis_2019", "youtubevis_2021")
      for n in ("MinVIS_R50.yaml", "swin/MinVIS_SwinL.yaml")),
    "dvis/VIPSeg/MinVIS_R50_720p.yaml", "dvis/VSPW/MinVIS_R50_480p.yaml", "dvis/VSPW/swin/MinVIS_SwinL_720p.yaml",
]


def test_expected_files_are_vendored():
    # 39 DVIS / DVIS++ + 13 DVIS-DAQ VIS yamls; + 13 DVIS++, 13 DVIS, 2 DAQ VIPSeg / VSPW yamls (tests/test_panoptic.py)
    # + 22 stage-1 (MinVIS / CTMinVIS) yamls and the Base files their chains need that the VPS/VSS set lacks
    assert len(ALL_YAMLS) == 52 + 28 + 22
    for rel in ENTRY_DVIS_PLUS + ENTRY_DVIS + ENTRY_STAGE1:
        assert (OFFICIAL / rel).is_file(), rel
    assert (OFFICIAL / "SOURCES.md").is_file()


@pytest.mark.parametrize("path", ALL_YAMLS, ids=lambda p: str(p.relative_to(OFFICIAL)))
def test_yaml_parses_and_base_resolves(path: Path):
    data = _load(path)
    base = data.get("_BASE_")
    if base is not None:
        assert isinstance(base, str)
        target = (path.parent / base).resolve()
        assert target.is_file(), f"{path}: _BASE_ {base!r} missing"
        assert OFFICIAL.resolve() in target.parents  # stays inside the vendored tree
    chain = _chain(path)
    assert chain[-1].name.startswith("Base-"), chain  # every chain ends at a dataset Base file
    assert "MODEL" in data or base is not None


def test_every_vendored_file_is_listed_in_sources():
    sources = (OFFICIAL / "SOURCES.md").read_text()
    for p in ALL_YAMLS:
        assert f"`{p.relative_to(OFFICIAL).as_posix()}`" in sources, p


def test_tuple_strings_are_strings_for_safe_load_and_decode_like_yacs():
    raw = _load(OFFICIAL / "dvis_plus/dvis_Plus/ovis/DVIS_Plus_Offline_R50.yaml")
    assert raw["SOLVER"]["STEPS"] == "(28000,)"  # safe_load keeps python tuples as text
    assert od.decode_cfg_value("(28000,)") == (28000,)
    assert od.decode_cfg_value('("ovis_val",)') == ("ovis_val",)
    assert od.decode_cfg_value("vis") == "vis"
    assert od.decode_cfg_value("1e-5") == 1e-5
    assert od.decode_cfg_value([1, 2]) == [1, 2]
    merged = _merged("dvis_plus/dvis_Plus/ovis/DVIS_Plus_Offline_R50.yaml")
    assert merged["DATASETS"]["TRAIN"] == ("coco2ovis_train", "ovis_train")
    assert merged["DATASETS"]["TEST"] == ("ovis_val",)


# ------------------------------------------------------------------------------ spot checks
@pytest.mark.parametrize("rel,arch,queries,classes,backbone", [
    ("dvis_plus/dvis_Plus/ytvis21/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml", "DVIS_Plus_online", 200, 40,
     "D2VitAdapterDinoV2"),
    ("dvis_plus/dvis_Plus/ovis/vit_adapter/DVIS_Plus_Offline_VitAdapterL.yaml", "DVIS_Plus_offline", 200, 25,
     "D2VitAdapterDinoV2"),
    ("dvis_plus/dvis_Plus/ovis/DVIS_Plus_Online_R50_16wIter.yaml", "DVIS_Plus_online", 100, 25,
     "build_resnet_backbone"),
    ("dvis_plus/dvis_Plus/ytvis19/DVIS_Plus_Offline_R50.yaml", "DVIS_Plus_offline", 100, 40,
     "build_resnet_backbone"),
    ("dvis/ovis/DVIS_Online_R50.yaml", "DVIS_online", 100, 25, "build_resnet_backbone"),
    ("dvis/ovis/swin/DVIS_Offline_SwinL.yaml", "DVIS_offline", 200, 25, "D2SwinTransformer"),
    ("dvis/youtubevis_2021/swin/DVIS_Online_SwinL.yaml", "DVIS_online", 200, 40, "D2SwinTransformer"),
])
def test_chain_spot_checks(rel, arch, queries, classes, backbone):
    t = _merged(rel)
    assert t["MODEL"]["META_ARCHITECTURE"] == arch
    assert t["MODEL"]["MASK_FORMER"]["NUM_OBJECT_QUERIES"] == queries
    assert t["MODEL"]["SEM_SEG_HEAD"]["NUM_CLASSES"] == classes
    assert t["MODEL"]["BACKBONE"]["NAME"] == backbone
    assert t["INPUT"]["FORMAT"] == "RGB"
    assert t["MODEL"]["PIXEL_MEAN"] == [123.675, 116.280, 103.530]
    assert t["MODEL"]["MASK_FORMER"]["DEC_LAYERS"] == 10
    assert t["MODEL"]["SEM_SEG_HEAD"]["PIXEL_DECODER_NAME"] == "MSDeformAttnPixelDecoder"
    key = ds.dataset_key(t["DATASETS"]["TEST"][0])
    assert key is not None and len(ds.CLASS_NAMES[key]) == classes


def test_dvis_plus_specifics():
    vitl = _merged("dvis_plus/dvis_Plus/ytvis21/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml")
    assert vitl["MODEL"]["VIT_ADAPTER"]["NAME"] == "vitl"
    assert vitl["MODEL"]["VIT_ADAPTER"]["FREEZE_VIT"] is True
    assert vitl["MODEL"]["MASK_FORMER"]["REID_BRANCH"] is True
    decoder_name = vitl["MODEL"]["MASK_FORMER"]["TRANSFORMER_DECODER_NAME"]
    assert decoder_name == "VideoMultiScaleMaskedTransformerDecoder_dvisPlus"
    assert vitl["MODEL"]["TRACKER"] == {"NOISE_MODE": "wa", "NOISE_RATIO": 0.5}
    assert vitl["INPUT"]["MIN_SIZE_TEST"] == 480
    assert _merged("dvis_plus/dvis_Plus/ovis/DVIS_Plus_Offline_R50.yaml")["MODEL"]["REFINER"]["USE_CL"] is False
    assert _merged("dvis_plus/dvis_Plus/ytvis21/DVIS_Plus_Offline_R50.yaml")["MODEL"]["REFINER"]["USE_CL"] is True
    ovis = _merged("dvis_plus/dvis_Plus/ovis/DVIS_Plus_Online_R50_16wIter.yaml")
    assert ovis["MODEL"]["TRACKER"]["NOISE_RATIO"] == 0.8
    # the chain leaves TRACKER / REFINER DECODER_LAYERS to the default (6)
    assert "DECODER_LAYERS" not in vitl["MODEL"]["TRACKER"]
    assert od.OFFICIAL_DEFAULTS["MODEL"]["TRACKER"]["DECODER_LAYERS"] == 6


def test_max_num_ovis_default_vs_ytvis_yaml():
    for rel in ("dvis/ovis/DVIS_Online_R50.yaml", "dvis_plus/dvis_Plus/ovis/DVIS_Plus_Online_R50_16wIter.yaml"):
        assert "MAX_NUM" not in _merged(rel)["MODEL"]["MASK_FORMER"]["TEST"]  # -> default 20
    for rel in ("dvis/youtubevis_2019/DVIS_Online_R50.yaml", "dvis/youtubevis_2021/swin/DVIS_Offline_SwinL.yaml",
                "dvis_plus/dvis_Plus/ytvis19/DVIS_Plus_Offline_R50.yaml",
                "dvis_plus/dvis_Plus/ytvis21/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml"):
        assert _merged(rel)["MODEL"]["MASK_FORMER"]["TEST"]["MAX_NUM"] == 10
    assert od.OFFICIAL_DEFAULTS["MODEL"]["MASK_FORMER"]["TEST"]["MAX_NUM"] == 20
    assert od.OFFICIAL_DEFAULTS_DVIS["MODEL"]["MASK_FORMER"]["TEST"]["MAX_NUM"] == 20


def test_dvis_specifics():
    t = _merged("dvis/ovis/swin/DVIS_Online_SwinL.yaml")
    assert t["MODEL"]["SWIN"]["EMBED_DIM"] == 192 and t["MODEL"]["SWIN"]["DEPTHS"] == [2, 2, 18, 2]
    assert t["MODEL"]["SWIN"]["WINDOW_SIZE"] == 12 and t["MODEL"]["SWIN"]["PRETRAIN_IMG_SIZE"] == 384
    assert t["MODEL"]["MASK_FORMER"]["TRANSFORMER_DECODER_NAME"] == "VideoMultiScaleMaskedTransformerDecoder_dvis"
    assert "REID_BRANCH" not in t["MODEL"]["MASK_FORMER"]
    assert t["INPUT"]["MIN_SIZE_TEST"] == 480
    assert _merged("dvis/ovis/DVIS_Offline_R50.yaml")["INPUT"]["MIN_SIZE_TEST"] == 360
    r = _merged("dvis/youtubevis_2019/DVIS_Offline_R50.yaml")["MODEL"]["RESNETS"]
    assert r["STRIDE_IN_1X1"] is False and r["STEM_TYPE"] == "basic"
    assert r["OUT_FEATURES"] == ["res2", "res3", "res4", "res5"]


# --------------------------------------------------------------------------------- defaults
def test_defaults_dvis_vs_dvis_plus():
    plus, dvis = od.OFFICIAL_DEFAULTS, od.OFFICIAL_DEFAULTS_DVIS
    only_plus = {k for k, _ in _leaves(plus)} - {k for k, _ in _leaves(dvis)}
    assert {k for k, _ in _leaves(dvis)} <= {k for k, _ in _leaves(plus)}
    assert {k.split(".")[1] for k in only_plus} == {"MASK_FORMER", "TRACKER", "REFINER", "SEM_SEG_HEAD",
                                                   "CL_PLUGIN", "VIT_ADAPTER"}
    for key in ("MODEL.MASK_FORMER.REID_BRANCH", "MODEL.MASK_FORMER.REID_HIDDEN_DIM",
                "MODEL.MASK_FORMER.NUM_REID_HEAD_LAYERS", "MODEL.TRACKER.NOISE_MODE", "MODEL.REFINER.USE_CL",
                "MODEL.SEM_SEG_HEAD.RETURN_TRANSFORMER_FEATURE", "MODEL.VIT_ADAPTER.NAME"):
        assert key in only_plus
    common = dict(_leaves(dvis))
    assert all(_get(plus, k) == v for k, v in common.items())  # shared keys have equal defaults
    assert dvis["MODEL"]["TRACKER"] == {"DECODER_LAYERS": 6} and dvis["MODEL"]["REFINER"] == {"DECODER_LAYERS": 6}
    assert _get(plus, "MODEL.MASK_FORMER.REID_HIDDEN_DIM") == 256
    assert _get(plus, "MODEL.MASK_FORMER.TEST.WINDOW_INFERENCE") is False
    assert _get(plus, "MODEL.RESNETS.STRIDE_IN_1X1") is True  # detectron2 default; yamls set False
    assert _get(plus, "INPUT.FORMAT") == "BGR"  # detectron2 default; yamls set RGB
    assert od.official_defaults("dvis") == dvis and od.official_defaults("dvis++") is not plus


def _fixture_configs():
    out = []
    for f in sorted(FIXTURES.glob("*/config.json")):
        cfg = json.loads(f.read_text())
        if "MODEL" in cfg:
            out.append(pytest.param(f.parent.name, cfg, id=f.parent.name))
    return out


@pytest.mark.parametrize("name,cfg", _fixture_configs())
def test_fixture_config_keys_exist_in_the_defaults(name, cfg):
    """The fixtures' cfg dumps were taken from the official cfg: every key must exist in our defaults."""
    from dvis_sdk.official import DEFAULTS_BY_FAMILY, META_ARCHS
    family, mode = META_ARCHS[cfg["MODEL"]["META_ARCHITECTURE"]]
    # MinVIS exists in both repositories; the DVIS++ defaults hold every original-DVIS key (and more)
    defaults = DEFAULTS_BY_FAMILY["dvis++" if mode == "segmenter" else family]
    missing = [k for k, _ in _leaves(cfg) if ".VIT_ADAPTER.CUSTOM." not in k and _get(defaults, k, _ABSENT) is _ABSENT]
    assert not missing, missing
    # keys no fixture overrides carry the official default value
    for key in ("MODEL.SEM_SEG_HEAD.PROJECT_FEATURES", "MODEL.SEM_SEG_HEAD.ASPP_DILATIONS",
                "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS",
                "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS",
                "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "MODEL.MASK_FORMER.TEST.INSTANCE_ON",
                "MODEL.MASK_FORMER.ENC_LAYERS", "MODEL.RESNETS.DEFORM_ON_PER_STAGE", "MODEL.RESNETS.RES4_DILATION",
                "MODEL.SWIN.MLP_RATIO", "MODEL.SWIN.QK_SCALE", "MODEL.SWIN.PATCH_SIZE",
                "MODEL.VIT_ADAPTER.FINETUNE_INDEXES", "MODEL.SEM_SEG_HEAD.RETURN_TRANSFORMER_FEATURE"):
        v = _get(cfg, key, _ABSENT)
        if v is not _ABSENT:
            assert v == _get(defaults, key), key
    if defaults is od.OFFICIAL_DEFAULTS_DVIS:  # the original cfg has none of the DVIS++ keys
        for key in ("REID_BRANCH", "REID_HIDDEN_DIM", "NUM_REID_HEAD_LAYERS"):
            assert key not in cfg["MODEL"]["MASK_FORMER"]
        assert set(cfg["MODEL"]["TRACKER"]) == {"DECODER_LAYERS"}


# ------------------------------------------------------------------------------ ViT-Adapter
def test_vit_adapter_presets():
    vitl = od.VIT_ADAPTER_PRESETS["vitl"]
    assert (vitl["embed_dim"], vitl["depth"], vitl["num_heads"], vitl["deform_num_heads"]) == (1024, 24, 16, 16)
    assert vitl["interaction_indexes"] == [[0, 5], [6, 11], [12, 17], [18, 23]]
    assert (vitl["img_size"], vitl["patch_size"], vitl["conv_inplane"]) == (592, 16, 64)
    assert (vitl["deform_ratio"], vitl["cffn_ratio"], vitl["init_values"], vitl["layer_scale_init_values"]) == \
        (0.5, 0.25, 1e-6, 1e-5)
    vitb = od.VIT_ADAPTER_PRESETS["vitb"]
    assert (vitb["embed_dim"], vitb["depth"], vitb["num_heads"], vitb["deform_num_heads"]) == (768, 12, 12, 12)
    assert vitb["interaction_indexes"] == [[0, 2], [3, 5], [6, 8], [9, 11]]
    for p in od.VIT_ADAPTER_PRESETS.values():  # interactions tile the ViT blocks exactly
        flat = [i for a, b in p["interaction_indexes"] for i in range(a, b + 1)]
        assert flat == list(range(p["depth"]))
    # the README's description of the official vitl entry used to derive the tiny fixture ViT
    meta = json.loads((FIXTURES / "09_e2e_online_vit_adapter" / "config.json").read_text())
    custom = meta["MODEL"]["VIT_ADAPTER"]["CUSTOM"]
    assert custom["DERIVED_FROM"] == "vitl"
    unchanged = {"VIT.IMG_SIZE": "img_size", "VIT.PATCH_SIZE": "patch_size",
                 "VIT.INIT_VALUES": "layer_scale_init_values", "ADAPTER.N_POINTS": "n_points",
                 "ADAPTER.INIT_VALUES": "init_values", "ADAPTER.CFFN_RATIO": "cffn_ratio",
                 "ADAPTER.DEFORM_RATIO": "deform_ratio", "ADAPTER.WITH_CFFN": "with_cffn",
                 "ADAPTER.ADD_VIT_FEATURE": "add_vit_feature", "ADAPTER.USE_EXTRA_EXTRACTOR": "use_extra_extractor",
                 "VIT.FFN_LAYER": "ffn_layer", "VIT.MLP_RATIO": "mlp_ratio"}
    for k, field in unchanged.items():
        assert k not in custom["CHANGED"]
        assert _get(custom, k) == vitl[field], k


def test_vit_adapter_presets_match_sdk_config_fields():
    config = pytest.importorskip("dvis_sdk.config")
    fields = {f.name for f in dataclasses.fields(config.ViTAdapterConfig)} - {"freeze_vit"}
    for name, preset in od.VIT_ADAPTER_PRESETS.items():
        assert set(preset) == fields, name


# -------------------------------------------------------------------------------- datasets
def test_class_names():
    assert {k: len(v) for k, v in ds.CLASS_NAMES.items()} == {"ovis": 25, "ytvis_2019": 40, "ytvis_2021": 40,
                                                             "vipseg": 124, "vspw": 124}
    for k, names in ds.CLASS_NAMES.items():
        assert len(set(names)) == len(names)
        assert len(ds.CLASS_COLORS[k]) == len(names)
    assert ds.CLASS_NAMES["ovis"][0] == "Person" and ds.CLASS_NAMES["ovis"][-1] == "Vehical"
    assert ds.CLASS_NAMES["ytvis_2019"][:3] == ["person", "giant_panda", "lizard"]
    assert ds.CLASS_NAMES["ytvis_2019"][-1] == "tennis_racket"
    assert ds.CLASS_NAMES["ytvis_2021"][:3] == ["airplane", "bear", "bird"]
    assert ds.CLASS_NAMES["ytvis_2021"][-1] == "zebra"


def test_dataset_key():
    assert ds.dataset_key("ovis_val") == "ovis"
    assert ds.dataset_key("coco2ovis_train") == "ovis"
    assert ds.dataset_key("ytvis_2019_val") == "ytvis_2019"
    assert ds.dataset_key("coco2ytvis2021_train") == "ytvis_2021"
    assert ds.dataset_key("ytvis_2022_val") == "ytvis_2021"
    assert ds.dataset_key("ytvis_2021") == "ytvis_2021"
    assert ds.dataset_key("vipseg_val") is None
    assert ds.dataset_key(None) is None  # type: ignore[arg-type]
    # every TRAIN / TEST dataset named by a vendored chain is known and consistent with NUM_CLASSES
    for rel in ENTRY_DVIS_PLUS + ENTRY_DVIS:
        t = _merged(rel)
        n = t["MODEL"]["SEM_SEG_HEAD"]["NUM_CLASSES"]
        for name in tuple(t["DATASETS"]["TRAIN"]) + tuple(t["DATASETS"]["TEST"]):
            key = ds.dataset_key(name)
            assert key is not None and len(ds.CLASS_NAMES[key]) == n, (rel, name)
