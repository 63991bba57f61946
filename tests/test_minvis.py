"""Segmenter-only video models (official MinVIS / CTMinVIS): parity with fixtures made by the official code
(``scripts/gen_minvis_fixtures.py``; DVIS++ and original DVIS repositories, odd frame sizes, several windows), from
config dicts and from yaml paths, and the segmenter-only API (conversion, round trips, errors)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

import dvis_sdk
from conftest import assert_close_ref, load_fixture
from dvis_sdk import VideoSegmenter
from dvis_sdk.config import DVISConfig, segmenter_only_config
from dvis_sdk.models.minvis import MinVIS, match_embeddings, segmenter_only
from dvis_sdk.official import OFFICIAL_CONFIG_DIR, ConversionError, load_official_config
from test_e2e_parity import assert_same_instances

FIXTURES = ["minvis_ovis_dvisplus", "ctminvis_ytvis19_dvisplus", "minvis_ytvis21_dvis", "minvis_vipseg_dvisplus"]
# the shipped official yaml each fixture was made from (its config.json = that yaml + overrides.json, merged)
SHIPPED = {"minvis_ovis_dvisplus": "dvis_plus/dvis_Plus/ovis/MinVIS_R50.yaml",
           "ctminvis_ytvis19_dvisplus": "dvis_plus/dvis_Plus/ytvis19/CTVIS_R50.yaml",
           "minvis_ytvis21_dvis": "dvis/youtubevis_2021/MinVIS_R50.yaml",
           "minvis_vipseg_dvisplus": "dvis_plus/dvis_Plus/VIPSeg/MinVIS_R50.yaml"}


def tiny_yaml(name: str, tmp_path) -> str:
    """A yaml whose _BASE_ is the shipped official yaml, with the fixture's tiny overrides."""
    over = json.loads((load_fixture(name).dir / "overrides.json").read_text())
    over["MODEL"].pop("DEVICE", None)
    over["_BASE_"] = str(OFFICIAL_CONFIG_DIR / SHIPPED[name])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(over))
    return str(path)


def check_result(result, io) -> None:
    """The fixture's rule: same instances as sets (label exact, |score diff| <= 1e-4, mask IoU >= 0.99), and each
    matched instance is the same track (the official query index in frame-0 order)."""
    scores = [i.score for i in result.instances]
    labels = [i.label for i in result.instances]
    masks = np.stack([i.masks for i in result.instances]) if result.instances else np.zeros((0,))
    assert_same_instances(scores, labels, masks, io["out.result.scores"], io["out.result.labels"],
                          io["out.result.masks"].numpy())
    exp = {(int(lab), round(float(s), 4), int(i)) for s, lab, i in
           zip(io["out.result.scores"], io["out.result.labels"], io["out.result.ids"])}
    got = {(i.label, round(i.score, 4), i.track_id) for i in result.instances}
    assert len(exp & got) >= len(exp) - 1  # rounding at a 4th-decimal boundary may split one pair


@pytest.mark.parametrize("name", FIXTURES)
def test_parity_from_config_dict(name):
    fx = load_fixture(name)
    seg = VideoSegmenter.from_official(fx.config, fx.weights)
    assert seg.mode == "segmenter" and isinstance(seg.model, MinVIS)
    assert seg.cfg.test.max_num == 10  # the official MinVIS keeps 10 whatever TEST.MAX_NUM says (OVIS: 20)
    video = fx.io["in.video_uint8"].numpy()
    assert video.shape[1] % 32 and video.shape[2] % 32  # odd sizes: padding and cropping exercised
    result = seg.predict(video, resize=False, window_size=3)
    assert result.meta["mode"] == "segmenter"
    check_result(result, fx.io)
    # the window size only batches the segmenter: any other gives the same result
    check_result(seg.predict(video, resize=False, window_size=2), fx.io)


@pytest.mark.parametrize("name", ["minvis_ovis_dvisplus", "ctminvis_ytvis19_dvisplus", "minvis_ytvis21_dvis"])
def test_parity_from_yaml_path(name, tmp_path):
    fx = load_fixture(name)
    seg = VideoSegmenter.from_official(tiny_yaml(name, tmp_path), fx.weights)
    want = load_official_config(fx.config)  # the merged cfg as a dict: the same model (tracker fields aside)
    assert (seg.cfg.variant, seg.cfg.mode, seg.cfg.match_embedding, seg.cfg.test) == \
        (want.variant, want.mode, want.match_embedding, want.test)
    check_result(seg.predict(fx.io["in.video_uint8"].numpy(), resize=False), fx.io)


