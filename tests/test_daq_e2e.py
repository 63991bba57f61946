"""DVIS-DAQ end to end: parity with the official ``DVIS_DAQ_online`` / ``DVIS_DAQ_offline`` (fixtures 16, 17) through
the public contract load_official_config -> convert_official_state_dict -> build_model -> load_state_dict(strict),
intermediates included (segmenter, per-frame track module state, online rows, offline selection, refiner)."""
from __future__ import annotations

import pytest
import torch

import dvis_sdk
from conftest import assert_close_ref, build_fixture_model, load_fixture, official_weights
from dvis_sdk.inference.runner import forward_video, video_inference
from dvis_sdk.models.daq.model import OfflineDAQ, OnlineDAQ
from dvis_sdk.official import load_official_config
from test_e2e_parity import assert_same_instances, check_final_result

EXACT = ("valid", "seq", "killed", "slot_match", "n_track")


@torch.no_grad()
def test_online_daq_fixture():
    fx, cfg, model = build_fixture_model("16_e2e_online_daq_r50")
    io = fx.io
    assert isinstance(model, OnlineDAQ) and cfg.variant == "daq" and cfg.daq.ovis_infer
    video = io["in.video_uint8"].permute(0, 3, 1, 2).float()
    images = model.preprocess(video)
    assert_close_ref(images, io["in.preprocessed"], "preprocessed")
    windows = list(model.iter_windows(images, return_records=True))
    assert [w.start for w in windows] == [s for s, _ in fx.meta["video"]["windows"]]
    for i, w in enumerate(windows):
        for field, value in w.segmenter.items():
            assert_close_ref(value, io[f"out.segmenter.window{i}.{field}"], f"segmenter.window{i}.{field}")
    records = [r for w in windows for r in w.records]
    for t, rec in enumerate(records):
        keys = [k for k in io if k.startswith(f"out.tracker.frame{t}.")]
        assert keys
        for key in keys:
            field = key.rsplit(".", 1)[-1]
            if field in EXACT:
                assert torch.equal(rec[field].to(io[key].dtype), io[key]), key
            else:
                assert_close_ref(rec[field], io[key], key)
    raw = forward_video(model, images)
    assert torch.equal(raw["seq_index"], io["out.online_rows.seq_index"])
    assert torch.equal(raw["padding_masks"], io["out.online_rows.padding_masks"][0])
    state = raw["state"]
    assert torch.equal(torch.tensor([s.start for s in state.sequences]), io["out.sequences.start"])
    assert torch.equal(torch.tensor([s.dead for s in state.sequences]), io["out.sequences.dead"])
    assert_close_ref(raw["pred_cls"], io["out.postprocess_input.pred_cls"], "pred_cls")
    assert_close_ref(raw["pred_masks"][0], io["out.postprocess_input.pred_masks"], "pred_masks")
    check_final_result(model, fx.io, video)


@torch.no_grad()
def test_offline_daq_fixture():
    fx, cfg, model = build_fixture_model("17_e2e_offline_daq_r50")
    io = fx.io
    assert isinstance(model, OfflineDAQ) and cfg.daq.offline_topk_num == 6
    assert not any("conv_short_aggregate" in k for k in model.state_dict())  # USE_LOCAL_ATTN False
    video = io["in.video_uint8"].permute(0, 3, 1, 2).float()
    images = model.preprocess(video)
    raw = forward_video(model, images)
    sel = raw["selection"]
    # both the top-k of the sequences and the naive MinVIS padding ran
    assert (sel["seq_index"] >= 0).sum() == cfg.daq.offline_topk_num and (sel["seq_index"] < 0).any()
    assert torch.equal(sel["seq_index"], io["out.offline_selection.seq_index"])
    assert torch.equal(sel["padding_masks"], io["out.offline_selection.padding_masks"])
    assert torch.equal(sel["padding_masks"], io["out.refiner_input.padding_masks"])
    assert_close_ref(sel["online_logits"], io["out.offline_selection.online_logits"], "online_logits")
    assert_close_ref(sel["instance_embeds"], io["out.refiner_input.instance_embeds"], "instance_embeds")
    assert_close_ref(raw["frame_embeds"], io["out.refiner_input.frame_embeds"], "frame_embeds")
    for field in ("pred_logits", "pred_masks"):
        assert_close_ref(raw[field], io[f"out.refiner.{field}"], f"refiner.{field}")
    # the official refiner returns its last layer BEFORE decoder_norm as pred_embds
    last = model.refiner._run_layers(sel["instance_embeds"], raw["frame_embeds"], all_layers=False)[-1]
    assert_close_ref(last.permute(0, 3, 1, 2), io["out.refiner.pred_embds"], "refiner.pred_embds")
    assert_close_ref(raw["pred_cls"], io["out.postprocess_input.pred_cls"], "pred_cls")
    assert_close_ref(raw["pred_masks"][0], io["out.postprocess_input.pred_masks"], "pred_masks")
    check_final_result(model, fx.io, video)


