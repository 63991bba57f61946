"""Trainers on a micro model: losses go down, checkpoints round-trip, resume is exact, the result loads."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import ytvis_split
from dvis_sdk import VideoSegmenter
from dvis_sdk.config import BackboneConfig, DVISConfig, InputConfig, ResNetConfig, SegmenterConfig, TrackerConfig
from dvis_sdk.config import TestConfig as _TestConfig  # not a test class
from dvis_sdk.inference.runner import forward_video
from dvis_sdk.models.dvis import build_model
from dvis_sdk.training import DenoisingTrainer, RefinerTrainer, SegmenterTrainer, TrainConfig
from dvis_sdk.training.datasets import VideoClipDataset
from dvis_sdk.training.synthetic import CATEGORIES


def micro_config(mode: str = "online") -> DVISConfig:
    return DVISConfig(
        variant="dvis++", mode=mode,
        backbone=BackboneConfig(type="resnet", resnet=ResNetConfig(depth=50, stem_out_channels=8, res2_out_channels=16,
                                                                   width_per_group=4)),
        segmenter=SegmenterConfig(num_classes=3, convs_dim=32, mask_dim=32, transformer_enc_layers=1,
                                  transformer_enc_nheads=2, transformer_enc_dim_feedforward=32, hidden_dim=32,
                                  num_queries=4, nheads=2, dim_feedforward=32, dec_layers=2, reid_hidden_dim=32),
        tracker=TrackerConfig(decoder_layers=1), input=InputConfig(min_size_test=32, max_size_test=64),
        test=_TestConfig(window_size=3, max_num=4), class_names=list(CATEGORIES))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return ytvis_split(tmp_path_factory.mktemp("data"), num_frames=6, max_objects=3)


def _dataset(data, frames=2, rng=1):
    return VideoClipDataset.from_files(data[0], data[1], num_frames=frames, frame_range=rng, min_sizes=(32,),
                                       max_size=64, flip_prob=0.0)


def _cfg(**kw):
    base = dict(iters=4, batch_size=2, lr=1e-3, backbone_multiplier=1.0, warmup_iters=0, num_points=64, log_every=1,
                ckpt_every=2, keep_checkpoints=5, progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _fixed_loss(trainer, clips):
    trainer.draws_generator.manual_seed(123)  # same sampled points (and noise draws) for both evaluations
    trainer.noise_generator.manual_seed(7) if hasattr(trainer, "noise_generator") else None
    with torch.no_grad():
        return float(sum(trainer.compute_losses(clips).values()))


def _metrics(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def test_segmenter_training_lowers_the_loss(data, tmp_path):
    torch.manual_seed(0)
    tr = SegmenterTrainer(build_model(micro_config()), _dataset(data), tmp_path, _cfg(iters=30, clip_grad=0.0,
                                                                                      ckpt_every=0),
                          train_batchnorm=True)
    clips = tr._micro_batch(0, 0)
    before = _fixed_loss(tr, clips)
    for _ in range(30):
        tr.train_step([clips])
    assert _fixed_loss(tr, clips) < 0.8 * before


def test_tracker_training_lowers_the_loss_with_the_segmenter_frozen(data, tmp_path):
    torch.manual_seed(0)
    model = build_model(micro_config())
    seg_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("tracker.")}
    tr = DenoisingTrainer(model, _dataset(data, frames=3), tmp_path, _cfg(iters=30, clip_grad=0.0, ckpt_every=0),
                          noise="shuffle", noise_ratio=0.5)
    clips = tr._micro_batch(0, 0)
    before = _fixed_loss(tr, clips)
    for _ in range(30):
        tr.train_step([clips])
    after = _fixed_loss(tr, clips)
    assert after < 0.8 * before
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in seg_before.items())
    assert tr.noiser is not None and tr.noiser.num_noised > 0
    assert model.cfg.tracker.noise_mode == "rs"


def _run(trainer_cls, model_fn, data, out, resume_from=None, **kw):
    torch.manual_seed(0)
    tr = trainer_cls(model_fn(), _dataset(data, frames=kw.pop("frames", 2)), out, _cfg(), **kw)
    tr.train(resume=resume_from if resume_from is not None else False)
    return tr


def test_refiner_resume_restores_the_class_memory(data, tmp_path):
    def make():
        torch.manual_seed(0)
        return RefinerTrainer(build_model(micro_config("offline")), _dataset(data, frames=4, rng=2),
                              tmp_path / "run", _cfg(iters=2, ckpt_every=1, batch_size=1))

    full = make()
    full.train()
    assert full.memory.rows  # the contrastive loss pushed matched embeddings
    resumed = make()
    resumed.resume(tmp_path / "run" / "checkpoints" / "iter_0000002")
    assert sorted(resumed.memory.rows) == sorted(full.memory.rows)
    for c in full.memory.rows:
        assert torch.equal(resumed.memory.get(c), full.memory.get(c))
    assert torch.equal(resumed.draws_generator.get_state(), full.draws_generator.get_state())


def test_validation_leaves_the_trained_model_unchanged(data, tmp_path):
    pytest.importorskip("pycocotools")
    torch.manual_seed(0)
    model = build_model(micro_config())
    tr = DenoisingTrainer(model, _dataset(data, frames=3), tmp_path, _cfg(iters=1, ckpt_every=0),
                          val=(data[0], data[1]), noise="wa", noise_ratio=0.5)
    tr.train_step([tr._micro_batch(0, 0)])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    types = {n: type(m) for n, m in model.named_modules()}
    fwd = {n: type(m).forward for n, m in model.named_modules()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    metrics = tr.evaluate()
    assert "AP" in metrics
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert {n: type(m) for n, m in model.named_modules()} == types
    assert all("forward" not in vars(m) for m in model.modules())  # no instance-level forward overrides
    assert {n: type(m).forward for n, m in model.named_modules()} == fwd
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks
    assert model.tracker.noiser is tr.noiser  # training continues with its noiser


@pytest.mark.parametrize("kind", ["segmenter", "tracker"])
def test_checkpoint_round_trip_and_exact_resume(kind, data, tmp_path):
    cls, kw = (SegmenterTrainer, {"train_batchnorm": True}) if kind == "segmenter" else \
        (DenoisingTrainer, {"noise": "weighted_average", "noise_ratio": 0.7, "frames": 3})
    full = _run(cls, lambda: build_model(micro_config()), data, tmp_path / "full", **kw)
    ckpts = sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("iter_*"))
    assert ckpts == ["iter_0000002", "iter_0000004"]
    # a fresh trainer resumed from the iteration-2 checkpoint continues exactly
    resumed = _run(cls, lambda: build_model(micro_config()), data, tmp_path / "resumed",
                   resume_from=tmp_path / "full" / "checkpoints" / "iter_0000002", **kw)
    a, b = _metrics(tmp_path / "full"), _metrics(tmp_path / "resumed")
    assert [m["iter"] for m in b] == [3, 4]
    for ma, mb in zip(a[2:], b):
        assert ma["loss"] == pytest.approx(mb["loss"], rel=1e-6, abs=1e-7)
    sa, sb = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa)
    # the exported model (inference layout) loads and predicts
    seg = VideoSegmenter.from_pretrained(tmp_path / "full")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in seg.model.modules())
    res = seg.predict(np.zeros((3, 48, 64, 3), np.uint8))
    assert res.num_frames == 3 and res.class_names == list(CATEGORIES)
    # and it computes what the training model computes in eval mode
    ref = full.inference_model().eval()
    x = torch.rand(2, 3, 32, 64) * 255
    with torch.no_grad():
        out_a = forward_video(ref, ref.preprocess(x))["pred_logits"]
        out_b = forward_video(seg.model, seg.model.preprocess(x))["pred_logits"]
    # VideoSegmenter switches on the fast attention paths (models.optimize): equal up to float rounding
    assert torch.allclose(out_a, out_b, atol=1e-3)


def test_resume_errors_are_clear(data, tmp_path):
    tr = SegmenterTrainer(build_model(micro_config()), _dataset(data), tmp_path, _cfg())
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        tr.resume()
    tr.save_checkpoint()
    other = DenoisingTrainer(build_model(micro_config()), _dataset(data), tmp_path / "x", _cfg())
    with pytest.raises(ValueError, match="written by a 'segmenter' trainer"):
        other.resume(tmp_path)


def test_class_count_mismatch_and_variant_are_checked(data, tmp_path):
    cfg = micro_config()
    cfg.segmenter.num_classes, cfg.class_names = 5, None
    with pytest.raises(ValueError, match="predicts 5 classes but the dataset has 3"):
        DenoisingTrainer(build_model(cfg), _dataset(data), tmp_path, _cfg())
    cfg = micro_config()
    cfg.variant = "dvis"
    with pytest.raises(ValueError, match="needs a DVIS\\+\\+ model"):
        DenoisingTrainer(build_model(cfg), _dataset(data), tmp_path, _cfg())


def test_lr_schedule_warmup_and_steps(data, tmp_path):
    tr = SegmenterTrainer(build_model(micro_config()), _dataset(data), tmp_path,
                          _cfg(iters=100, warmup_iters=10, warmup_factor=0.1, steps=(50, 80), gamma=0.5))
    assert tr.lr_factor(0) == pytest.approx(0.1) and tr.lr_factor(5) == pytest.approx(0.55)
    assert tr.lr_factor(10) == 1.0 and tr.lr_factor(50) == 0.5 and tr.lr_factor(99) == 0.25
    groups = {round(g["lr"], 8) for g in tr.optimizer.param_groups}
    assert groups == {1e-3}  # backbone_multiplier=1
    decay = {g["weight_decay"] for g in tr.optimizer.param_groups}
    assert decay == {0.0, 0.05}  # norms / embeddings are not decayed


def test_grad_accumulation_equals_a_bigger_batch(data, tmp_path):
    def grads(batch, accum):
        torch.manual_seed(0)
        tr = DenoisingTrainer(build_model(micro_config()), _dataset(data, frames=3), tmp_path / f"{batch}{accum}",
                              _cfg(batch_size=batch, grad_accum=accum, clip_grad=0.0), noise="none")
        clips = tr._micro_batch(0, 0) + tr._micro_batch(0, 1)
        torch.manual_seed(7)
        micro = [clips] if accum == 1 else [clips[:2], clips[2:]]
        tr.optimizer.step = lambda: None  # keep the weights, inspect the gradients
        tr.train_step(micro)
        return {n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None}
    g1, g2 = grads(4, 1), grads(2, 2)
    assert g1.keys() == g2.keys() and g1
    # same clips; the point sampling differs between the two runs, so compare loosely
    cos = torch.nn.functional.cosine_similarity(torch.cat([g.flatten() for g in g1.values()]),
                                                torch.cat([g.flatten() for g in g2.values()]), dim=0)
    assert cos > 0.9


def test_refiner_trainer_runs_and_only_trains_the_refiner(data, tmp_path):
    torch.manual_seed(0)
    model = build_model(micro_config("offline"))
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("refiner.")}
    tr = RefinerTrainer(model, _dataset(data, frames=4, rng=2), tmp_path, _cfg(iters=2, ckpt_every=0))
    tr.train()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    seg = VideoSegmenter.from_pretrained(tmp_path)
    assert seg.cfg.mode == "offline"


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_finetune_end_to_end(data, tmp_path, capsys):
    from dvis_sdk.cli import main
    from dvis_sdk.weights import load_pretrained

    torch.manual_seed(0)
    src = tmp_path / "model"
    VideoSegmenter(build_model(micro_config())).save_pretrained(src)
    out = tmp_path / "ft"
    rc = main(["finetune", "--data", str(data[0]), "--frames", str(data[1]), "--model", str(src), "--noise",
               "shuffle", "--iters", "3", "--out", str(out), "--batch-size", "1", "--num-frames", "3",
               "--log-every", "1", "--device", "cpu", "--quiet"])
    assert rc == 0
    assert [m["iter"] for m in _metrics(out / "tracker")] == [1, 2, 3]
    seg = VideoSegmenter.from_pretrained(out)
    assert seg.cfg.tracker.noise_mode == "rs"
    _, before = load_pretrained(src)
    _, after = load_pretrained(out)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("tracker.") for k in changed)
    assert seg.predict(np.zeros((2, 48, 64, 3), np.uint8)).num_frames == 2


@pytest.mark.parametrize("argv, message", [
    (["--data", "missing.json"], "annotation file not found"),
    (["--iters", "0"], "--iters must be >= 1"),
    (["--val-data", "x.json"], "annotation file not found: x.json"),
])
def test_cli_finetune_user_errors(argv, message, data, tmp_path, capsys):
    from dvis_sdk.cli import main

    src = tmp_path / "model"
    VideoSegmenter(build_model(micro_config())).save_pretrained(src)
    base = {"--data": str(data[0]), "--frames": str(data[1]), "--model": str(src), "--out": str(tmp_path / "o"),
            "--iters": "2", "--device": "cpu"}
    base.update(dict(zip(argv[::2], argv[1::2])))
    assert main(["finetune"] + [x for kv in base.items() for x in kv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dvis: error:") and len(err.splitlines()) == 1 and message in err