@pytest.mark.parametrize("name", FIXTURES)
def test_intermediates_and_matching(name):
    """Segmenter logits / matching embeddings within the component tolerance, the official permutations exactly
    (they are not all their own inverse, so applying the inverse would fail), the averaged logits."""
    from dvis_sdk.inference.runner import forward_video

    fx = load_fixture(name)
    model = VideoSegmenter.from_official(fx.config, fx.weights, optimize=False).model
    video = fx.io["in.video_uint8"].permute(0, 3, 1, 2).float()
    images = model.preprocess(video)
    with torch.no_grad():
        seg = model.segment(images)
        _, _, perms = model.track(seg, None)
        raw = forward_video(model, images)
    assert_close_ref(seg["pred_logits"], fx.io["out.segmenter.pred_logits"], "pred_logits")
    assert_close_ref(seg["match_embeds"], fx.io["out.segmenter.match_embeds"], "match_embeds")
    assert torch.equal(perms, fx.io["out.match.indices"])
    assert fx.meta["matching"]["frames_with_permutation_not_its_own_inverse"]
    assert_close_ref(raw["pred_cls"], fx.io["out.postprocess_input.pred_cls"], "pred_cls")


def test_match_embeddings_aligns_current_to_previous():
    gen = torch.Generator().manual_seed(0)
    prev = torch.randn(6, 8, generator=gen)
    perm = torch.tensor([2, 0, 5, 1, 3, 4])  # not its own inverse
    cur = torch.empty_like(prev)
    cur[perm] = prev * 1.5 + 0.01 * torch.randn(6, 8, generator=gen)  # current query perm[k] continues track k
    assert torch.equal(match_embeddings(prev, cur), perm)


def test_pretrained_round_trip_stream_and_batch(tmp_path):
    fx = load_fixture("ctminvis_ytvis19_dvisplus")
    seg = VideoSegmenter.from_official(fx.config, fx.weights)
    video = fx.io["in.video_uint8"].numpy()
    ref = seg.predict(video, resize=False)
    seg.save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["mode"] == "segmenter"
    again = VideoSegmenter.from_pretrained(tmp_path / "m")
    assert isinstance(again.model, MinVIS)
    assert set(again.model.state_dict()) == set(seg.model.state_dict())
    res = again.predict(video, resize=False)
    assert [(i.track_id, i.label, i.score) for i in res.instances] == \
        [(i.track_id, i.label, i.score) for i in ref.instances]
    # stream: every frame's instances are tracks of the same queries, masks equal the predicted ones
    frames = list(again.stream(video, resize=False, score_threshold=0.0))
    assert len(frames) == video.shape[0]
    by_track = {i.track_id: i for i in ref.instances}
    last = frames[-1]
    for inst in last.instances:
        if inst.track_id in by_track and by_track[inst.track_id].label == inst.label:
            assert np.array_equal(inst.mask, by_track[inst.track_id].masks[-1])
    # batch: a folder of videos through dvis_sdk.predict_folder (it resizes: keep the test size small)
    from PIL import Image
    again.model.cfg.input.min_size_test, again.model.cfg.input.max_size_test = 64, 128
    vdir = tmp_path / "videos" / "clip"
    vdir.mkdir(parents=True)
    for t, f in enumerate(video):
        Image.fromarray(f).save(vdir / f"{t:05d}.png")
    out = tmp_path / "out"
    summary = dvis_sdk.predict_folder(again, tmp_path / "videos", out, progress=False)
    assert summary.exit_code == 0
    written = json.loads((out / "clip" / "results.json").read_text())
    assert len(written["instances"]) == 10 and written["meta"]["mode"] == "segmenter"


def test_segmenter_only_of_a_dvis_model_leaves_it_unchanged():
    from conftest import build_fixture_model

    fx, cfg, model = build_fixture_model("11_e2e_online_r50")  # a DVIS++ online model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [f"thing{i}" for i in range(cfg.segmenter.num_classes)]
    m = segmenter_only(model, class_names=names)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(m.state_dict()) == {k for k in before if not k.startswith("tracker.")}
    assert m.cfg.mode == "segmenter" and m.cfg.match_embedding == "reid" and m.cfg.class_names == names
    video = fx.io["in.video_uint8"].numpy()
    a = VideoSegmenter(m).predict(video, resize=False)
    # the same as the official checkpoint run with mode="segmenter" (tracker weights dropped by the converter)
    b = VideoSegmenter.from_official(fx.config, fx.weights, mode="segmenter").predict(video, resize=False)
    assert [(i.track_id, i.label, round(i.score, 6)) for i in a.instances] == \
        [(i.track_id, i.label, round(i.score, 6)) for i in b.instances]
    assert a.instances[0].label_name in names and len(a.instances) == 10
    # and through the predictor: same settings, this segmenter unchanged
    seg = VideoSegmenter(model)
    assert seg.segmenter_only().mode == "segmenter" and seg.mode == "online"
    with pytest.raises(ValueError, match="class names"):
        segmenter_only(model, class_names=["a"])


