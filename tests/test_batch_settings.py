"""VideoSegmenter.spec() / from_spec() and the batch workers: every setting of the driver's segmenter reaches the
in-process worker, worker processes and Ray actors (non-default values; Ray skipped when it is not installed)."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

import dvis_sdk
from conftest import write_avi_folder
from dvis_sdk.batch import predict_folder
from dvis_sdk.cli import main

# a non-default value of every constructor setting (defaults: fp32, the model's window, 300, 1024, True, False)
SETTINGS = dict(dtype="bf16", window_size=2, chunk_size=5, mask_buffer_mb=0.001, optimize=False, compile=True)


@pytest.fixture
def no_dynamo(monkeypatch):
    """compile=True without minutes of compilation: dynamo off here and in spawned workers (it reads the env)."""
    import torch._dynamo.config as dynamo_config

    monkeypatch.setenv("TORCH_COMPILE_DISABLE", "1")
    with dynamo_config.patch(disable=True):
        yield


@pytest.fixture
def seg(tiny_model_dir, no_dynamo):
    s = dvis_sdk.VideoSegmenter.from_pretrained(tiny_model_dir, device="cpu", **SETTINGS)
    assert s.model.cfg.test.window_size != SETTINGS["window_size"]
    return s


@pytest.fixture
def src(tmp_path):
    return write_avi_folder(tmp_path / "src", videos=2, frames=5)


def _expected(device="cpu"):
    return dict(SETTINGS, device=device, backend="pytorch", providers=None)


def test_spec_is_plain_and_round_trips(seg, tiny_model_dir):
    spec = seg.spec()
    assert json.loads(json.dumps(spec)) == spec and pickle.loads(pickle.dumps(spec)) == spec
    assert spec["model"]["pretrained"] == str(tiny_model_dir.resolve())
    assert seg.settings() == _expected()
    again = dvis_sdk.VideoSegmenter.from_spec(spec)
    assert again.spec() == spec
    x = torch.rand(3, 3, 48, 64) * 255
    a, b = seg.predict(x), again.predict(x)
    rows = [[(i.track_id, i.label, i.score) for i in r.instances] for r in (a, b)]
    assert rows[0] == rows[1]


def test_spec_of_a_model_needs_its_weights(seg):
    bare = dvis_sdk.VideoSegmenter(seg.model, window_size=3, optimize=False)
    spec = bare.spec()
    assert set(spec["model"]) == {"config"} and spec["window_size"] == 3 and spec["optimize"] is False
    with pytest.raises(ValueError, match="pass its weights"):
        dvis_sdk.VideoSegmenter.from_spec(spec)
    rebuilt = dvis_sdk.VideoSegmenter.from_spec(spec, state_dict=bare.model.state_dict())
    assert rebuilt.settings() == bare.settings()
    with pytest.raises(ValueError, match="unknown key"):
        dvis_sdk.VideoSegmenter.from_spec(dict(spec, windows=3))


def _check_run(summary, out, device="cpu"):
    ok = [r for r in summary.records if r["status"] == "ok"]
    assert len(ok) == 2, summary.records
    for r in ok:
        assert r["segmenter"] == _expected(device)  # the worker's own segmenter, as it was built
        meta = json.loads((out / r["output"] / "results.json").read_text())["meta"]
        assert meta["window_size"] == SETTINGS["window_size"] and meta["dtype"] == "bf16"
        assert meta["masks_encoded_per_window"] is True  # mask_buffer_mb reached the worker's accumulator


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "processes"])
def test_every_setting_reaches_local_workers(seg, src, tmp_path, workers):
    out = tmp_path / "out"
    _check_run(predict_folder(seg, src, out, pattern="*.avi", progress=False, workers=workers,
                              cpus_per_worker=1), out)


def test_every_setting_reaches_ray_actors(seg, src, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TORCH_COMPILE_DISABLE": "1"}})
    try:
        out = tmp_path / "out"
        _check_run(predict_folder(seg, src, out, pattern="*.avi", progress=False, backend="ray", workers=2), out)
    finally:
        ray.shutdown()


def test_cli_batch_builds_the_segmenter_with_its_sizes(tiny_model_dir, src, tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["batch", str(src), str(out), "--model", str(tiny_model_dir), "--device", "cpu", "--quiet",
               "--pattern", "*.avi", "--window-size", "2", "--chunk-size", "7"])
    assert rc == 0
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert {(r["segmenter"]["window_size"], r["segmenter"]["chunk_size"]) for r in recs} == {(2, 7)}
