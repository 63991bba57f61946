"""`dvis finetune` / `dvis_sdk.training.finetune` as a user runs it, on tiny generated YouTube-VIS folders: starts
from a saved folder, the embedded model with a new class count, an official yaml + model-zoo style `.pkl`; exact
resume after a kill; one-line errors; the training resize is the inference resize."""
from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from dvis_sdk import VideoSegmenter
from dvis_sdk.cli import main
from dvis_sdk.training import FinetuneError, finetune
from dvis_sdk.training.finetuning import find_dataset
from dvis_sdk.training.synthetic import CATEGORIES, SyntheticConfig, generate_ytvis
from dvis_sdk.weights import load_pretrained
from test_training_trainers import micro_config

FAST = dict(batch_size=1, num_points=64, num_frames=2, device="cpu", progress=False, log=lambda m: None)



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A YouTube-VIS folder: annotations.json + JPEGImages/ (4 videos of 6 frames)."""
    root = tmp_path_factory.mktemp("ytvis")
    generate_ytvis(root, 4, seed=0, config=SyntheticConfig(width=64, height=48, num_frames=6, max_objects=3),
                   image_ext=".png")
    return root


def _state(path):
    return load_pretrained(path)[1]


def test_cli_round_trip_from_a_saved_folder_with_a_holdout(dataset, micro_dir, tmp_path, capsys):
    out = tmp_path / "ft"
    rc = main(["finetune", "--data", str(dataset), "--model", str(micro_dir), "--out", str(out), "--stages",
               "tracker,segmenter", "--iters", "2", "--holdout", "1", "--num-frames", "2", "--batch-size", "1",
               "--device", "cpu", "--ckpt-every", "1", "--quiet"])
    assert rc == 0
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["stages"] == ["segmenter", "tracker"] and summary["done"]
    assert "AP" in summary["before"] and "AP" in summary["after"]
    # periodic validation at each checkpoint, logged per stage
    evals = [json.loads(x) for x in (out / "tracker" / "metrics.jsonl").read_text().splitlines()]
    assert [e["iter"] for e in evals if "eval" in e] == [1, 2]
    # the hold-out split: 1 of 4 videos, disjoint from training
    tr, va = (json.loads((out / "splits" / f).read_text()) for f in ("train.json", "val.json"))
    assert len(va["videos"]) == 1 and len(tr["videos"]) == 3
    assert not {v["id"] for v in tr["videos"]} & {v["id"] for v in va["videos"]}
    before, after = _state(micro_dir), _state(out)
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"backbone", "pixel_decoder", "decoder", "tracker"}
    seg = VideoSegmenter.from_pretrained(out)
    assert seg.cfg.class_names == list(CATEGORIES)
    assert seg.predict(np.zeros((3, 48, 64, 3), np.uint8)).num_frames == 3


def test_cli_embedded_model_with_a_new_class_count(dataset, tmp_path, capsys):
    ann = json.loads((dataset / "annotations.json").read_text())
    ann["categories"] = ann["categories"] + [{"id": 9, "name": "star"}]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    base = ["finetune", "--data", str(tmp_path / "ann.json"), "--frames", str(dataset / "JPEGImages"), "--model",
            "dvis-tiny-shapes", "--iters", "1", "--num-frames", "2", "--batch-size", "1", "--device", "cpu"]
    # the segmenter's class head is new: it cannot stay frozen under a trained tracker
    assert main(base + ["--out", str(tmp_path / "a"), "--stages", "tracker", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "class head is new: train it too (--stages segmenter,tracker)" in err and "\n" not in err
    assert main(base + ["--out", str(tmp_path / "b"), "--stages", "segmenter,tracker"]) == 0
    log = capsys.readouterr().err
    # the class heads are matched by name: the known classes keep their rows, "star" gets a fresh one
    assert "matched by name (kept: ['circle', 'square', 'triangle']; new: ['star'])" in log
    assert "segmenter: 391/391 weights loaded" in log and "tracker: 54/54 weights loaded" in log
    summary = json.loads((tmp_path / "b" / "finetune.json").read_text())
    assert sorted(summary["start"]["reinitialised"]) == ["decoder.class_embed.bias", "decoder.class_embed.weight",
                                                         "tracker.class_embed.bias", "tracker.class_embed.weight"]
    seg = VideoSegmenter.from_pretrained(tmp_path / "b")
    assert seg.cfg.segmenter.num_classes == 4 and seg.cfg.class_names == list(CATEGORIES) + ["star"]
    assert seg.model.decoder.class_embed.weight.shape[0] == 5
    start = VideoSegmenter.from_pretrained("dvis-tiny-shapes").model.decoder.class_embed.bias
    assert seg.model.decoder.class_embed.bias.shape == (5,) and start.shape == (4,)


def test_resume_after_a_kill_gives_the_uninterrupted_weights(dataset, micro_dir, tmp_path, monkeypatch):
    args = dict(model=micro_dir, stages="segmenter,tracker", iters=4, ckpt_every=2, log_every=1, seed=1, **FAST)
    finetune(dataset, tmp_path / "full", **args)

    from dvis_sdk.training.loop import Trainer

    step = Trainer.train_step

    def killed(self, micro):
        if self.kind == "tracker" and self.iter == 3:
            raise KeyboardInterrupt  # after the tracker's iteration-2 checkpoint
        return step(self, micro)
    monkeypatch.setattr(Trainer, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        finetune(dataset, tmp_path / "killed", **args)
    monkeypatch.setattr(Trainer, "train_step", step)
    with pytest.raises(FinetuneError, match="pass --resume"):
        finetune(dataset, tmp_path / "killed", **args)
    with pytest.raises(FinetuneError, match="resume it with the same stages"):
        finetune(dataset, tmp_path / "killed", resume=True, **{**args, "stages": "tracker"})
    finetune(dataset, tmp_path / "killed", resume=True, **args)

    a, b = _state(tmp_path / "full"), _state(tmp_path / "killed")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    la = [json.loads(x) for x in (tmp_path / "full" / "tracker" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "killed" / "tracker" / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in lb] == [1, 2, 3, 4]
    assert [m["loss"] for m in lb] == pytest.approx([m["loss"] for m in la], rel=1e-6)
    # the optimizer state resumed too: same step counts in the last checkpoints
    sa = torch.load(tmp_path / "full" / "tracker" / "checkpoints" / "iter_0000004" / "trainer_state.pt",
                    weights_only=True)
    sb = torch.load(tmp_path / "killed" / "tracker" / "checkpoints" / "iter_0000004" / "trainer_state.pt",
                    weights_only=True)
    steps = [float(s["step"]) for s in sb["optimizer"]["state"].values()]
    assert steps and set(steps) == {4.0} and sa["iter"] == sb["iter"] == 4


def _official_yaml_and_pkl(tmp_path, fixture_loader, drop_reid=True):
    import yaml

    fx = fixture_loader("11_e2e_online_r50")
    tree = json.loads(json.dumps(fx.config))
    tree["INPUT"].update(MIN_SIZE_TEST=32, MAX_SIZE_TEST=64)
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(tree))
    seg_keys = {k: v.numpy() for k, v in fx.weights.items() if k.startswith(("backbone.", "sem_seg_head."))
                and not (drop_reid and "reid_embed" in k)}
    # a detectron2 / Mask2Former model-zoo file: pickled numpy arrays under "model"
    with open(tmp_path / "model_final.pkl", "wb") as f:
        pickle.dump({"model": seg_keys, "__author__": "test"}, f)
    return tmp_path / "model.yaml", tmp_path / "model_final.pkl"


def test_pkl_segmenter_checkpoint_start(dataset, tmp_path, fixture_loader):
    cfg, pkl = _official_yaml_and_pkl(tmp_path, fixture_loader)
    # a tracker on a segmenter whose re-id head is missing cannot be trained: one clear error
    with pytest.raises(FinetuneError, match="the segmenter feeds the trained stage"):
        finetune(dataset, tmp_path / "x", config=cfg, checkpoint=pkl, stages="tracker", iters=1, **FAST)
    res = finetune(dataset, tmp_path / "o", config=cfg, checkpoint=pkl, stages="segmenter", iters=1, **FAST)
    rep = res.report
    assert rep.loaded["segmenter"] == rep.total["segmenter"] - 6 - 2  # reid head missing, class head resized
    assert len(rep.missing["segmenter"]) == 6 and all("reid_embed" in k for k in rep.missing["segmenter"])
    assert sorted(rep.reinitialised) == ["decoder.class_embed.bias", "decoder.class_embed.weight"]  # 5 -> 3 classes
    assert rep.loaded.get("tracker", 0) == 0 and len(rep.missing["tracker"]) == rep.total["tracker"]
    # the tracker has no weights: the saved model is the segmenter alone (MinVIS association), said in a note
    assert rep.ignored == [] and any("the model is the segmenter alone" in n for n in rep.notes)
    text = "\n".join(rep.lines())
    assert "segmenter: " in text and "missing (fresh init): 6" in text
    seg = VideoSegmenter.from_pretrained(tmp_path / "o")
    assert seg.cfg.segmenter.num_classes == 3 and seg.cfg.class_names == list(CATEGORIES)
    assert seg.cfg.mode == "segmenter"


def test_refiner_stage_converts_an_online_model_to_offline(dataset, micro_dir, tmp_path):
    with pytest.raises(FinetuneError, match="needs an offline model.*--mode offline"):
        finetune(dataset, tmp_path / "a", model=micro_dir, stages="refiner", iters=1, **FAST)
    res = finetune(dataset, tmp_path / "b", model=micro_dir, stages="refiner", mode="offline", iters=1,
                   **{**FAST, "num_frames": 3})
    assert any("fresh refiner" in n for n in res.report.notes)
    before, after = _state(micro_dir), _state(tmp_path / "b")
    assert all(torch.equal(before[k], after[k]) for k in before)  # only the new refiner was trained
    assert VideoSegmenter.from_pretrained(tmp_path / "b").cfg.mode == "offline"


@pytest.mark.parametrize("change, message", [
    ({"--data": "missing.json"}, "annotation file not found"),
    ({"--data": "NOFRAMES"}, "no JPEGImages folder next to"),
    ({"--model": "no-such-model"}, "no-such-model"),
    ({"--stages": "refiner"}, "needs an offline model"),
    ({"--stages": "tracker,decoder"}, "unknown stage(s) ['decoder']"),
    ({"--holdout": "4"}, "cannot hold out 4 of 4 videos"),
    ({"--iters": "0"}, "--iters must be >= 1"),
    ({"--val-frames": "x"}, "--val-frames needs --val-data"),
    ({"--checkpoint": "x.pkl"}, "--config and --checkpoint go together"),
])
def test_bad_inputs_are_one_line_errors(change, message, dataset, micro_dir, tmp_path, capsys):
    if change.get("--data") == "NOFRAMES":
        (tmp_path / "bare").mkdir()
        shutil.copy(dataset / "annotations.json", tmp_path / "bare" / "annotations.json")
        change = {"--data": str(tmp_path / "bare")}
    args = {"--data": str(dataset), "--model": str(micro_dir), "--out": str(tmp_path / "o"), "--iters": "1",
            "--device": "cpu", **change}
    if "--checkpoint" in change:
        del args["--model"]
    assert main(["finetune", "--quiet"] + [x for kv in args.items() for x in kv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dvis: error:") and message in err and "\n" not in err


def test_training_resize_is_the_inference_resize(dataset, micro_dir):
    from dvis_sdk.inference.handle import VideoHandle
    from dvis_sdk.training.datasets import VideoClipDataset

    ann, frames = find_dataset(dataset)
    cfg = micro_config().input
    ds = VideoClipDataset.from_files(ann, frames, num_frames=3, min_sizes=(cfg.min_size_test,),
                                     max_size=cfg.max_size_test, flip_prob=0.0)
    clip = ds.clip(0, [0, 1, 2])
    video = ds.ann.videos[0]
    # what VideoSegmenter.predict feeds the model for the same folder of frames
    h = VideoHandle(str(frames / video.file_names[0].split("/")[0]), min_size=cfg.min_size_test,
                    max_size=cfg.max_size_test, pin=False, window_size=3)
    _, x = next(iter(h.windows()))
    h.close()
    assert tuple(x.shape[-2:]) == tuple(clip.frames.shape[-2:]) == (32, 43)
    assert torch.equal(x[:3].float(), clip.frames)


def test_find_dataset_layouts(dataset, tmp_path):
    assert find_dataset(dataset) == (dataset / "annotations.json", dataset / "JPEGImages")
    assert find_dataset(dataset / "annotations.json") == (dataset / "annotations.json", dataset / "JPEGImages")
    # the official layout: train.json beside train/JPEGImages
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "JPEGImages").symlink_to(dataset / "JPEGImages")
    shutil.copy(dataset / "annotations.json", tmp_path / "train.json")
    assert find_dataset(tmp_path / "train.json") == (tmp_path / "train.json", tmp_path / "train" / "JPEGImages")



@pytest.mark.slow
def test_the_example_runs(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "finetune_custom.py"
    spec = importlib.util.spec_from_file_location("finetune_custom", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"), "--iters", "2", "--videos", "4"])
    summary = json.loads((out / "finetune.json").read_text())
    assert "AP" in summary["before"] and "AP" in summary["after"]
    assert "before {'AP'" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_resume_after_sigkill(dataset, micro_dir, tmp_path):
    """A real kill (SIGKILL of the `dvis finetune` process after a checkpoint), then --resume: the uninterrupted
    run's weights."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    def cmd(out, *extra):
        return [sys.executable, "-m", "dvis_sdk.cli", "finetune", "--data", str(dataset), "--model", str(micro_dir),
                "--out", str(out), "--stages", "tracker", "--iters", "40", "--ckpt-every", "4", "--num-frames", "2",
                "--batch-size", "1", "--device", "cpu", "--seed", "2", "--quiet", *extra]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd(tmp_path / "full"), check=True, env=env)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), env=env)
    first = tmp_path / "killed" / "tracker" / "checkpoints" / "iter_0000004"
    deadline = time.time() + 120
    while not first.is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "tracker" / "stage_done.json").exists(), "the run ended before the kill"
    subprocess.run(cmd(tmp_path / "killed", "--resume"), check=True, env=env)
    a, b = _state(tmp_path / "full"), _state(tmp_path / "killed")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
