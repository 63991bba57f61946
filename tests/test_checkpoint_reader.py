"""dvis_sdk.official.checkpoint (``dvis_sdk.official.load_official_checkpoint``): .pth / .pkl /
.safetensors through one reader; pickles may reference only what weights need, so a crafted file runs nothing."""
from __future__ import annotations

import collections
import fractions
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_fixture
from dvis_sdk.official import ConversionError, UnsafePickleError, load_official_checkpoint
from dvis_sdk.weights import resolve_official


class _Evil:
    """Unpickling this runs a shell command (the classic pickle attack)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _zoo_dict():
    rng = np.random.default_rng(0)
    return {"backbone.stem.conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "sem_seg_head.predictor.query_feat.weight": rng.standard_normal((5, 8)).astype(np.float32),
            "backbone.res2.0.conv1.norm.running_mean": np.arange(4, dtype=np.float64),
            "some.int_buffer": np.arange(6, dtype=np.int64).reshape(2, 3)}


def _assert_one_line_refusal(err: Exception, path: Path):
    msg = str(err)
    assert "\n" not in msg and str(path) in msg
    assert "system" in msg and "trust_pickle=True" in msg and "safetensors" in msg


@pytest.mark.parametrize("suffix, save", [
    (".pkl", lambda obj, p: p.write_bytes(pickle.dumps(obj, protocol=2))),
    (".pkl", lambda obj, p: p.write_bytes(pickle.dumps(obj, protocol=5))),
    (".pth", lambda obj, p: torch.save(obj, p)),                                           # zip format
    (".pth", lambda obj, p: torch.save(obj, p, _use_new_zipfile_serialization=False)),     # legacy format
])
def test_malicious_pickle_runs_nothing(tmp_path, suffix, save):
    marker = tmp_path / "PWNED"
    path = tmp_path / f"evil{suffix}"
    save({"model": {"w": torch.zeros(2)} if suffix == ".pth" else {"w": np.zeros(2)}, "x": _Evil(marker)}, path)
    with pytest.raises(UnsafePickleError) as ei:
        load_official_checkpoint(path)
    assert not marker.exists(), "the pickled os.system call ran"
    _assert_one_line_refusal(ei.value, path)
    assert isinstance(ei.value, ConversionError)


def test_malicious_top_level_object(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil_top.pkl"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(UnsafePickleError):
        load_official_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("wrapped", [True, False])
def test_model_zoo_pkl_loads_as_tensors(tmp_path, protocol, wrapped):
    arrays = _zoo_dict()
    obj = {"model": arrays, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True} if wrapped else arrays
    path = tmp_path / "R-50.pkl"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = load_official_checkpoint(path)
    sd = out["model"] if wrapped else out
    if wrapped:
        assert out["__author__"] == "Detectron2 Model Zoo"
    assert set(sd) == set(arrays)
    for k, a in arrays.items():
        assert isinstance(sd[k], torch.Tensor) and sd[k].dtype == torch.from_numpy(a).dtype
        assert np.array_equal(sd[k].numpy(), a), k
        sd[k].add_(1)  # writable, and not a view of anything the caller holds
    assert np.array_equal(_zoo_dict()["some.int_buffer"], arrays["some.int_buffer"])


def test_pth_with_ordered_dict_parameters_and_dtypes(tmp_path):
    sd = collections.OrderedDict(
        a=torch.randn(3, 4), h=torch.randn(5).half(), b=torch.randn(2).bfloat16(), i=torch.arange(4),
        m=torch.tensor([True, False]), p=torch.nn.Parameter(torch.randn(2, 2)), v=torch.arange(12.0)[::3])
    for legacy in (False, True):
        path = tmp_path / f"sd_{legacy}.pth"
        torch.save({"model": sd, "iteration": 7}, path, _use_new_zipfile_serialization=not legacy)
        out = load_official_checkpoint(path)
        assert out["iteration"] == 7
        assert all(torch.equal(out["model"][k], v.detach()) and out["model"][k].dtype == v.dtype
                   for k, v in sd.items())


def test_trust_pickle_reads_other_globals(tmp_path):
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.ones(2)}, "lr": fractions.Fraction(1, 3)}))
    with pytest.raises(UnsafePickleError, match="fractions.Fraction"):
        load_official_checkpoint(path)
    out = load_official_checkpoint(path, trust_pickle=True)
    assert out["lr"] == fractions.Fraction(1, 3) and torch.equal(out["model"]["w"], torch.ones(2, dtype=torch.float64))


def test_bad_files_are_one_line_errors(tmp_path):
    for name, data in (("garbage.pth", b"not a checkpoint"), ("garbage.pkl", b"\x80\x05garbage"),
                       ("garbage.safetensors", b"\x00" * 16), ("list.pkl", pickle.dumps([1, 2]))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ConversionError) as ei:
            load_official_checkpoint(tmp_path / name)
        assert "\n" not in str(ei.value) and name in str(ei.value)
    with pytest.raises(FileNotFoundError):
        load_official_checkpoint(tmp_path / "missing.pkl")


def test_official_weights_as_pkl_convert_like_the_pth(tmp_path):
    """A model-zoo style .pkl of numpy arrays is a valid starting point: it converts exactly like the .pth."""
    fx = load_fixture("11_e2e_online_r50")
    torch.save({"model": dict(fx.weights)}, tmp_path / "model.pth")
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(
        {"model": {k: v.numpy() for k, v in fx.weights.items()}, "__author__": "test"}, protocol=2))
    a = resolve_official(fx.config, tmp_path / "model.pth").state_dict
    b = resolve_official(fx.config, tmp_path / "model.pkl").state_dict
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_trust_pickle_reaches_the_segmenter_the_cli_and_the_spec(tmp_path, capsys):
    """A checkpoint that is safe to the user but not weights-only (here: a Fraction in its metadata) is refused by
    default and read with the explicit trust flag, through ``VideoSegmenter.from_official``, ``dvis convert
    --trust-pickle``, and a rebuild from ``spec()`` (what batch workers do)."""
    import yaml

    from dvis_sdk import VideoSegmenter
    from dvis_sdk.cli import main

    fx = load_fixture("11_e2e_online_r50")
    ckpt = tmp_path / "model_final.pkl"
    ckpt.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in fx.weights.items()},
                                   "lr": fractions.Fraction(1, 3)}, protocol=2))
    cfg_yaml = tmp_path / "cfg.yaml"
    cfg_yaml.write_text(yaml.safe_dump(fx.config))

    with pytest.raises(UnsafePickleError, match="fractions.Fraction"):
        VideoSegmenter.from_official(cfg_yaml, ckpt, device="cpu")
    seg = VideoSegmenter.from_official(cfg_yaml, ckpt, device="cpu", trust_pickle=True)
    assert seg.spec()["model"]["trust_pickle"] is True
    rebuilt = VideoSegmenter.from_spec(seg.spec())
    a, b = seg.model.state_dict(), rebuilt.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    assert main(["convert", str(cfg_yaml), str(ckpt), str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trust_pickle" in err
    assert main(["convert", str(cfg_yaml), str(ckpt), str(tmp_path / "conv"), "--trust-pickle"]) == 0
    conv = VideoSegmenter.from_pretrained(tmp_path / "conv").model.state_dict()
    assert all(torch.equal(a[k], conv[k]) for k in a)
