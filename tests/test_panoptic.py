"""Video panoptic (VPS) and video semantic (VSS) segmentation: parity with the official code (fixtures 18-21),
bounded-memory equivalence, stream() refusal, configs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import dvis_sdk
from conftest import FIXTURES
from dvis_sdk.official import load_official_config
from dvis_sdk.ops.panoptic import postprocess_vps, postprocess_vss
from dvis_sdk.segmaps import FrameMaps

VPS = ["18_e2e_online_vps_r50", "19_e2e_offline_vps_r50"]
VSS = ["20_e2e_online_vss_r50", "21_e2e_offline_vss_r50"]


def fixture(name):
    """(official cfg dict, official state dict, io) of fixtures 18-21 (20/21 share the weights of 18 / 18+19)."""
    d = FIXTURES / name
    weights = load_file(str(FIXTURES / "18_e2e_online_vps_r50" / "weights.safetensors"))
    if "offline" in name:
        weights.update(load_file(str(FIXTURES / "19_e2e_offline_vps_r50" / "weights.safetensors")))
    return json.loads((d / "config.json").read_text()), weights, load_file(str(d / "io.safetensors"))


def official_segments(io):
    return [[int(x) for x in row] for row in io["out.result.segments"]]


def our_segments(segments):
    return [[s["id"], s["category_id"], int(s["isthing"]), s["track_id"]] for s in segments]


@pytest.mark.parametrize("name", VPS + VSS)
def test_postprocess_alone_matches_official(name):
    """The last step alone, on the official post-processing input: maps and segments exactly."""
    cfg_dict, _, io = fixture(name)
    cfg = load_official_config(cfg_dict)
    pc, pm = io["out.postprocess_input.pred_cls"], io["out.postprocess_input.pred_masks"]
    aux = io.get("out.postprocess_input.aux_pred_cls")
    h, w = io["in.video_uint8"].shape[1:3]
    padded = (pm.shape[-2] * 4, pm.shape[-1] * 4)
    if cfg.test.task == "vps":
        ids, segments = postprocess_vps(pc, pm, padded, (h, w), (h, w), cfg.test.object_mask_threshold,
                                        cfg.test.overlap_threshold, cfg.test.num_thing_classes, aux)
        assert torch.equal(ids, io["out.result.ids"])
        assert our_segments(segments) == official_segments(io)
    else:
        sem = postprocess_vss(pc, pm, padded, (h, w), (h, w), aux)
        assert torch.equal(sem, io["out.result.semantic"].long())


@pytest.mark.parametrize("name", VPS + VSS)
def test_predict_matches_official(name):
    """End to end through VideoSegmenter.from_official(cfg dict, checkpoint).predict(frames, resize=False)."""
    cfg, weights, io = fixture(name)
    seg = dvis_sdk.VideoSegmenter.from_official(cfg, weights)
    result = seg.predict(io["in.video_uint8"].numpy(), resize=False)
    assert result.instances == [] and result.task == seg.cfg.test.task
    if name in VPS:
        ids, segments = result.panoptic
        assert ids.shape == tuple(io["out.result.ids"].shape)
        np.testing.assert_array_equal(np.asarray(ids), io["out.result.ids"].numpy())
        assert our_segments(segments) == official_segments(io)
        for s in segments:  # areas / frames describe the map
            assert s["area"] == int((np.asarray(ids) == s["id"]).sum())
            assert s["frames"] == [t for t in range(len(ids)) if (ids[t] == s["id"]).any()]
        assert result.semantic is None
    else:
        np.testing.assert_array_equal(np.asarray(result.semantic), io["out.result.semantic"].numpy())
        assert result.panoptic is None


@pytest.mark.parametrize("name", ["19_e2e_offline_vps_r50", "20_e2e_online_vss_r50"])
def test_spilled_and_windowed_runs_give_the_same_maps(name):
    """Mask logits spilled to disk (no memory buffer), other windows / refiner chunks: the same maps."""
    cfg, weights, io = fixture(name)
    video = io["in.video_uint8"].numpy()
    seg = dvis_sdk.VideoSegmenter.from_official(cfg, weights)
    ref = seg.predict(video, resize=False)
    small = dvis_sdk.VideoSegmenter.from_official(cfg, weights, mask_buffer_mb=0.01)
    got = small.predict(video, resize=False, window_size=2)
    assert got.meta["mask_logits_spilled_bytes"] > 0
    if name in VPS:
        assert got.panoptic[0] == ref.panoptic[0] and got.panoptic[1] == ref.panoptic[1]
    else:
        assert got.semantic == ref.semantic


@pytest.mark.parametrize("name", ["18_e2e_online_vps_r50", "21_e2e_offline_vss_r50"])
def test_stream_refuses_naming_predict(name):
    cfg, weights, io = fixture(name)
    seg = dvis_sdk.VideoSegmenter.from_official(cfg, weights)
    with pytest.raises(NotImplementedError, match=r"use predict\(\)"):
        next(iter(seg.stream(io["in.video_uint8"].numpy(), resize=False)))


def test_frame_maps_round_trip():
    vol = np.random.RandomState(0).randint(0, 300, size=(5, 7, 9)).astype(np.int32)
    maps = FrameMaps.from_array(vol)
    assert maps.shape == vol.shape and len(maps) == 5
    np.testing.assert_array_equal(np.asarray(maps), vol)
    np.testing.assert_array_equal(maps[3], vol[3])
    np.testing.assert_array_equal(maps[-1], vol[-1])
    np.testing.assert_array_equal(maps[1:4], vol[1:4])
    assert [f.tolist() for f in maps] == [f.tolist() for f in vol]
    with pytest.raises(IndexError):
        maps[5]
    with pytest.raises(ValueError, match="expected"):
        maps.append(np.zeros((3, 3), np.int32))


SHIPPED = {
    "dvis_Plus/VIPSeg/DVIS_Plus_Online_R50.yaml": ("dvis++", "online", "vps"),
    "dvis_Plus/VIPSeg/DVIS_Plus_Offline_R50.yaml": ("dvis++", "offline", "vps"),
    "dvis_Plus/VIPSeg/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml": ("dvis++", "online", "vps"),
    "dvis_Plus/VIPSeg/vit_adapter/DVIS_Plus_Offline_VitAdapterL.yaml": ("dvis++", "offline", "vps"),
    "dvis_Plus/VSPW/DVIS_Plus_Online_R50.yaml": ("dvis++", "online", "vss"),
    "dvis_Plus/VSPW/DVIS_Plus_Offline_R50.yaml": ("dvis++", "offline", "vss"),
    "dvis_Plus/VSPW/vit_adapter/DVIS_Plus_Online_VitAdapterL.yaml": ("dvis++", "online", "vss"),
    "dvis_Plus/VSPW/vit_adapter/DVIS_Plus_Offline_VitAdapterL.yaml": ("dvis++", "offline", "vss"),
    "dvis/VIPSeg/DVIS_Online_R50_720p.yaml": ("dvis", "online", "vps"),
    "dvis/VIPSeg/DVIS_Offline_R50_720p.yaml": ("dvis", "offline", "vps"),
    "dvis/VIPSeg/swin/DVIS_Online_SwinL.yaml": ("dvis", "online", "vps"),
    "dvis/VIPSeg/swin/DVIS_Offline_SwinL.yaml": ("dvis", "offline", "vps"),
    "dvis/VSPW/DVIS_Online_R50_720p.yaml": ("dvis", "online", "vss"),
    "dvis/VSPW/DVIS_Offline_R50_720p.yaml": ("dvis", "offline", "vss"),
    "dvis/VSPW/swin/DVIS_Online_SwinL_720p.yaml": ("dvis", "online", "vss"),
    "dvis/VSPW/swin/DVIS_Offline_SwinL_720p.yaml": ("dvis", "offline", "vss"),
    "dvis_daq/vipseg/DAQ_Online_R50.yaml": ("daq", "online", "vps"),
    "dvis_daq/vipseg/vit_adapter/DAQ_Online_VitAdapterL.yaml": ("daq", "online", "vps"),
}


@pytest.mark.parametrize("path", sorted(SHIPPED))
def test_shipped_panoptic_and_semantic_yamls(path):
    """Every official VIPSeg / VSPW yaml ships and gives its task, thresholds, classes and thing count."""
    variant, mode, task = SHIPPED[path]
    cfg = load_official_config(path)
    assert (cfg.variant, cfg.mode, cfg.test.task) == (variant, mode, task)
    assert cfg.segmenter.num_classes == 124 and len(cfg.class_names) == 124
    assert cfg.dataset == ("vipseg" if task == "vps" else "vspw")
    assert (cfg.test.object_mask_threshold, cfg.test.overlap_threshold) == (0.8, 0.8)
    assert cfg.test.num_thing_classes == (58 if task == "vps" else None)
    # class index order = things (by dataset id) then stuff: index 0 is "door" (id 2), index 58 "wall" (id 0)
    assert cfg.class_names[0] == "door" and cfg.class_names[58] == "wall"
    assert dvis_sdk.config.DVISConfig.from_json(cfg.to_json()) == cfg


def test_vps_needs_a_known_thing_table():
    cfg, _, _ = fixture("18_e2e_online_vps_r50")
    cfg = dict(cfg, DATASETS={"TRAIN": ["my_videos_train"], "TEST": []})
    with pytest.raises(dvis_sdk.official.ConversionError, match="DATASETS.TRAIN"):
        load_official_config(cfg)
    with pytest.raises(ValueError, match="unknown task"):
        dvis_sdk.config.DVISConfig(test=dvis_sdk.config.TestConfig(task="vos"))


@pytest.mark.parametrize("name", ["13_e2e_offline_dvis_r50", "16_e2e_online_daq_r50", "17_e2e_offline_daq_r50"])
@pytest.mark.parametrize("task", ["vps", "vss"])
def test_other_families_through_the_runner_equal_the_whole_video_function(name, task):
    """Original DVIS and DVIS-DAQ (the official code shares inference_video_vps / _vss; DAQ passes no aux): the
    bounded-memory predict() equals the whole-video post-processing of the same raw outputs."""
    from conftest import build_fixture_model
    from dvis_sdk.config import DVISConfig
    from dvis_sdk.inference.runner import forward_video

    fx, cfg, model = build_fixture_model(name)
    d = cfg.to_dict()
    d["test"].update(task=task, object_mask_threshold=0.3, overlap_threshold=0.5, num_thing_classes=2)
    cfg = DVISConfig.from_dict(d)
    model.cfg = cfg
    video = fx.io["in.video_uint8"].numpy()
    result = dvis_sdk.VideoSegmenter(model).predict(video, resize=False, chunk_size=100)
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    images = model.preprocess(frames)
    with torch.no_grad():
        out = forward_video(model, images)
    size = tuple(frames.shape[-2:])
    args = (out["pred_cls"], out["pred_masks"][0], tuple(images.shape[-2:]), size, size)
    if task == "vps":
        ids, segments = postprocess_vps(*args, 0.3, 0.5, 2, out.get("aux_pred_cls"))
        np.testing.assert_array_equal(np.asarray(result.panoptic[0]), ids.numpy())
        assert our_segments(result.panoptic[1]) == our_segments(segments) and segments
    else:
        sem = postprocess_vss(*args, out.get("aux_pred_cls"))
        np.testing.assert_array_equal(np.asarray(result.semantic), sem.numpy())