def test_config_round_trip_and_errors():
    cfg = load_official_config("dvis_plus/dvis_Plus/ovis/CTVIS_R50.yaml")
    assert (cfg.variant, cfg.mode, cfg.match_embedding, cfg.test.max_num) == ("dvis++", "segmenter", "reid", 10)
    assert DVISConfig.from_json(cfg.to_json()).to_dict() == cfg.to_dict()
    mv = load_official_config("dvis/ovis/MinVIS_R50.yaml")
    assert (mv.variant, mv.match_embedding, mv.class_names[:1]) == ("dvis", "embeds", ["Person"])
    with pytest.raises(ConversionError, match="segmenter-only model"):
        load_official_config("dvis/ovis/MinVIS_R50.yaml", mode="online")
    tree = load_fixture("ctminvis_ytvis19_dvisplus").config
    bad = json.loads(json.dumps(tree))
    bad["MODEL"]["MASK_FORMER"]["TRANSFORMER_DECODER_NAME"] = "VideoMultiScaleMaskedTransformerDecoder_minvis"
    with pytest.raises(ConversionError, match="re-identification"):
        load_official_config(bad)
    with pytest.raises(ValueError, match="match_embedding"):
        segmenter_only_config(mv, match_embedding="reid")
    daq = load_official_config("dvis_daq/ovis/DAQ_Online_R50.yaml", mode="segmenter")
    assert (daq.variant, daq.daq, daq.mode) == ("dvis++", None, "segmenter")
    from dvis_sdk.inference.predictor import _with_mode
    with pytest.raises(ValueError, match="no tracker"):
        _with_mode(mv, "online")


@pytest.mark.slow  # the export takes ~2 minutes on one CPU thread
def test_onnx_export_of_a_segmenter_only_model(tmp_path):
    """`dvis export --mode segmenter` of a saved DVIS++ model: the segmenter graph alone, the matching in Python;
    from_pretrained(EXPORT) gives the PyTorch model's result (same tracks, scores within 1e-3, IoU >= 0.99)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from dvis_sdk.cli import main
    from dvis_sdk.export import OnnxMinVIS

    fx = load_fixture("ctminvis_ytvis19_dvisplus")
    seg = VideoSegmenter.from_official(fx.config, fx.weights)
    seg.save_pretrained(tmp_path / "m")
    assert main(["export", str(tmp_path / "m"), "--format", "onnx", "--out", str(tmp_path / "onnx"),
                 "--size", "96x64"]) == 0
    meta = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert list(meta["graphs"]) == ["segmenter"] and meta["mode"] == "segmenter"
    ort = VideoSegmenter.from_pretrained(tmp_path / "onnx")
    assert isinstance(ort.model, OnnxMinVIS) and ort.backend == "onnxruntime" and ort.mode == "segmenter"
    video = fx.io["in.video_uint8"].numpy()
    ref, out = seg.predict(video, resize=False), ort.predict(video, resize=False)
    assert [i.track_id for i in out.instances] == [i.track_id for i in ref.instances]
    for r, o in zip(ref.instances, out.instances):
        union = np.logical_or(r.masks, o.masks).sum()
        assert r.label == o.label and abs(r.score - o.score) <= 1e-3
        assert union == 0 or np.logical_and(r.masks, o.masks).sum() / union >= 0.99
    assert len(list(ort.stream(video, resize=False))) == video.shape[0]
    with pytest.raises(ValueError, match="mode='online'"):
        VideoSegmenter.from_pretrained(tmp_path / "onnx", mode="online")


def test_cli_predict_official_segmenter_only(tmp_path):
    """`dvis predict --config MinVIS.yaml --checkpoint ...` and `--mode segmenter` of a DVIS checkpoint."""
    from PIL import Image
    from safetensors.torch import save_file

    from dvis_sdk.cli import main

    fx = load_fixture("minvis_ovis_dvisplus")
    save_file(fx.weights, str(tmp_path / "stage1.safetensors"))
    vdir = tmp_path / "clip"
    vdir.mkdir()
    for t, f in enumerate(fx.io["in.video_uint8"].numpy()):
        Image.fromarray(f).save(vdir / f"{t:05d}.png")
    code = main(["predict", str(vdir), "--config", tiny_yaml("minvis_ovis_dvisplus", tmp_path), "--checkpoint",
                 str(tmp_path / "stage1.safetensors"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0
    doc = json.loads(next((tmp_path / "out").rglob("results.json")).read_text())
    assert doc["meta"]["mode"] == "segmenter" and len(doc["instances"]) == 10


def test_stage1_checkpoint_with_a_tracker_config_says_what_to_do():
    fx = load_fixture("ctminvis_ytvis19_dvisplus")
    online = json.loads(json.dumps(fx.config))
    online["MODEL"]["META_ARCHITECTURE"] = "DVIS_Plus_online"
    with pytest.raises(ConversionError, match="mode='segmenter'"):
        VideoSegmenter.from_official(online, fx.weights)
    assert VideoSegmenter.from_official(online, fx.weights, mode="segmenter").mode == "segmenter"


def test_segmenter_only_of_a_daq_model():
    """DVIS-DAQ's segmenter is the DVIS++ one: it runs as CTMinVIS (re-id matching), DAQ config dropped."""
    from conftest import build_fixture_model

    fx, _, model = build_fixture_model("16_e2e_online_daq_r50")
    m = segmenter_only(model)
    assert (m.cfg.variant, m.cfg.daq, m.cfg.match_embedding) == ("dvis++", None, "reid")
    assert not any(k.startswith("tracker.") for k in m.state_dict())
    result = VideoSegmenter(m).predict(fx.io["in.video_uint8"].numpy(), resize=False)
    assert len(result.instances) == 10 and result.meta["mode"] == "segmenter"
