"""The one window loop (inference/runner.py): the refiner's out-of-memory back-off, and the step protocol with a
backend that is not a DVIS module."""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
import torch

import dvis_sdk
from conftest import load_fixture, raise_oom_when
from dvis_sdk.inference.runner import InferenceOOMError, ScoreAccumulator, WindowRunner


def _segmenter(name="13_e2e_offline_dvis_r50", **kwargs):
    fx = load_fixture(name)
    return dvis_sdk.VideoSegmenter.from_official(fx.config, fx.weights, **kwargs)


def _video(t, h=64, w=96, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)


def _key(result):
    return [(i.track_id, i.label, round(i.score, 5)) for i in result.instances]


def test_refiner_oom_refines_smaller_chunks():
    seg = _segmenter(window_size=2)
    frames = _video(8)
    want = seg.predict(frames, resize=False, chunk_size=2)   # every window refined on its own
    raise_oom_when(seg, "refine", lambda ws: len(ws) > 1)
    with pytest.warns(RuntimeWarning, match="refining in chunks of"):
        got = seg.predict(frames, resize=False)              # whole video first, then halves, then windows
    assert _key(got) == _key(want) and got.meta["chunk_size"] == 2
    for a, b in zip(got.instances, want.instances):
        np.testing.assert_array_equal(a.masks, b.masks)


def test_refiner_oom_on_one_window_is_a_clear_error_with_the_partial_result():
    seg = _segmenter(window_size=2)
    calls = []
    raise_oom_when(seg, "refine", lambda ws: calls.append(len(ws)) or len(calls) > 1)  # frames 0-3 refine, then nothing
    with pytest.warns(RuntimeWarning), pytest.raises(InferenceOOMError, match="refiner at frame 4") as ei:
        seg.predict(_video(8), resize=False, chunk_size=4)
    assert ei.value.frames_done == 4 and ei.value.partial.num_frames == 4
    assert calls == [2, 2, 1]  # the chunk of frames 4-7, then its first window alone


class _ToyBackend:
    """Not a DVIS module: two 'queries' whose logits and masks come straight from the frames' mean colour."""

    def segment(self, images):
        return {"mean": images.mean(dim=(1, 2, 3))}

    def track(self, seg, state):
        t = seg["mean"].shape[0]
        state = (state or 0) + t                         # any object: the runner only passes it on
        logits = torch.stack([seg["mean"], -seg["mean"], torch.zeros(t)], -1)   # (t, C+1=3)
        logits = torch.stack([logits, logits.flip(-1)], 1)[None]               # (1, t, Q=2, 3)
        masks = torch.ones(1, 2, t, 4, 4)
        masks[:, 1] = -1                                 # query 1 never has a mask
        return {"pred_logits": logits, "pred_masks": masks}, state, torch.arange(2).repeat(t, 1)


def test_step_protocol_runs_any_backend():
    backend = _ToyBackend()
    runner = WindowRunner(backend, torch.device("cpu"), nullcontext, image_size=(16, 16), output_size=(8, 8),
                          window_size=2)
    assert not runner.offline                            # no refine(): online
    acc = ScoreAccumulator(num_queries=2)
    images = torch.linspace(0, 1, 5)[:, None, None, None].expand(5, 3, 16, 16)
    for w in list(runner.run(images)) + list(runner.finish()):
        acc.add(w)
    assert acc.frames == 5 and runner.state == 5 and runner.frames_done == 5
    masks = acc.masks_of([0, 1])
    assert all(r is not None for r in masks[0]) and all(r is None for r in masks[1])
