"""Weights manifest, name / folder / repo-id resolution, Hub download + conversion cache, save/load/push.

No network: a LOCAL FAKE HUB is a Hugging Face cache folder laid out as ``hf_hub_download`` expects
(``models--owner--name/refs/main`` + ``snapshots/<commit>/...``), used with ``local_files_only`` /
``HF_HUB_OFFLINE``; online code paths use a monkeypatched ``HfApi`` / ``hf_hub_download``.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import dvis_sdk
from dvis_sdk.inference.runner import forward_video
import dvis_sdk.convert as convert_mod
from conftest import load_fixture
from dvis_sdk import hub
from dvis_sdk.convert import OFFICIAL_CONFIG_DIR, convert_official_state_dict, load_official_config

ROOT = Path(__file__).resolve().parents[1]
FX = "11_e2e_online_r50"
REPO = "zhangtao-whu/DVIS_Plus"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_FILES = ["DVIS++/ovis_online_r50.pth", "DVIS++/ovis_offline_r50.pth", "DVIS++/ovis_online_vitl.pth",
             "DVIS++/ytvis19_online_r50.pth", "README.md"]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fx():
    return load_fixture(FX)


@pytest.fixture
def official_ckpt(fx, tmp_path) -> Path:
    """The fixture's official-format weights saved like a detectron2 model_final.pth."""
    path = tmp_path / "model_final.pth"
    torch.save({"model": dict(fx.weights), "iteration": 1234}, path)
    return path


@pytest.fixture
def cfg_file(fx, tmp_path) -> Path:
    """The fixture's official cfg tree as a file (JSON is valid yaml) that load_official_config reads."""
    path = tmp_path / "tiny_official_cfg.yaml"
    path.write_text(json.dumps(fx.config))
    return path


