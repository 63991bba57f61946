"""DVIS-DAQ through the one inference loop (``WindowRunner`` + the step ``finalize``): ``predict`` against the
official-order window loop of the model itself (``iter_windows``: windows of 5, state carried) at any window size,
frame sizes that are not multiples of 32 (padding), tiny random configs online and offline, ``spec`` /
``from_spec``, batch, ``stream``'s error, the manifest entries and official-repo yaml paths."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import dvis_sdk
from conftest import load_fixture, official_weights
from dvis_sdk.inference.runner import video_inference
from dvis_sdk.models.daq.model import WINDOW
from dvis_sdk.official import OFFICIAL_CONFIG_DIR, convert_official_state_dict, load_official_config
from dvis_sdk.ops.postprocess import postprocess_vis
from test_e2e_parity import assert_same_instances

OFFICIAL_PREFIX = {"pixel_decoder.": "sem_seg_head.pixel_decoder.", "decoder.": "sem_seg_head.predictor."}


def _to_official(sd: dict) -> dict:
    """Our key names -> the official ones (the inverse of the conversion's prefix table) + a training-only key."""
    out = {"daq_criterion.empty_weight": torch.ones(3)}
    for k, v in sd.items():
        src = next((s for s in OFFICIAL_PREFIX if k.startswith(s)), None)
        out[OFFICIAL_PREFIX[src] + k[len(src):] if src else k] = v
    return out


def _tiny_cfg(mode: str) -> dict:
    cfg = load_fixture("16_e2e_online_daq_r50").config
    cfg = yaml.safe_load(yaml.safe_dump(cfg))  # a deep copy
    cfg["MODEL"]["META_ARCHITECTURE"] = f"DVIS_DAQ_{mode}"
    cfg["MODEL"]["VIDEO_HEAD"].update(INFERENCE_SELECT_THRESHOLD=0.1, DIS_FG_THRESHOLD=0.01, NOISE_FRAME_NUM=1,
                                      OFFLINE_TOPK_NUM=4)
    return cfg


@torch.no_grad()
def _reference(model, frames: torch.Tensor):
    """The model's own official-order loop (not the runner): 5-frame windows, then the read-out / refiner."""
    images = model.preprocess(frames)
    windows = list(model.iter_windows(images))
    out = model.finalize(windows[-1].state, windows if model.refines_at_end else None)
    size = tuple(frames.shape[-2:])
    if out["pred_cls"].shape[0] == 0:
        return None
    return postprocess_vis(out["pred_cls"], out["pred_masks"][0], tuple(images.shape[-2:]), size, size,
                           model.cfg.test.max_num)


def _check_same(result, ref, frames_thwc: np.ndarray) -> None:
    assert all(i.masks.shape == frames_thwc.shape[:3] for i in result.instances)
    if ref is None:
        assert result.instances == []
        return
    assert_same_instances(np.array([i.score for i in result.instances]), [i.label for i in result.instances],
                          np.stack([i.masks for i in result.instances]), ref.scores, ref.labels, ref.masks.numpy())
    assert sorted(i.track_id for i in result.instances) == sorted(ref.ids.tolist())


@pytest.mark.parametrize("name", ["16_e2e_online_daq_r50", "17_e2e_offline_daq_r50"])
@pytest.mark.parametrize("hw", [(64, 96), (50, 77), (33, 65)])
def test_predict_equals_the_official_window_loop_with_padding(name, hw):
    """Frame sizes that are not multiples of 32 are zero-padded after normalisation (official ImageList); the
    runner's result equals the model's own 5-frame loop on the same padded input, masks cropped back to H x W."""
    fx = load_fixture(name)
    frames = np.ascontiguousarray(fx.io["in.video_uint8"].numpy()[:, :hw[0], :hw[1]])
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights(name), device="cpu")
    result = seg.predict(frames, resize=False)
    assert result.num_frames == frames.shape[0] and (result.height, result.width) == hw
    assert result.meta["window_size"] == WINDOW and result.meta["mode"] == seg.cfg.mode
    assert result.instances, "the fixture video has instances at every crop"
    _check_same(result, _reference(seg.model, torch.from_numpy(frames).permute(0, 3, 1, 2).float()), frames)