@torch.no_grad()
def test_offline_single_row_gives_empty_result():
    """Official quirk: exactly one refiner row -> no instance at all."""
    fx, cfg, model = build_fixture_model("17_e2e_offline_daq_r50")
    model.cfg.daq.num_new_ins = 1  # the naive padding stops at one row ...
    model.cfg.daq.offline_topk_num = 1  # ... and one sequence is selected
    video = fx.io["in.video_uint8"].permute(0, 3, 1, 2).float()[:3]
    out = video_inference(model, video)
    assert out.scores.numel() == 0 and out.masks.shape == (0, 3, 64, 96)
    # the same through VideoSegmenter.predict (the runner's finalize step with zero output rows)
    result = dvis_sdk.VideoSegmenter(model).predict(video.permute(0, 2, 3, 1).byte().numpy(), resize=False)
    assert result.instances == [] and result.num_frames == 3


def test_build_rejects_mismatched_new_instance_count():
    fx = load_fixture("16_e2e_online_daq_r50")
    cfg = load_official_config(fx.config)
    cfg.daq.num_new_ins = cfg.segmenter.num_queries + 1
    with pytest.raises(ValueError, match="num_new_ins"):
        dvis_sdk.build_model(cfg)


@pytest.mark.parametrize("name", ["16_e2e_online_daq_r50", "17_e2e_offline_daq_r50"])
def test_video_segmenter_from_official_contract(name):
    """The public minimal API (with its default fast paths): from_official(cfg dict, state dict) + predict(frames,
    resize=False)."""
    import numpy as np

    fx = load_fixture(name)
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights(name), device="cpu")
    frames = fx.io["in.video_uint8"].numpy()
    result = seg.predict(frames, resize=False)
    scores = np.array([i.score for i in result.instances])
    assert np.all(np.diff(scores) <= 0), "instances are sorted by score"
    assert all(i.masks.shape == frames.shape[:3] for i in result.instances)
    assert_same_instances(scores, [i.label for i in result.instances], np.stack([i.masks for i in result.instances]),
                          fx.io["out.result.scores"], fx.io["out.result.labels"], fx.io["out.result.masks"].numpy())
    with pytest.raises(NotImplementedError, match="DVIS-DAQ"):
        next(iter(seg.stream(frames, resize=False)))


def test_save_pretrained_round_trip_and_offline_checkpoint_online(tmp_path):
    fx = load_fixture("17_e2e_offline_daq_r50")
    frames = fx.io["in.video_uint8"].numpy()
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights("17_e2e_offline_daq_r50"), device="cpu")
    seg.save_pretrained(tmp_path / "m")
    back = dvis_sdk.VideoSegmenter.from_pretrained(tmp_path / "m")
    assert isinstance(back.model, OfflineDAQ) and back.cfg == seg.cfg
    a, b = seg.predict(frames, resize=False), back.predict(frames, resize=False)
    assert [(i.label, i.score) for i in a.instances] == [(i.label, i.score) for i in b.instances]
    # an offline DAQ checkpoint runs online (refiner dropped) and then gives the online fixture's result
    online = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights("17_e2e_offline_daq_r50"), mode="online")
    assert isinstance(online.model, OnlineDAQ) and not isinstance(online.model, OfflineDAQ)
    ref = load_fixture("16_e2e_online_daq_r50").io
    r = online.predict(frames, resize=False)
    got = sorted(i.score for i in r.instances)
    exp = sorted(float(s) for s in ref["out.result.scores"])
    assert len(got) == len(exp) and max(abs(x - y) for x, y in zip(got, exp)) <= 1e-4
