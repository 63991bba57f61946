"""Runtime behaviour of the assembled models beyond the fixtures: dtypes, padding, window counts, state."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

import dvis_sdk
from conftest import load_fixture
from dvis_sdk.inference.runner import WindowRunner, forward_video
from dvis_sdk.official import convert_official_state_dict, load_official_config


def _runner(model):
    return WindowRunner(model, torch.device("cpu"), nullcontext, (0, 0), (0, 0), model.cfg.test.window_size)


def _segmenter(name="11_e2e_online_r50", **kwargs):
    fx = load_fixture(name)
    return dvis_sdk.VideoSegmenter.from_official(fx.config, fx.weights, **kwargs), fx


def _video(t, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("t", [1, 2, 8])
def test_frame_counts_and_window_sizes(t):
    seg, _ = _segmenter()
    video = _video(t, 64, 96)
    res = seg.predict(video, resize=False)
    assert res.num_frames == t and len(res.instances) == 10
    assert all(i.masks.shape == (t, 64, 96) for i in res.instances)
    # window size changes the batching, not the result: the tracker state carries across windows
    seg1 = dvis_sdk.VideoSegmenter(seg.model, window_size=1)
    res1 = seg1.predict(video, resize=False)
    a = sorted((i.label, round(i.score, 4)) for i in res.instances)
    b = sorted((i.label, round(i.score, 4)) for i in res1.instances)
    assert a == b


def test_sizes_that_need_padding():
    seg, _ = _segmenter()
    res = seg.predict(_video(3, 50, 70), resize=False)   # padded to 64 x 96 inside, cropped back
    assert all(i.masks.shape == (3, 50, 70) for i in res.instances)


def test_resize_maps_results_back_to_input_size():
    seg, _ = _segmenter()
    seg.model.cfg.input.min_size_test, seg.model.cfg.input.max_size_test = 64, 128
    res = seg.predict(_video(2, 120, 180), resize=True)   # model runs at 64 x 96
    assert all(i.masks.shape == (2, 120, 180) for i in res.instances)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_runs_on_cpu(dtype):
    if dtype == "fp16":
        with pytest.warns(UserWarning, match="fp16"):
            seg, fx = _segmenter(dtype="fp16")
        assert seg.dtype == "fp32"
        return
    seg, fx = _segmenter(dtype=dtype)
    res = seg.predict(fx.io["in.video_uint8"].numpy(), resize=False)
    assert len(res.instances) == 10 and all(np.isfinite(i.score) for i in res.instances)


@pytest.mark.parametrize("name", ["11_e2e_online_r50", "13_e2e_offline_dvis_r50"])
def test_bf16_module_forward(name):
    """The whole model cast to bf16 runs (no dtype mismatches anywhere in the graph)."""
    fx = load_fixture(name)
    cfg = load_official_config(fx.config)
    model = dvis_sdk.build_model(cfg)
    model.load_state_dict(convert_official_state_dict(fx.weights, cfg))
    model = model.to(torch.bfloat16)
    video = fx.io["in.video_uint8"].permute(0, 3, 1, 2).float()
    with torch.no_grad():
        out = forward_video(model, model.preprocess(video).to(torch.bfloat16))
    assert torch.isfinite(out["pred_cls"]).all()


def test_two_videos_interleaved_match_sequential():
    seg, _ = _segmenter()
    model = seg.model
    a, b = _video(6, 64, 96, 1), _video(6, 64, 96, 2)
    ia = model.preprocess(torch.from_numpy(a).permute(0, 3, 1, 2).float())
    ib = model.preprocess(torch.from_numpy(b).permute(0, 3, 1, 2).float())
    with torch.no_grad():
        seq_a = [w.tracker["pred_logits"] for w in _runner(model).windows(ia)]
        seq_b = [w.tracker["pred_logits"] for w in _runner(model).windows(ib)]
        sa = sb = None
        inter_a, inter_b = [], []
        for s in (0, 3):
            wa = model.track_clip(ia[s:s + 3], state=sa)
            sa = wa.state
            inter_a.append(wa.tracker["pred_logits"])
            wb = model.track_clip(ib[s:s + 3], state=sb)
            sb = wb.state
            inter_b.append(wb.tracker["pred_logits"])
    for x, y in zip(seq_a + seq_b, inter_a + inter_b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_bad_frames_are_clear_errors():
    seg, _ = _segmenter()
    with pytest.raises(ValueError, match="grayscale"):
        seg.predict(np.zeros((2, 64, 96, 1), np.uint8))
    with pytest.raises(ValueError, match="RGBA"):
        seg.predict(np.zeros((2, 64, 96, 4), np.uint8))
    with pytest.raises(ValueError, match="zero-length"):
        seg.predict(np.zeros((0, 64, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="different shapes"):
        seg.predict([np.zeros((64, 96, 3), np.uint8), np.zeros((32, 96, 3), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        seg.predict(np.zeros((2, 64, 96, 3), np.float32))
    with pytest.raises(RuntimeError, match="CUDA is not available") if not torch.cuda.is_available() else _nullctx():
        dvis_sdk.VideoSegmenter(seg.model, device="cuda")


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