@pytest.mark.parametrize("name", ["16_e2e_online_daq_r50", "17_e2e_offline_daq_r50"])
def test_result_does_not_depend_on_the_window_size(name):
    """Segmenter and track module work frame by frame: windows of 1, 2 or the whole clip give the official
    5-frame result (the OOM back-off relies on it)."""
    fx = load_fixture(name)
    frames = fx.io["in.video_uint8"].numpy()
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights(name), device="cpu")
    base = seg.predict(frames, resize=False)
    for ws in (1, 2, frames.shape[0]):
        other = seg.predict(frames, resize=False, window_size=ws)
        assert [(i.track_id, i.label) for i in other.instances] == [(i.track_id, i.label) for i in base.instances]
        assert np.allclose([i.score for i in other.instances], [i.score for i in base.instances], atol=1e-5)
        assert all(np.array_equal(a.masks, b.masks) for a, b in zip(other.instances, base.instances))


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_tiny_random_config_from_official_dict(mode):
    """A cfg dict + an official-format random state dict (with a daq_criterion key) through the public contract."""
    cfg_tree = _tiny_cfg(mode)
    cfg = load_official_config(cfg_tree)
    torch.manual_seed(3)
    model = dvis_sdk.build_model(cfg)
    sd = _to_official(model.state_dict())
    conv = convert_official_state_dict(sd, cfg)
    assert set(conv) == set(model.state_dict())
    seg = dvis_sdk.VideoSegmenter.from_official(cfg_tree, sd, device="cpu")
    frames = np.random.default_rng(0).integers(0, 256, (11, 45, 70, 3), dtype=np.uint8)
    result = seg.predict(frames, resize=False)
    assert len(result.instances) <= cfg.test.max_num
    _check_same(result, _reference(seg.model, torch.from_numpy(frames).permute(0, 3, 1, 2).float()), frames)
    dense = video_inference(seg.model, torch.from_numpy(frames).permute(0, 3, 1, 2).float())
    assert sorted(dense.ids.tolist()) == sorted(i.track_id for i in result.instances)


def test_stream_names_predict():
    fx = load_fixture("16_e2e_online_daq_r50")
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights("16_e2e_online_daq_r50"))
    with pytest.raises(NotImplementedError, match=r"DVIS-DAQ.*use predict\(\)"):
        next(iter(seg.stream(fx.io["in.video_uint8"].numpy(), resize=False)))


def test_spec_round_trip_from_yaml_and_checkpoint_files(tmp_path):
    """from_official(yaml file, .pth file) records both in spec(); from_spec rebuilds the same segmenter."""
    name = "17_e2e_offline_daq_r50"
    fx = load_fixture(name)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(fx.config))
    torch.save(official_weights(name), tmp_path / "model_final.pth")
    seg = dvis_sdk.VideoSegmenter.from_official(tmp_path / "cfg.yaml", tmp_path / "model_final.pth",
                                                window_size=3)
    spec = seg.spec()
    assert spec["model"]["official"].endswith("cfg.yaml") and spec["window_size"] == 3
    back = dvis_sdk.VideoSegmenter.from_spec(spec)
    frames = fx.io["in.video_uint8"].numpy()
    a, b = seg.predict(frames, resize=False), back.predict(frames, resize=False)
    assert a.instances and [(i.track_id, i.label, i.score) for i in a.instances] == \
        [(i.track_id, i.label, i.score) for i in b.instances]
    bare = dvis_sdk.VideoSegmenter.from_spec(dvis_sdk.VideoSegmenter(seg.model).spec(),
                                             state_dict=seg.model.state_dict())
    assert np.allclose([i.score for i in bare.predict(frames, resize=False).instances],
                       [i.score for i in a.instances], atol=1e-6)


