"""dvis_sdk.weights.pretrained: save_pretrained / load_pretrained round trips, errors, Hub repo ids, push_to_hub."""
from __future__ import annotations

import json

import huggingface_hub
import pytest
import torch

import dvis_sdk
from conftest import load_fixture
from dvis_sdk import weights as hub
from dvis_sdk.inference.runner import forward_video
from dvis_sdk.official import convert_official_state_dict, load_official_config
from dvis_sdk.weights import download as wdownload
from test_weights import FX, make_fake_hub


@pytest.fixture(scope="module")
def fx():
    return load_fixture(FX)


def _tiny_input() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(4, 3, 64, 64)


# ---------------------------------------------------------------------------------------------
# save_pretrained / load_pretrained / repo id / push_to_hub
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_model(fx):
    cfg = load_official_config(fx.config)
    model = dvis_sdk.build_model(cfg)
    model.load_state_dict(convert_official_state_dict(fx.weights, cfg), strict=True)
    return model


def test_save_load_pretrained_round_trip(tiny_model, tmp_path):
    out = hub.save_pretrained(tiny_model, tmp_path / "saved")
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    cfg, sd = hub.load_pretrained(out)
    assert cfg == tiny_model.cfg
    model2 = dvis_sdk.build_model(cfg)
    model2.load_state_dict(sd, strict=True)
    x = _tiny_input()
    with torch.no_grad():
        a, b = forward_video(tiny_model, x), forward_video(model2, x)
    for k in ("pred_logits", "pred_masks", "pred_cls"):
        assert torch.equal(a[k], b[k]), k
    # resolve_weights takes the folder (or its model.safetensors)
    res = hub.resolve_weights(out)
    assert res.config == cfg and set(res.state_dict) == set(sd)
    assert hub.resolve_weights(out / "model.safetensors").config == cfg
    # a VideoSegmenter can be saved too
    seg = dvis_sdk.VideoSegmenter(tiny_model)
    cfg3, sd3 = hub.load_pretrained(hub.save_pretrained(seg, tmp_path / "from_segmenter"))
    assert cfg3 == cfg and all(torch.equal(sd3[k], sd[k]) for k in sd)


def test_save_pretrained_handles_shared_and_non_contiguous_tensors(tiny_model, tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 4)
            self.b.weight = self.a.weight
            self.register_buffer("t", torch.arange(12.0).reshape(3, 4).t())  # non-contiguous
            self.register_buffer("rows", self.a.weight.data[1:3])  # a view into another tensor's storage

    m = Tied()
    hub.save_pretrained(m, tmp_path / "tied", config=tiny_model.cfg)
    _, sd = hub.load_pretrained(tmp_path / "tied")
    assert torch.equal(sd["a.weight"], sd["b.weight"]) and torch.equal(sd["t"], m.t)
    assert torch.equal(sd["rows"], m.a.weight.data[1:3])
    with pytest.raises(ValueError, match="config"):
        hub.save_pretrained(m, tmp_path / "nocfg")


def test_load_pretrained_errors(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        hub.load_pretrained(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="not found|no such"):
        hub.resolve_weights(str(tmp_path / "nope" / "deeper"))
    d = hub.save_pretrained(tiny_model, tmp_path / "m")
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        hub.load_pretrained(d)
    d = hub.save_pretrained(tiny_model, tmp_path / "m2")
    (d / "config.json").write_text("{not json")
    with pytest.raises(hub.PretrainedFormatError, match="config.json"):
        hub.load_pretrained(d)
    d = hub.save_pretrained(tiny_model, tmp_path / "m3")
    (d / "config.json").write_text(json.dumps({"variant": "dvis++", "bogus": 1}))
    with pytest.raises(hub.PretrainedFormatError, match="bogus"):
        hub.load_pretrained(d)
    d = hub.save_pretrained(tiny_model, tmp_path / "m4")
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(hub.PretrainedFormatError, match="model.safetensors"):
        hub.load_pretrained(d)


def test_hub_repo_id_with_pretrained_layout(tiny_model, tmp_path):
    saved = hub.save_pretrained(tiny_model, tmp_path / "saved")
    cache = tmp_path / "hf"
    make_fake_hub(cache, "someone/tiny-dvis", {n: saved / n for n in ("config.json", "model.safetensors")})
    res = hub.resolve_weights("someone/tiny-dvis", cache_dir=cache, local_files_only=True)
    assert res.config == tiny_model.cfg and "someone/tiny-dvis" in res.source
    dvis_sdk.build_model(res.config).load_state_dict(res.state_dict, strict=True)
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("someone/other-model", cache_dir=cache, local_files_only=True)
    assert "\n" not in str(ei.value)


def test_push_to_hub_uses_create_repo_and_upload_folder(tiny_model, tmp_path, monkeypatch):
    calls = []

    class RecordingApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, **kw):
            calls.append(("create_repo", kw))
            return f"https://huggingface.co/{kw['repo_id']}"

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    d = hub.save_pretrained(tiny_model, tmp_path / "to_push")
    url = hub.push_to_hub(d, "me/my-dvis", token="hf_x")
    assert url == "https://huggingface.co/me/my-dvis"
    assert calls[0] == ("init", "hf_x")
    assert calls[1][0] == "create_repo" and calls[1][1]["repo_id"] == "me/my-dvis"
    assert calls[1][1]["private"] is True and calls[1][1]["exist_ok"] is True
    assert calls[2][0] == "upload_folder"
    assert calls[2][1]["folder_path"] == str(d) and calls[2][1]["repo_id"] == "me/my-dvis"
    calls.clear()
    with pytest.raises(FileNotFoundError):
        hub.push_to_hub(tmp_path / "empty_dir_that_does_not_exist", "me/x")
    assert calls == []  # nothing was sent


def test_transport_errors_of_any_http_client_count_as_no_network():
    _is_network_error = wdownload.is_network_error
    connect_error = type("ConnectError", (Exception,), {"__module__": "httpx2"})  # huggingface_hub 2.x's client
    assert _is_network_error(connect_error("[Errno -2] Name or service not known"))
    assert not _is_network_error(ValueError("bad value"))
