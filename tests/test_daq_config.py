"""DVIS-DAQ configs and checkpoints: the shipped official DAQ yamls (with their _BASE_ chains into the DVIS++
configs), the DAQ defaults, DVISConfig JSON round trip, checkpoint conversion (training-only keys dropped)."""
from __future__ import annotations

import pytest
import torch

import dvis_sdk
from conftest import load_fixture
from dvis_sdk.config import DVISConfig
from dvis_sdk.official import OFFICIAL_CONFIG_DIR, ConversionError, convert_official_state_dict, load_official_config

DAQ_YAMLS = sorted(str(p.relative_to(OFFICIAL_CONFIG_DIR)) for p in (OFFICIAL_CONFIG_DIR / "dvis_plus" / "dvis_daq")
                   .rglob("*.yaml"))


def test_daq_yamls_are_shipped():
    assert len(DAQ_YAMLS) == 15  # ovis 5, ytvis19 4, ytvis21 4, vipseg 2 (video panoptic: docs/panoptic.md)


@pytest.mark.parametrize("rel", DAQ_YAMLS)
def test_daq_yaml_builds_full_size_model(rel):
    cfg = load_official_config(rel)
    assert cfg.variant == "daq" and cfg.mode == ("offline" if "Offline" in rel else "online")
    assert cfg.dataset in ("ovis", "ytvis_2019", "ytvis_2021", "vipseg")
    d = cfg.daq
    big = "SwinL" in rel or "VitAdapterL" in rel
    assert d.num_new_ins == cfg.segmenter.num_queries == (200 if big else 100)
    assert d.noise_frame_num == 5 and d.num_slots == 5 and d.aux_inference_select_threshold == 0.01
    assert d.ovis_infer == rel.startswith("dvis_plus/dvis_daq/ovis")
    assert d.offline_topk_num == (40 if cfg.mode == "offline" else 20)
    assert d.use_local_attn == rel.endswith(("ovis/vit_adapter/DAQ_Offline_VitAdapterL.yaml",
                                            "ytvis21/vit_adapter/DAQ_Offline_VitAdapterL.yaml"))
    if "ovis" in rel:
        assert d.inference_select_threshold == (0.05 if cfg.mode == "offline" else 0.1)
    assert cfg.test.max_num == 20
    with torch.device("meta"):
        model = dvis_sdk.build_model(cfg)
    sd = model.state_dict()
    C = cfg.segmenter.hidden_dim
    assert sd["tracker.new_ins_embeds.weight"].shape == (1, C)
    assert sd["tracker.bg_slots.weight"].shape == (5, C)
    assert sd["tracker.slot_cross_attention_layers.0.slot_attn.project_q.1.weight"].shape == (C, C)
    assert sd["tracker.class_embed.weight"].shape == (cfg.segmenter.num_classes + 1, C)
    assert "decoder.reid_embed.layers.0.weight" in sd  # in DAQ checkpoints although DAQ inference ignores it
    assert ("refiner.class_embed.weight" in sd) == (cfg.mode == "offline")
    assert ("refiner.conv_short_aggregate_layers.0.0.weight" in sd) == d.use_local_attn


def test_daq_config_json_round_trip(tmp_path):
    cfg = load_official_config("ovis/DAQ_Offline_R50.yaml")
    back = DVISConfig.from_json(cfg.to_json(tmp_path / "c.json"))
    assert back == cfg and back.daq.offline_topk_num == 40


def test_daq_checkpoint_conversion_drops_training_keys():
    fx = load_fixture("16_e2e_online_daq_r50")
    cfg = load_official_config(fx.config)
    sd = {**fx.weights, "daq_criterion.empty_weight": torch.ones(6), "criterion.empty_weight": torch.ones(6)}
    out = convert_official_state_dict({"model": sd}, cfg)
    assert not any("criterion" in k for k in out)
    assert any(k.startswith("tracker.slot_cross_attention_layers.") for k in out)
    with pytest.raises(ConversionError, match="no known component"):
        convert_official_state_dict({**sd, "daq_head.x": torch.ones(1)}, cfg)


def test_daq_config_errors():
    fx = load_fixture("16_e2e_online_daq_r50")
    bad = {**fx.config, "MODEL": {**fx.config["MODEL"], "VIDEO_HEAD": {**fx.config["MODEL"]["VIDEO_HEAD"],
                                                                         "NUM_NEW_INS": 7}}}
    with pytest.raises(ConversionError, match="NUM_NEW_INS"):
        load_official_config(bad)
    vps = {**fx.config, "MODEL": {**fx.config["MODEL"], "MASK_FORMER": {
        **fx.config["MODEL"]["MASK_FORMER"], "TEST": {**fx.config["MODEL"]["MASK_FORMER"]["TEST"], "TASK": "vps"}}}}
    with pytest.raises(ConversionError, match="TASK"):
        load_official_config(vps)
