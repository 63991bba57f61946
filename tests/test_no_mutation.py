"""Wrapping a model for a moment never changes it: building a VideoSegmenter around it, predicting, validating
during training. Everything a caller could observe is compared exactly: parameters and buffers (values, dtype,
device, memory layout), hooks, every module's ``__dict__`` (training flag, fast-path choices, patched methods)
and the model's outputs."""
from __future__ import annotations

import itertools

import numpy as np
import torch

from dvis_sdk import VideoSegmenter
from dvis_sdk.inference.runner import forward_video
from dvis_sdk.models.dvis import build_model
from dvis_sdk.training.datasets import YTVISAnnotations
from dvis_sdk.training.synthetic import SyntheticConfig, generate_ytvis
from dvis_sdk.training.validation import predict_split
from test_training_trainers import micro_config

_CHILDREN = ("_parameters", "_buffers", "_modules")


def _freeze(v):
    if isinstance(v, torch.Tensor):
        return ("tensor", v.detach().clone(), v.stride(), v.dtype, v.device)
    if isinstance(v, dict):  # hooks live in OrderedDicts keyed by handle id
        return ("dict", tuple((k, id(x)) for k, x in v.items()))
    return ("obj", id(v), v if isinstance(v, (bool, int, float, str, type(None), tuple)) else None)


def snapshot(model: torch.nn.Module) -> dict:
    tensors = {k: (t.detach().clone(), t.stride(), t.dtype, t.device, t.requires_grad)
               for k, t in itertools.chain(model.named_parameters(), model.named_buffers())}
    modules = {name: {k: _freeze(v) for k, v in m.__dict__.items() if k not in _CHILDREN}
               for name, m in model.named_modules()}
    return {"tensors": tensors, "modules": modules}


def assert_same(a: dict, b: dict) -> None:
    assert a["tensors"].keys() == b["tensors"].keys()
    for k, (t, *facts) in a["tensors"].items():
        u, *facts_b = b["tensors"][k]
        assert facts == facts_b, k
        assert torch.equal(t, u), k
    assert a["modules"].keys() == b["modules"].keys()
    for name, d in a["modules"].items():
        assert d.keys() == b["modules"][name].keys(), f"{name}: attributes added or removed"
        for k, v in d.items():
            w = b["modules"][name][k]
            if v[0] == "tensor":
                assert torch.equal(v[1], w[1]) and v[2:] == w[2:], f"{name}.{k}"
            else:
                assert v == w, f"{name}.{k} changed"


def _outputs(model, images):
    with torch.no_grad():
        return forward_video(model, images)


def test_segmenter_and_predict_leave_the_model_unchanged():
    torch.manual_seed(0)
    model = build_model(micro_config()).train()  # a training model: train mode must survive too
    images = torch.rand(3, 3, 32, 64) * 255
    model.eval()
    want = _outputs(model, model.preprocess(images))
    model.train()
    before = snapshot(model)
    seg = VideoSegmenter(model, optimize=True, window_size=2)  # a ResNet: optimize would add channels-last
    assert seg.model is not model
    result = seg.predict(images)
    list(seg.stream(images))
    assert result.num_frames == 3
    assert_same(before, snapshot(model))
    model.eval()
    got = _outputs(model, model.preprocess(images))
    for k in ("pred_logits", "pred_masks", "pred_cls"):
        assert torch.equal(got[k], want[k]), k


def test_validation_during_training_leaves_the_model_unchanged(tmp_path):
    ann_path = generate_ytvis(tmp_path, 1, seed=0, config=SyntheticConfig(width=64, height=48, num_frames=3,
                                                                           max_objects=2), image_ext=".png")
    torch.manual_seed(0)
    model = build_model(micro_config()).train()
    before = snapshot(model)
    ann = YTVISAnnotations(ann_path, tmp_path / "JPEGImages")
    results = predict_split(model, ann)
    assert isinstance(results, list)
    assert_same(before, snapshot(model))
    assert np.isfinite([r["score"] for r in results]).all()


def test_a_compiled_model_is_copied_without_its_compile_wrappers():
    """compile_module wrappers live in a module's __dict__ and call THAT module: a copy must not keep them."""
    from dvis_sdk.models.optimize import compile_module

    def failing_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    model = build_model(micro_config())
    compile_module(model.decoder, backend=failing_backend)
    before = snapshot(model)
    seg = VideoSegmenter(model, optimize=False)
    assert "forward" in model.decoder.__dict__ and "forward" not in seg.model.decoder.__dict__
    seg.predict(torch.rand(2, 3, 32, 64) * 255)
    assert_same(before, snapshot(model))
