"""End-to-end parity with the official DVIS++ / DVIS models (fixtures 09-13), through the public contract:
load_official_config -> convert_official_state_dict -> build_model -> load_state_dict(strict=True)."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

import dvis_sdk
from conftest import assert_close_ref, build_fixture_model, load_fixture, official_weights
from dvis_sdk.inference.runner import WindowRunner, forward_video, video_inference

E2E = ["09_e2e_online_vit_adapter", "10_e2e_offline_vit_adapter", "11_e2e_online_r50",
       "12_e2e_online_dvis_swin", "13_e2e_offline_dvis_r50"]


def check_final_result(model, io, video):
    """The VIS result of ``video`` equals the fixture's ``out.result.*`` (instances as sets, ids included)."""
    result = video_inference(model, video)
    assert_same_instances(result.scores, result.labels, result.masks.numpy(),
                          io["out.result.scores"], io["out.result.labels"], io["out.result.masks"].numpy())
    # the official ids are query indices (DAQ: sequence ids); matched instances must agree on them too
    exp = {(int(lab), round(float(s), 4), int(i)) for s, lab, i in
           zip(io["out.result.scores"], io["out.result.labels"], io["out.result.ids"])}
    got = {(int(lab), round(float(s), 4), int(i)) for s, lab, i in zip(result.scores, result.labels, result.ids)}
    assert len(exp & got) >= len(exp) - 1  # rounding at a 4th-decimal boundary may split one pair


def assert_same_instances(scores, labels, masks, exp_scores, exp_labels, exp_masks):
    """The README's rule: same count, matched as sets by (label, score) with |dscore| <= 1e-4 (ties broken by
    mask IoU), labels exact, mask IoU >= 0.99 per matched pair."""
    assert len(scores) == len(exp_scores)
    free = list(range(len(scores)))
    for e in range(len(exp_scores)):
        cands = [a for a in free
                 if int(labels[a]) == int(exp_labels[e]) and abs(float(scores[a]) - float(exp_scores[e])) <= 1e-4]
        assert cands, f"expected instance {e} (label {int(exp_labels[e])}, score {float(exp_scores[e]):.6f}) not found"

        def iou(a, e=e):
            inter = np.logical_and(masks[a], exp_masks[e]).sum()
            union = np.logical_or(masks[a], exp_masks[e]).sum()
            return 1.0 if union == 0 else inter / union
        best = max(cands, key=iou)
        assert iou(best) >= 0.99, f"instance {e}: mask IoU {iou(best):.4f} < 0.99"
        free.remove(best)


@pytest.mark.parametrize("name", E2E)
def test_e2e_intermediates_and_result(name):
    fx, cfg, model = build_fixture_model(name)
    io = fx.io
    video = torch.from_numpy(io["in.video_uint8"].numpy()).permute(0, 3, 1, 2).float()
    images = model.preprocess(video)
    if "in.preprocessed" in io:
        assert_close_ref(images, io["in.preprocessed"], "preprocessed")
    with torch.no_grad():
        windows = list(WindowRunner(model, images.device, nullcontext, images.shape[-2:], images.shape[-2:],
                                    cfg.test.window_size, keep_outputs=True).windows(images))
    assert [w.start for w in windows] == [s for s, _ in fx.meta["video"]["windows"]]
    for i, w in enumerate(windows):
        for part, outs in (("segmenter", w.segmenter), ("tracker", w.tracker)):
            for key in list(io):
                prefix = f"out.{part}.window{i}."
                if not key.startswith(prefix):
                    continue
                field = key[len(prefix):]
                if field == "match_indices":
                    assert torch.equal(w.indices, io[key]), f"{key}: tracker matching differs"
                else:
                    assert_close_ref(outs[field], io[key], key)

    with torch.no_grad():
        if cfg.mode == "offline":
            inputs = model.refiner_inputs(windows)
            for field in ("instance_embeds", "frame_embeds", "mask_features"):
                if f"out.refiner_input.{field}" in io:
                    assert_close_ref(inputs[field], io[f"out.refiner_input.{field}"], f"refiner_input.{field}")
        raw = forward_video(model, images)
    if cfg.mode == "offline":
        for field in ("pred_logits", "pred_masks", "pred_embds"):
            assert_close_ref(raw[field], io[f"out.refiner.{field}"], f"refiner.{field}")
        assert_close_ref(raw["aux_pred_cls"], io["out.postprocess_input.aux_pred_cls"], "aux_pred_cls")
    assert_close_ref(raw["pred_cls"], io["out.postprocess_input.pred_cls"], "pred_cls")
    assert_close_ref(raw["pred_masks"][0], io["out.postprocess_input.pred_masks"], "postprocess pred_masks")

    check_final_result(model, io, video)


@pytest.mark.parametrize("name", ["11_e2e_online_r50", "13_e2e_offline_dvis_r50"])
def test_video_segmenter_from_official_contract(name):
    """The public minimal API: from_official(cfg dict, state dict) + predict(frames, resize=False)."""
    fx = load_fixture(name)
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, official_weights(name), device="cpu")
    frames = fx.io["in.video_uint8"].numpy()
    result = seg.predict(frames, resize=False)
    assert len(result.instances) == len(fx.io["out.result.scores"])
    for inst in result.instances:
        assert isinstance(inst.score, float) and isinstance(inst.label, int)
        assert inst.masks.shape == frames.shape[:3] and inst.masks.dtype == np.bool_
    scores = np.array([i.score for i in result.instances])
    assert np.all(np.diff(scores) <= 0), "instances are sorted by score"
    assert_same_instances(scores, [i.label for i in result.instances], np.stack([i.masks for i in result.instances]),
                          fx.io["out.result.scores"], fx.io["out.result.labels"], fx.io["out.result.masks"].numpy())
