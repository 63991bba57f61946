"""Segmenter-output caches are keyed by the segmenter's identity (a hash of its weights): the tracker trainer's disk
cache and the denoising study's validation cache are not read back after the segmenter changed."""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ytvis_split
from dvis_sdk.models.dvis import build_model
from dvis_sdk.training import DenoisingTrainer, TrainConfig
from dvis_sdk.training.datasets import VideoClipDataset, YTVISAnnotations
from dvis_sdk.training.fingerprint import segmenter_fingerprint
from test_training_trainers import micro_config

ROOT = Path(__file__).resolve().parents[1]


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(micro_config()).eval()


def _nudged(model):
    """A copy whose segmenter differs in one weight (as after another fine-tune)."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        next(other.decoder.parameters()).add_(0.5)
    return other


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ytvis_split(tmp_path_factory.mktemp("data"), num_frames=4, max_objects=2)


def test_fingerprint_follows_the_segmenter_weights_only():
    m = _model()
    fp = segmenter_fingerprint(m)
    assert len(fp) == 16 and fp == segmenter_fingerprint(copy.deepcopy(m))
    assert segmenter_fingerprint(_nudged(m)) != fp
    assert segmenter_fingerprint(_model(seed=1)) != fp
    tracker_changed = copy.deepcopy(m)
    with torch.no_grad():
        next(tracker_changed.tracker.parameters()).add_(1.0)
    assert segmenter_fingerprint(tracker_changed) == fp  # the tracker does not change segment()'s outputs
    with pytest.raises(ValueError, match="no segmenter parameters"):
        segmenter_fingerprint(torch.nn.Linear(2, 2))


def test_tracker_disk_cache_is_not_reused_by_another_segmenter(data, tmp_path):
    ds = VideoClipDataset.from_files(data[0], data[1], num_frames=2, frame_range=1, min_sizes=(32,), max_size=64,
                                     flip_prob=0.0)
    cfg = TrainConfig(iters=1, batch_size=1, num_points=16, progress=False, ckpt_every=0, device="cpu")
    cache = tmp_path / "cache"
    clip = ds.sample(0, np.random.default_rng(0))
    a = _model()
    out_a = DenoisingTrainer(a, ds, tmp_path / "a", cfg, cache=cache).segment_clip(clip)
    files_a = sorted(p.relative_to(cache) for p in cache.rglob("*.pt"))
    assert files_a and all(p.parts[0] == segmenter_fingerprint(a) for p in files_a)
    # the same segmenter reads its cache back: identical outputs
    again = DenoisingTrainer(copy.deepcopy(a), ds, tmp_path / "a2", cfg, cache=cache).segment_clip(clip)
    assert torch.equal(again["pred_logits"], out_a["pred_logits"])
    # another segmenter in the same cache folder gets ITS outputs, not the stale ones
    b = _nudged(a)
    tr_b = DenoisingTrainer(b, ds, tmp_path / "b", cfg, cache=cache)
    out_b = tr_b.segment_clip(clip)
    fresh_b = DenoisingTrainer(copy.deepcopy(b), ds, tmp_path / "b2", cfg, cache=None).segment_clip(clip)
    assert not torch.allclose(out_b["pred_logits"], out_a["pred_logits"])
    assert torch.allclose(out_b["pred_logits"], fresh_b["pred_logits"], atol=1e-6)
    assert tr_b.cache_folder().name == segmenter_fingerprint(b) != segmenter_fingerprint(a)


def test_study_validation_cache_is_keyed_by_the_segmenter(data, tmp_path):
    spec = importlib.util.spec_from_file_location("denoise_ablation", ROOT / "benchmarks" / "denoise_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    ann = YTVISAnnotations(data[0], data[1])
    a = _model()
    paths_a = mod.val_segments(a, ann, tmp_path / "val")
    b = _nudged(a)
    paths_b = mod.val_segments(b, ann, tmp_path / "val")
    assert {p.parent for p in paths_a}.isdisjoint({p.parent for p in paths_b})
    seg_a, seg_b = (torch.load(p[0], weights_only=True) for p in (paths_a, paths_b))
    assert not torch.allclose(seg_a["pred_logits"], seg_b["pred_logits"])
    assert mod.val_segments(copy.deepcopy(a), ann, tmp_path / "val") == paths_a  # same segmenter: reused