def make_fake_hub(cache: Path, repo_id: str, files: dict, revision: str = "main", commit: str = COMMIT) -> Path:
    """A HF cache holding ``files`` (repo path -> bytes or source file) of ``repo_id`` at ``revision``."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    snap = repo / "snapshots" / commit
    for rel, content in files.items():
        dst = snap / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(content.read_bytes() if isinstance(content, Path) else content)
    return snap


@pytest.fixture
def fake_hub(tmp_path, official_ckpt) -> Path:
    cache = tmp_path / "hf_cache"
    files = {f: b"not a checkpoint" for f in HUB_FILES}
    files["DVIS++/ovis_online_r50.pth"] = official_ckpt
    make_fake_hub(cache, REPO, files)
    return cache


def _entry(name: str, cfg_file: Path, **kw) -> dict:
    e = {"name": name, "variant": "dvis++", "mode": "online", "backbone": "r50", "dataset": "ovis",
         "config": str(cfg_file), "source": "hub", "repo_id": REPO, "subfolder": "DVIS++", "filename": None,
         "pattern": "DVIS++/*.pth", "keywords": [["ovis"], ["online"], ["r50"]], "revision": "main", "sha256": None,
         "min_size_test": 64, "max_size_test": 1333, "reported_ap": None,
         "download_page": "https://example.invalid/page"}
    e.update(kw)
    return e


@pytest.fixture
def tiny_manifest(monkeypatch, cfg_file, official_ckpt):
    """The real manifest plus tiny test entries pointing at the fake hub."""
    real = hub.load_manifest()
    good_sha = hub.sha256_file(official_ckpt)
    real["models"] += [
        _entry("tiny-glob", cfg_file),
        _entry("tiny-ambiguous", cfg_file, keywords=[["ovis"]]),
        _entry("tiny-nomatch", cfg_file, keywords=[["ytvis21"]]),
        _entry("tiny-exact", cfg_file, filename="DVIS++/ovis_online_r50.pth", pattern=None, keywords=None,
               sha256=good_sha),
        _entry("tiny-badsum", cfg_file, filename="DVIS++/ovis_online_r50.pth", pattern=None, keywords=None,
               sha256="f" * 64),
        _entry("tiny-external", cfg_file, source="external", repo_id=None, subfolder=None,
               filename="model_final.pth", pattern=None, keywords=None, revision=None),
    ]
    monkeypatch.setattr(hub, "load_manifest", lambda path=None: json.loads(json.dumps(real)))
    return real


def _tiny_input() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(4, 3, 64, 64)


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------
def test_manifest_schema():
    m = hub.load_manifest()
    assert hub.validate_manifest(m) == []
    assert m["version"] == 1 and m["default"] == "dvis-tiny-shapes"
    embedded = [e for e in hub.list_models() if e["source"] == "embedded"]
    assert [e["name"] for e in embedded] == ["dvis-tiny-shapes"]
    models = [e for e in hub.list_models() if e["source"] != "embedded"]
    for e in models:
        for f in hub.REQUIRED_FIELDS:
            assert f in e, (e["name"], f)
        assert e["name"] == f"{e['variant']}-{e['backbone']}-{e['dataset'].replace('_20', '')}-{e['mode']}", e["name"]
        assert e["dataset"] in ("ovis", "ytvis_2019", "ytvis_2021")
        if e["source"] == "hub":
            assert e["repo_id"] == REPO and e["revision"] and (e["filename"] or e["pattern"].startswith("DVIS++/"))
        else:
            assert e["download_page"].startswith("https://") and e["filename"]
    plus = [e for e in models if e["variant"] == "dvis++"]
    dvis = [e for e in models if e["variant"] == "dvis"]
    # DVIS++: {ovis, ytvis19, ytvis21} x {online, offline} x {R50, ViT-L} on the Hub; DVIS R50 / Swin-L elsewhere
    dsets, modes = ("ovis", "ytvis_2019", "ytvis_2021"), ("online", "offline")
    assert {(e["dataset"], e["mode"], e["backbone"]) for e in plus} == {
        (d, m_, b) for d in dsets for m_ in modes for b in ("r50", "vitl")}
    assert {(e["dataset"], e["mode"], e["backbone"]) for e in dvis} == {
        (d, m_, b) for d in dsets for m_ in modes for b in ("r50", "swinl")}
    assert all(e["source"] == "hub" for e in plus) and all(e["source"] == "external" for e in dvis)
    ap = {e["name"]: e["reported_ap"] for e in models}
    assert ap["dvis++-r50-ovis-online"] == 37.2 and ap["dvis++-vitl-ovis-offline"] == 53.4
    assert ap["dvis-swinl-ytvis21-offline"] == 60.0


def test_manifest_root_copy_is_identical_to_package_copy():
    root, pkg = ROOT / "weights_manifest.json", hub.MANIFEST_PATH
    assert not root.is_symlink()
    assert root.read_bytes() == pkg.read_bytes(), "weights_manifest.json must equal dvis_sdk/weights_manifest.json"


def test_manifest_is_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"*.json"' in text  # [tool.setuptools.package-data] dvis_sdk = [..., "*.json"]


def test_every_manifest_config_resolves_and_agrees():
    if not OFFICIAL_CONFIG_DIR.is_dir():
        pytest.skip("dvis_sdk/configs/official is absent (official yaml files not vendored)")
    kinds = {"resnet": "r50", "swin": "swinl", "vit_adapter": "vitl"}
    for e in hub.list_models():
        if e["source"] == "embedded":
            continue  # no official yaml: the shipped folder's config.json (tests/test_tiny_model.py)
        path = hub.entry_config_path(e)
        assert path.is_file(), f"{e['name']}: {e['config']} not found"
        cfg = load_official_config(path)
        got = (cfg.variant, cfg.mode, kinds[cfg.backbone.type], cfg.dataset, cfg.input.min_size_test,
               cfg.input.max_size_test, cfg.segmenter.num_queries)
        want = (e["variant"], e["mode"], e["backbone"], e["dataset"], e["min_size_test"], e["max_size_test"],
                e["num_queries"])
        assert got == want, e["name"]


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(hub.UnknownModelError) as ei:
        hub.get_model_entry("dvis++-r50-ovis-onlin")
    err = ei.value
    assert isinstance(err, KeyError)
    assert "dvis++-r50-ovis-online" in err.suggestions
    assert "Did you mean" in str(err) and not str(err).startswith("'")
    with pytest.raises(hub.UnknownModelError):
        hub.resolve_weights("dvis-swinl-ovis-onlne", local_files_only=True)
    assert hub.get_model_entry("DVIS++-R50-OVIS-ONLINE")["name"] == "dvis++-r50-ovis-online"
    assert hub.default_model_name() in [m["name"] for m in hub.list_models()]


# ---------------------------------------------------------------------------------------------
# Hub entries: glob, download, checksum, conversion cache
# ---------------------------------------------------------------------------------------------
def test_glob_entry_resolves_from_fake_hub_and_loads_strict(fx, fake_hub, tiny_manifest):
    res = hub.resolve_weights("tiny-glob", cache_dir=fake_hub, local_files_only=True)
    assert res.name == "tiny-glob" and "DVIS++/ovis_online_r50.pth" in res.source
    expected = convert_official_state_dict(fx.weights, res.config)
    assert set(res.state_dict) == set(expected)
    assert all(torch.equal(res.state_dict[k], expected[k]) for k in expected)
    model = dvis_sdk.build_model(res.config)
    model.load_state_dict(res.state_dict, strict=True)
    converted = list((fake_hub / "dvis_sdk" / "converted").glob("tiny-glob-*"))
    assert len(converted) == 1
    sha = hub.sha256_file(fake_hub / f"models--zhangtao-whu--DVIS_Plus/snapshots/{COMMIT}/DVIS++/ovis_online_r50.pth")
    assert converted[0].name == f"tiny-glob-{sha[:12]}"
    assert {"config.json", "model.safetensors", "meta.json"} <= {p.name for p in converted[0].iterdir()}


def test_conversion_happens_once(fake_hub, tiny_manifest, monkeypatch):
    first = hub.resolve_weights("tiny-glob", cache_dir=fake_hub, local_files_only=True)

    def boom(*a, **k):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(convert_mod, "convert_official_state_dict", boom)
    monkeypatch.setattr(convert_mod, "load_official_checkpoint", boom)
    second = hub.resolve_weights("tiny-glob", cache_dir=fake_hub, local_files_only=True)
    assert "converted cache" in second.source
    assert set(first.state_dict) == set(second.state_dict)
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    assert second.config == first.config


def test_changed_download_is_reconverted(fake_hub, tiny_manifest, fx, tmp_path):
    hub.resolve_weights("tiny-glob", cache_dir=fake_hub, local_files_only=True)
    # the upstream file changes (new bytes): a new conversion, keyed by the new sha
    src = fake_hub / f"models--zhangtao-whu--DVIS_Plus/snapshots/{COMMIT}/DVIS++/ovis_online_r50.pth"
    w = dict(fx.weights)
    w["tracker.class_embed.bias"] = w["tracker.class_embed.bias"] + 1
    torch.save(w, src)
    res = hub.resolve_weights("tiny-glob", cache_dir=fake_hub, local_files_only=True)
    assert "converted cache" not in res.source
    assert torch.equal(res.state_dict["tracker.class_embed.bias"], w["tracker.class_embed.bias"])
    assert len(list((fake_hub / "dvis_sdk" / "converted").glob("tiny-glob-*"))) == 2


def test_ambiguous_pattern_lists_candidates(fake_hub, tiny_manifest):
    with pytest.raises(hub.WeightsMatchError) as ei:
        hub.resolve_weights("tiny-ambiguous", cache_dir=fake_hub, local_files_only=True)
    want = {"DVIS++/ovis_online_r50.pth", "DVIS++/ovis_offline_r50.pth", "DVIS++/ovis_online_vitl.pth"}
    assert set(ei.value.candidates) == want
    assert all(c in str(ei.value) for c in want) and "filename=" in str(ei.value)
    # the user picks one explicitly
    res = hub.resolve_weights("tiny-ambiguous", cache_dir=fake_hub, local_files_only=True,
                              filename="DVIS++/ovis_online_r50.pth")
    assert "ovis_online_r50.pth" in res.source


def test_pattern_without_match_lists_repo_files(fake_hub, tiny_manifest):
    with pytest.raises(hub.WeightsMatchError) as ei:
        hub.resolve_weights("tiny-nomatch", cache_dir=fake_hub, local_files_only=True)
    assert "no file" in str(ei.value)
    assert "DVIS++/ytvis19_online_r50.pth" in ei.value.candidates and "README.md" not in ei.value.candidates


def test_match_repo_files_rules():
    files = ["DVIS++/OVIS/Online_R50.pth", "DVIS++/ovis/offline_r50.pth", "DVIS++/ytvis_2019/online_vitl.pth",
             "OV-DVIS++/ovis_online_r50.pth", "DVIS++/ovis/online_r50.json"]
    assert hub.match_repo_files(files, "DVIS++/*.pth", [["ovis"], ["online"], ["r50"]]) == \
        ["DVIS++/OVIS/Online_R50.pth"]
    assert hub.match_repo_files(files, "DVIS++/*.pth", [["ytvis19", "2019"], ["vit"]]) == \
        ["DVIS++/ytvis_2019/online_vitl.pth"]
    # the real manifest's keywords pick exactly one of a plausible listing per DVIS++ model
    listing = [f"DVIS++/{d}/{m}_{b}.pth" for d in ("ovis", "ytvis19", "ytvis21") for m in ("online", "offline")
               for b in ("r50", "vitl")] + ["DVIS++/README.md"]
    for e in hub.list_models():
        if e["source"] == "hub" and not e["filename"]:
            assert len(hub.match_repo_files(listing, e["pattern"], e["keywords"])) == 1, e["name"]


def test_online_listing_and_download_arguments(fx, tmp_path, official_ckpt, tiny_manifest, monkeypatch):
    calls = {"list": [], "download": []}

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def list_repo_files(self, repo_id, revision=None, **kw):
            calls["list"].append((repo_id, revision, self.token))
            return list(HUB_FILES)

    def fake_download(repo_id, filename, *, revision=None, cache_dir=None, token=None, local_files_only=False, **kw):
        calls["download"].append(dict(repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir,
                                      token=token, local_files_only=local_files_only))
        dst = Path(cache_dir) / "dl" / revision / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(official_ckpt.read_bytes())
        return str(dst)

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    res = hub.resolve_weights("tiny-glob", cache_dir=tmp_path / "c", revision="v1.0", token="hf_secret")
    assert calls["list"] == [(REPO, "v1.0", "hf_secret")]
    assert calls["download"] == [dict(repo_id=REPO, filename="DVIS++/ovis_online_r50.pth", revision="v1.0",
                                      cache_dir=tmp_path / "c", token="hf_secret", local_files_only=False)]
    model = dvis_sdk.build_model(res.config)
    model.load_state_dict(res.state_dict, strict=True)


def test_checksum(fake_hub, tiny_manifest, official_ckpt):
    res = hub.resolve_weights("tiny-exact", cache_dir=fake_hub, local_files_only=True)
    assert res.name == "tiny-exact"
    with pytest.raises(hub.ChecksumError) as ei:
        hub.resolve_weights("tiny-badsum", cache_dir=fake_hub, local_files_only=True)
    err = ei.value
    assert err.expected == "f" * 64 and err.actual == hub.sha256_file(official_ckpt)
    assert "ovis_online_r50.pth" in err.file
    assert err.expected in str(err) and err.actual in str(err)


def test_checksum_also_checked_on_cached_conversion(fake_hub, tiny_manifest, monkeypatch):
    hub.resolve_weights("tiny-glob", cache_dir=fake_hub, local_files_only=True)  # converted + cached
    m = hub.load_manifest()
    for e in m["models"]:
        if e["name"] == "tiny-glob":
            e["sha256"] = "e" * 64
    monkeypatch.setattr(hub, "load_manifest", lambda path=None: json.loads(json.dumps(m)))
    with pytest.raises(hub.ChecksumError):
        hub.resolve_weights("tiny-glob", cache_dir=fake_hub, local_files_only=True)


# ---------------------------------------------------------------------------------------------
# offline / unavailable
# ---------------------------------------------------------------------------------------------
def _assert_one_clear_line(msg: str):
    assert "\n" not in msg
    assert "--checkpoint" in msg and "from_official" in msg


def test_offline_without_cache_is_one_clear_line(tmp_path, monkeypatch):
    empty = tmp_path / "empty_cache"
    with pytest.raises(hub.WeightsUnavailableError) as ei:  # glob entry: cannot list, nothing cached
        hub.resolve_weights("dvis++-r50-ovis-online", cache_dir=empty, local_files_only=True)
    _assert_one_clear_line(str(ei.value))
    assert "dvis_plus/dvis_Plus/ovis/DVIS_Plus_Online_R50_16wIter.yaml" in str(ei.value)
    # HF_HUB_OFFLINE=1 in the environment counts as local_files_only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("dvis++-vitl-ytvis21-offline", cache_dir=empty)
    _assert_one_clear_line(str(ei.value))
    # an exact file name: hf_hub_download itself reports the missing cache entry
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("dvis++-r50-ovis-online", cache_dir=empty, filename="DVIS++/x.pth")
    _assert_one_clear_line(str(ei.value))


def test_no_network_is_unavailable_not_a_crash(tmp_path, monkeypatch):
    from huggingface_hub.utils import LocalEntryNotFoundError

    class NoNetApi:
        def __init__(self, token=None):
            pass

        def list_repo_files(self, *a, **k):
            raise ConnectionError("Failed to resolve 'huggingface.co'")

    def no_net_download(*a, **k):
        raise LocalEntryNotFoundError("connection error and no cached file")

    monkeypatch.setattr(hub, "HfApi", NoNetApi)
    monkeypatch.setattr(hub, "hf_hub_download", no_net_download)
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("dvis++-r50-ovis-online", cache_dir=tmp_path, local_files_only=False)
    _assert_one_clear_line(str(ei.value))
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("dvis++-r50-ovis-online", cache_dir=tmp_path, local_files_only=False,
                            filename="DVIS++/x.pth")
    _assert_one_clear_line(str(ei.value))


def test_offline_glob_uses_cached_listing(fake_hub, tiny_manifest, monkeypatch):
    class MustNotList:
        def __init__(self, *a, **k):
            raise AssertionError("offline: the Hub must not be listed")

    monkeypatch.setattr(hub, "HfApi", MustNotList)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = hub.resolve_weights("tiny-glob", cache_dir=fake_hub)
    assert "ovis_online_r50.pth" in res.source


def test_external_entry_points_to_download_page_and_accepts_local_file(fx, tiny_manifest, official_ckpt):
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("dvis-r50-ovis-online")
    msg = str(ei.value)
    assert "\n" not in msg and "https://github.com/zhang-tao-whu/DVIS" in msg and "checkpoint=" in msg
    assert "dvis/ovis/DVIS_Online_R50.yaml" in msg
    res = hub.resolve_weights("tiny-external", checkpoint=official_ckpt)
    assert res.name == "tiny-external" and str(official_ckpt) in res.source
    dvis_sdk.build_model(res.config).load_state_dict(res.state_dict, strict=True)


def test_resolve_official(fx, cfg_file, official_ckpt, tmp_path):
    res = hub.resolve_official(cfg_file, official_ckpt)
    dvis_sdk.build_model(res.config).load_state_dict(res.state_dict, strict=True)
    res2 = hub.resolve_official(fx.config, official_ckpt)  # a cfg dict works too
    assert res2.config == res.config
    with pytest.raises(hub.ChecksumError):
        hub.resolve_official(fx.config, official_ckpt, expected_sha256="0" * 64)
    with pytest.raises(FileNotFoundError):
        hub.resolve_official(fx.config, tmp_path / "missing.pth")
    # a bare official checkpoint is refused by resolve_weights with a pointer to resolve_official
    with pytest.raises(ValueError, match="resolve_official"):
        hub.resolve_weights(official_ckpt)


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

    monkeypatch.setattr(hub, "HfApi", RecordingApi)
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
    from dvis_sdk.hub import _is_network_error
    connect_error = type("ConnectError", (Exception,), {"__module__": "httpx2"})  # huggingface_hub 2.x's client
    assert _is_network_error(connect_error("[Errno -2] Name or service not known"))
    assert not _is_network_error(ValueError("bad value"))
