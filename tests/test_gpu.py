"""Checks that need a CUDA GPU (marked ``gpu``; skipped without one). Run them with ``pytest -m gpu`` or through
``benchmarks/gpu_check.py``, which also records speed and memory. Tolerances: half precision against fp32 on the
same GPU, the embedded trained tiny model on synthetic scenes (random-weight models are chaotic: see
``docs/performance.md``); ONNX Runtime's CUDA provider against PyTorch fp32 as the CPU export tests."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dvis_sdk
from dvis_sdk.training.synthetic import SyntheticConfig, render_video

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TINY = "dvis-tiny-shapes"


def _frames(seed=97301, t=8):
    return render_video(seed, SyntheticConfig(width=200, height=120, num_frames=t))[0]


def _agreement(ref, out):
    index = {(i.track_id, i.label): i for i in out.instances}
    ious = []
    for a in ref.instances:
        b = index.get((a.track_id, a.label))
        if b is None:
            ious.append(0.0)
            continue
        ma, mb = a.masks, b.masks
        union = np.logical_or(ma, mb).sum()
        ious.append(1.0 if union == 0 else np.logical_and(ma, mb).sum() / union)
    top = [{(i.track_id, i.label) for i in sorted(r.instances, key=lambda i: -i.score)[:3]} for r in (ref, out)]
    return float(np.mean(ious)), top[0] == top[1]


@pytest.mark.parametrize("dtype", ["fp16", "bf16", "auto"])
def test_half_precision_predict_agrees_with_fp32(dtype):
    ref = dvis_sdk.VideoSegmenter.from_pretrained(TINY, device="cuda").predict(_frames())
    seg = dvis_sdk.VideoSegmenter.from_pretrained(TINY, device="cuda", dtype=dtype)
    if dtype == "auto":
        major = torch.cuda.get_device_properties(0).major
        assert seg.dtype == ("bf16" if major >= 8 else "fp16")
    out = seg.predict(_frames())
    assert out.meta["dtype"] == seg.dtype
    assert all(np.isfinite(i.score) for i in out.instances)
    mean_iou, same_top = _agreement(ref, out)
    assert mean_iou >= 0.9 and same_top, (dtype, mean_iou)


def test_cuda_matches_cpu_in_fp32():
    cpu = dvis_sdk.VideoSegmenter.from_pretrained(TINY).predict(_frames())
    gpu = dvis_sdk.VideoSegmenter.from_pretrained(TINY, device="cuda").predict(_frames())
    mean_iou, same_top = _agreement(cpu, gpu)
    assert mean_iou >= 0.99 and same_top


def test_matcher_on_cuda_under_fp16_autocast():
    from dvis_sdk.training.draws import Draws
    from dvis_sdk.training.matcher import HungarianMatcher

    g = torch.Generator().manual_seed(0)
    logits, masks = torch.randn(12, 8, generator=g).cuda() * 3, torch.randn(12, 5, 32, 32, generator=g).cuda() * 12
    labels, tgt = torch.randint(0, 7, (4,), generator=g), (torch.rand(4, 5, 64, 64, generator=g) > 0.5).float()

    def costs(on):
        matcher = HungarianMatcher(draws=Draws(torch.Generator().manual_seed(1)))
        with torch.autocast("cuda", dtype=torch.float16, enabled=on):
            return matcher.cost_matrix(logits, masks, labels, tgt)
    torch.testing.assert_close(costs(True), costs(False), rtol=1e-5, atol=0)


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_half_precision_training_steps_are_finite(amp, tmp_path):
    """The matcher under autocast used to make fp16 fine-tuning fail on its first step (infeasible cost matrix)."""
    from dvis_sdk.models.dvis import build_model
    from dvis_sdk.training import SegmenterTrainer
    from dvis_sdk.training.synthetic import SyntheticConfig as Synth
    from dvis_sdk.training.synthetic import generate_ytvis
    from test_training_trainers import _cfg, _dataset, micro_config

    ann = generate_ytvis(tmp_path / "data", 2, seed=0, config=Synth(width=64, height=48, num_frames=6, max_objects=3),
                         image_ext=".png")
    tr = SegmenterTrainer(build_model(micro_config()), _dataset((ann, tmp_path / "data" / "JPEGImages")),
                          tmp_path / "run", _cfg(iters=3, ckpt_every=0, device="cuda", amp=amp, num_points=12544))
    assert tr.amp_dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[amp]
    assert (tr.scaler is not None) == (amp == "fp16")
    tr.train()
    losses = [json.loads(x)["loss"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(x)]
    assert losses and all(np.isfinite(losses))


def test_ort_cuda_provider_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu (CUDAExecutionProvider) not installed")
    pytest.importorskip("onnxscript")
    from dvis_sdk.export import export_onnx

    folder = export_onnx(TINY, tmp_path / "onnx")
    ort_seg = dvis_sdk.VideoSegmenter.from_pretrained(folder, device="cuda:0",
                                                      providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert ort_seg.model.io_binding and ort_seg.device == torch.device("cuda:0")
    ref = dvis_sdk.VideoSegmenter.from_pretrained(TINY, device="cuda").predict(_frames(), window_size=3)
    out = ort_seg.predict(_frames(), window_size=3)
    mean_iou, same_top = _agreement(ref, out)
    assert mean_iou >= 0.99 and same_top
    assert max(abs(a.score - b.score) for a, b in zip(ref.instances, out.instances)) <= 1e-3
