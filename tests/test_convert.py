"""Config JSON round trip, official-checkpoint conversion rules and strict-loading errors."""
from __future__ import annotations

import copy

import pytest
import torch

import dvis_sdk
from conftest import load_fixture
from dvis_sdk.config import DVISConfig
from dvis_sdk.inference.predictor import load_state_dict_strict
from dvis_sdk.official import (
    ConversionError,
    convert_official_state_dict,
    load_official_checkpoint,
    load_official_config,
)

ALL_E2E = ["09_e2e_online_vit_adapter", "10_e2e_offline_vit_adapter", "11_e2e_online_r50",
           "12_e2e_online_dvis_swin", "13_e2e_offline_dvis_r50"]


@pytest.mark.parametrize("name", ALL_E2E)
def test_config_json_round_trip(name, tmp_path):
    cfg = load_official_config(load_fixture(name).config)
    again = DVISConfig.from_json(cfg.to_json())
    assert again == cfg
    cfg.to_json(tmp_path / "c.json")
    assert DVISConfig.from_json(tmp_path / "c.json") == cfg


def test_config_fields_from_fixture_cfg():
    cfg = load_official_config(load_fixture("09_e2e_online_vit_adapter").config)
    assert (cfg.variant, cfg.mode, cfg.backbone.type) == ("dvis++", "online", "vit_adapter")
    assert cfg.segmenter.dec_layers == 4  # DEC_LAYERS 5 in the cfg: the official decoder builds 4
    assert cfg.tracker_hidden_dim == 64 and cfg.test.max_num == 10 and cfg.test.window_size == 3
    assert cfg.backbone.vit_adapter.interaction_indexes == ((0, 0), (1, 1), (2, 2), (3, 3))
    dvis = load_official_config(load_fixture("13_e2e_offline_dvis_r50").config)
    assert (dvis.variant, dvis.mode, dvis.backbone.type) == ("dvis", "offline", "resnet")
    assert dvis.tracker_hidden_dim == dvis.segmenter.hidden_dim
    assert dvis.input.min_size_test == 360


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="variant"):
        DVISConfig(variant="dvis3")
    with pytest.raises(ValueError, match="unknown DVISConfig field"):
        DVISConfig.from_dict({"nonsense": 1})
    tree = copy.deepcopy(load_fixture("11_e2e_online_r50").config)
    tree["MODEL"]["META_ARCHITECTURE"] = "CTVIS_r50"
    with pytest.raises(ConversionError, match="META_ARCHITECTURE"):
        load_official_config(tree)


def test_convert_drops_training_keys_and_accepts_detectron2_wrapper():
    fx = load_fixture("11_e2e_online_r50")
    cfg = load_official_config(fx.config)
    assert "criterion.empty_weight" in fx.weights
    sd = convert_official_state_dict({"model": fx.weights, "iteration": 5}, cfg)
    assert not any(k.startswith("criterion") for k in sd)
    assert sum(k.startswith("decoder.") for k in sd) == sum(k.startswith("sem_seg_head.predictor.") for k in fx.weights)
    model = dvis_sdk.build_model(cfg)
    model.load_state_dict(sd, strict=True)


def test_convert_unknown_keys_are_listed():
    fx = load_fixture("11_e2e_online_r50")
    cfg = load_official_config(fx.config)
    bad = dict(fx.weights)
    bad["mystery.head.weight"] = torch.zeros(1)
    bad["ema.decoder.bias"] = torch.zeros(1)
    with pytest.raises(ConversionError) as e:
        convert_official_state_dict(bad, cfg)
    assert "mystery.head.weight" in str(e.value) and "ema.decoder.bias" in str(e.value)