def test_batch_predict_folder(tmp_path):
    """A folder of frames and a video file through dvis_sdk.predict_folder (workers use predict)."""
    import cv2

    from dvis_sdk.io import write_video

    fx = load_fixture("16_e2e_online_daq_r50")
    frames = fx.io["in.video_uint8"].numpy()
    src = tmp_path / "in" / "frames"
    src.mkdir(parents=True)
    for i in range(frames.shape[0]):
        cv2.imwrite(str(src / f"{i:03d}.png"), np.ascontiguousarray(frames[i][..., ::-1]))
    write_video(tmp_path / "in" / "clip.mp4", list(frames), fps=5)
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights("16_e2e_online_daq_r50"))
    summary = dvis_sdk.predict_folder(seg, tmp_path / "in", tmp_path / "out", pattern="*", progress=False)
    assert summary.exit_code == 0 and len(summary.ok) == 2 and not summary.failed, summary.table()
    res = dvis_sdk.VideoResult.load(tmp_path / "out" / "frames" / "results.json")
    direct = seg.predict(src)
    assert direct.instances
    assert [(i.track_id, i.label) for i in res.instances] == [(i.track_id, i.label) for i in direct.instances]


def test_official_repo_yaml_path_with_base_chain(tmp_path):
    """A yaml inside an official checkout (DVIS_DAQ/configs/dvis_daq/..., _BASE_ into ../../dvis_Plus/...) and the
    same path given as a name of the shipped configs."""
    root = tmp_path / "DVIS_DAQ" / "configs"
    shutil.copytree(OFFICIAL_CONFIG_DIR / "dvis_plus", root)
    for rel, mode in (("dvis_daq/ovis/DAQ_Online_R50.yaml", "online"),
                      ("dvis_daq/ytvis19/vit_adapter/DAQ_Offline_VitAdapterL.yaml", "offline")):
        a = load_official_config(root / rel)
        b = load_official_config(f"DVIS_DAQ/configs/{rel}")  # not a file here: matched below configs/
        assert a == b and a.variant == "daq" and a.mode == mode
        assert a.input.min_size_test == 480 and a.segmenter.num_queries == a.daq.num_new_ins


def test_manifest_entries_fail_with_one_line_download_hint():
    from dvis_sdk.weights import WeightsUnavailableError, list_models, resolve_weights
    from dvis_sdk.weights.manifest import MANIFEST_PATH, validate_manifest

    assert validate_manifest() == []
    root_copy = Path(__file__).resolve().parents[1] / "weights_manifest.json"
    assert root_copy.read_text() == MANIFEST_PATH.read_text()
    daq = [m for m in list_models() if m["variant"] == "daq"]
    assert len(daq) == 15  # 13 VIS + 2 VIPSeg (video panoptic)
    for m in daq:
        assert m["source"] == "external" and m["repo_id"] == "zhouyik/DVIS-DAQ"
        assert m["filename"] is None and m["revision"] is None  # never guessed
        cfg = load_official_config(OFFICIAL_CONFIG_DIR / m["config"])
        assert (cfg.variant, cfg.mode) == ("daq", m["mode"])
    with pytest.raises(WeightsUnavailableError) as e:
        resolve_weights("daq-r50-ovis-online")
    msg = str(e.value)
    assert "\n" not in msg and "https://huggingface.co/zhouyik/DVIS-DAQ" in msg
    assert "VideoSegmenter.from_official('dvis_plus/dvis_daq/ovis/DAQ_Online_R50.yaml'" in msg


def test_cli_models_lists_daq_with_how_to_fetch(capsys):
    from dvis_sdk.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "daq-vitl-ovis-offline" in out and "zhouyik/DVIS-DAQ (download by hand)" in out
    assert "download the file from https://huggingface.co/zhouyik/DVIS-DAQ" in out


@pytest.mark.slow
@pytest.mark.parametrize("rel", ["DVIS_DAQ/configs/dvis_daq/ovis/DAQ_Online_R50.yaml",
                                 "DVIS_DAQ/configs/dvis_daq/ovis/DAQ_Offline_R50.yaml"])
def test_real_size_r50_random_weights(rel):
    """The real R50 OVIS configs (100 queries, 6 track layers) with random official-format weights."""
    cfg = load_official_config(rel)
    torch.manual_seed(0)
    sd = _to_official(dvis_sdk.build_model(cfg).state_dict())
    seg = dvis_sdk.VideoSegmenter.from_official(rel, sd, device="cpu")
    frames = np.random.default_rng(1).integers(0, 256, (6, 70, 100, 3), dtype=np.uint8)
    result = seg.predict(frames, resize=False)
    _check_same(result, _reference(seg.model, torch.from_numpy(frames).permute(0, 3, 1, 2).float()), frames)
