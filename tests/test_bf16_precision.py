"""bf16 autocast against fp32 on the trained tiny models, and the ``stem_fp32`` choice that makes it accurate: the
backbone's first layer (ResNet stem, Swin / DINOv2 patch embedding, the ViT-Adapter's first spatial-prior conv) runs
in fp32 under autocast, because rounding the normalised image to bf16 is what loses mask accuracy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import dvis_sdk
from dvis_sdk.evaluation.agreement import compare_results
from dvis_sdk.inference.runner import video_inference
from dvis_sdk.io import open_video
from dvis_sdk.models.backbones.dinov2 import PatchEmbed as VitPatchEmbed
from dvis_sdk.models.backbones.resnet import BasicStem
from dvis_sdk.models.backbones.swin import PatchEmbed as SwinPatchEmbed
from dvis_sdk.models.backbones.vit_adapter import SpatialPriorModule
from dvis_sdk.models.optimize import copy_model, impl_choices, optimize
from dvis_sdk.ops.preprocess import resize_frame, resized_shape
from dvis_sdk.weights import list_models, resolve_weights

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "data" / "shapes.mp4"
FRAMES = 16  # ~1 s a run on one CPU thread
# mean mask IoU of bf16 against fp32 on these 16 frames (benchmarks/precision.py, CPU), first layer under autocast ->
# in fp32: online 0.958 -> 0.993, offline 0.949 -> 0.987
MIN_MEAN_IOU = 0.98


def _first_layers():
    torch.manual_seed(0)
    return {
        "resnet stem": BasicStem(3, 8, norm="BN"),
        "swin patch embedding": SwinPatchEmbed(4, 3, 16),
        "dinov2 patch embedding": VitPatchEmbed(32, 16, 3, 16),
        "vit-adapter spatial prior": SpatialPriorModule(8, 16),
    }


@pytest.mark.parametrize("name", list(_first_layers()))
def test_first_layer_runs_fp32_under_autocast(name):
    layer = _first_layers()[name].eval()
    # the spatial prior module's later convs run under autocast either way: watch its first conv + BN + ReLU
    watched = layer.stem[2] if isinstance(layer, SpatialPriorModule) else layer
    seen = []
    watched.register_forward_hook(lambda m, i, o: seen.append((o[0] if isinstance(o, tuple) else o).clone()))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            layer(x)
            layer.set_impl(stem_fp32=False)
            layer(x)
    ref, fast, half = seen
    assert layer.get_impl() == {"stem_fp32": False}
    assert fast.dtype == torch.float32 and torch.equal(fast, ref)
    assert half.dtype == torch.bfloat16 and not torch.equal(half.float(), ref)


@pytest.mark.parametrize("name", list(_first_layers()))
def test_first_layer_of_a_bf16_cast_model_runs_in_its_dtype_under_autocast(name):
    layer = _first_layers()[name].eval().to(torch.bfloat16)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = layer(x.to(torch.bfloat16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)  # an fp32 image: cast to the weights' dtype, not to fp32 (no dtype mismatch)
    assert torch.equal(_first(out), _first(ref))


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def test_stem_fp32_is_a_checked_per_model_choice():
    model = dvis_sdk.build_model(resolve_weights("dvis-tiny-shapes").config)
    assert impl_choices(model)["backbone.stem"] == {"stem_fp32": True}
    other = optimize(copy_model(model), stem_fp32=False)
    assert impl_choices(other)["backbone.stem"] == {"stem_fp32": False}
    assert model.backbone.stem.stem_fp32 is True  # the other model is unchanged
    with pytest.raises(TypeError, match="stem_fp32"):
        optimize(model, stem_fp32="yes")


def _clip(cfg, frames: int) -> torch.Tensor:
    src = open_video(CLIP, max_frames=frames)
    size = resized_shape(src.height, src.width, cfg.input.min_size_test, cfg.input.max_size_test)
    frames = np.stack([resize_frame(f, size) for _, f in src])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float()


def _run(model, video, dtype):
    ctx = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), ctx:
        return video_inference(model, video)


@pytest.mark.parametrize("name", ["dvis-tiny-shapes", "dvis-tiny-shapes-offline"])
def test_bf16_matches_fp32_on_the_trained_tiny_model(name):
    if name not in {m["name"] for m in list_models()}:
        pytest.skip(f"{name} is not in this checkout's manifest")
    resolved = resolve_weights(name)
    model = dvis_sdk.build_model(resolved.config)
    model.load_state_dict(resolved.state_dict)
    model = optimize(model.eval())  # the defaults a VideoSegmenter gets
    video = _clip(resolved.config, FRAMES)
    ref = _run(model, video, torch.float32)

    bf16 = compare_results(ref, _run(model, video, torch.bfloat16))
    assert bf16.mean_iou >= MIN_MEAN_IOU and bf16.same_top, bf16
    assert bf16.matched == bf16.total, bf16
    # the official computation (first layer under autocast too) is what lost the accuracy
    half_stem = compare_results(ref, _run(optimize(model, stem_fp32=False), video, torch.bfloat16))
    assert half_stem.mean_iou < bf16.mean_iou, (half_stem, bf16)