def test_strict_loading_errors_name_the_keys():
    fx = load_fixture("11_e2e_online_r50")
    cfg = load_official_config(fx.config)
    sd = convert_official_state_dict(fx.weights, cfg)
    model = dvis_sdk.build_model(cfg)
    missing = {k: v for k, v in sd.items() if k != "tracker.class_embed.weight"}
    with pytest.raises(ValueError, match="tracker.class_embed.weight"):
        load_state_dict_strict(model, missing)
    reshaped = dict(sd)
    reshaped["decoder.query_feat.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="shape mismatch.*decoder.query_feat.weight"):
        load_state_dict_strict(model, reshaped)
    # torch's own strict loading (the documented contract) also refuses a partial state dict
    with pytest.raises(RuntimeError, match="tracker.class_embed.weight"):
        model.load_state_dict(missing, strict=True)


def test_offline_checkpoint_runs_online_and_online_checkpoint_cannot_run_offline():
    fx9, fx10 = load_fixture("09_e2e_online_vit_adapter"), load_fixture("10_e2e_offline_vit_adapter")
    offline_sd = {**fx9.weights, **fx10.weights}
    online_cfg = load_official_config(fx10.config, mode="online")
    assert online_cfg.mode == "online" and online_cfg.refiner is None
    sd = convert_official_state_dict(offline_sd, online_cfg)
    assert not any(k.startswith("refiner.") for k in sd)
    model = dvis_sdk.build_model(online_cfg)
    model.load_state_dict(sd, strict=True)
    with pytest.raises(ConversionError, match="refiner"):
        convert_official_state_dict(fx9.weights, load_official_config(fx10.config))


def test_checkpoint_file_round_trip(tmp_path):
    fx = load_fixture("11_e2e_online_r50")
    torch.save({"model": fx.weights, "iteration": 1}, tmp_path / "model_final.pth")
    sd = load_official_checkpoint(tmp_path / "model_final.pth")
    assert torch.equal(sd["model"]["backbone.stem.conv1.weight"], fx.weights["backbone.stem.conv1.weight"])
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_official_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConversionError, match="garbage.pth"):
        load_official_checkpoint(tmp_path / "garbage.pth")


def _shipped_model_yamls():
    from dvis_sdk.official import OFFICIAL_CONFIG_DIR
    return sorted(str(p.relative_to(OFFICIAL_CONFIG_DIR)) for p in OFFICIAL_CONFIG_DIR.rglob("*.yaml")
                  if p.name.startswith(("DVIS_Online", "DVIS_Offline", "DVIS_Plus_Online", "DVIS_Plus_Offline")))


@pytest.mark.parametrize("rel", _shipped_model_yamls())
def test_official_yaml_builds_full_size_model(rel):
    """Every official DVIS / DVIS++ yaml parses (with its _BASE_ chain) and builds the full-size model."""
    cfg = load_official_config(rel)
    assert cfg.dataset in ("ovis", "ytvis_2019", "ytvis_2021", "vipseg", "vspw")  # + video panoptic / semantic
    assert cfg.class_names is not None and len(cfg.class_names) == cfg.segmenter.num_classes
    assert cfg.mode == ("offline" if "Offline" in rel else "online")
    with torch.device("meta"):
        model = dvis_sdk.build_model(cfg)
    sd = model.state_dict()
    c = cfg.segmenter
    assert sd["decoder.query_feat.weight"].shape == (c.num_queries, c.hidden_dim)
    assert sd["decoder.class_embed.weight"].shape == (c.num_classes + 1, c.hidden_dim)
    assert sd["tracker.class_embed.weight"].shape[0] == c.num_classes + 1
    if cfg.backbone.type == "resnet":
        assert sd["backbone.res5.2.conv3.weight"].shape == (2048, 512, 1, 1)
    elif cfg.backbone.type == "vit_adapter":
        assert sd["backbone.vit_module.patch_embed.proj.weight"].shape == (1024, 3, 16, 16)
        assert sd["backbone.vit_module.pos_embed"].shape == (1, 37 * 37 + 1, 1024)
    else:
        assert sd["backbone.layers.3.blocks.1.attn.relative_position_bias_table"].shape == (23 * 23, 48)
    assert ("refiner.class_embed.weight" in sd) == (cfg.mode == "offline")


def test_official_yaml_lookup_by_suffix_and_ambiguity():
    from dvis_sdk.official import find_official_yaml
    assert find_official_yaml("ovis/DVIS_Plus_Offline_R50.yaml").name == "DVIS_Plus_Offline_R50.yaml"
    with pytest.raises(FileNotFoundError, match="ambiguous"):
        find_official_yaml("DVIS_Plus_Offline_R50.yaml")
    with pytest.raises(FileNotFoundError, match="not found"):
        find_official_yaml("ovis/DVIS_Plus_Online_R51.yaml")
    assert load_official_config("ytvis21/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml").segmenter.num_queries == 200
