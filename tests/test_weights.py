"""dvis_sdk.weights: manifest (pinned revisions, exact files, sha256), name / folder / repo-id resolution, Hub
download + checksum + conversion cache, save/load/push.

No network: a LOCAL FAKE HUB is a Hugging Face cache folder laid out as ``hf_hub_download`` expects and as the real
repository is (``models--zhangtao-whu--DVIS_Plus/refs/main`` + ``snapshots/<pinned commit>/DVIS++/weights/...``),
used with ``local_files_only`` / ``HF_HUB_OFFLINE``; online code paths use a monkeypatched ``hf_hub_download``.
"""
from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch

import dvis_sdk
from conftest import load_fixture
from dvis_sdk import weights as hub
from dvis_sdk.official import OFFICIAL_CONFIG_DIR, convert_official_state_dict, load_official_config
from dvis_sdk.weights import manifest as wmanifest
from dvis_sdk.weights import resolve as wresolve

ROOT = Path(__file__).resolve().parents[1]
FX = "11_e2e_online_r50"
REPO = "zhangtao-whu/DVIS_Plus"
COMMIT = "a701fe449276326c6863f0b735a839bbb7d55f68"  # the commit that added DVIS++/weights/
KNOWN_SHA256 = {
    "DVIS++/weights/offline_r50_ovis_412.pth": "ed812bffdc52e4830b0058a0ddacca06c81239e9a1b464c66c23c04003326af8",
    "DVIS++/weights/online_vitl_ytvis21_623.pth": "db6e76b886ecd5d22b66065af697268828564bb523494e3608432868f04cb60a",
}
TINY_FILE = "DVIS++/weights/online_r50_ovis_372.pth"  # the real file name; the fake cache holds the tiny fixture
HUB_FILES = [TINY_FILE, "DVIS++/weights/offline_r50_ovis_412.pth", "DVIS++/weights/online_vitl_ovis_496.pth",
             "DVIS++/weights/online_r50_vipseg_xxx.pth", "DVIS++/pretrained/r50.pth", "README.md"]


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
    files[TINY_FILE] = official_ckpt
    make_fake_hub(cache, REPO, files)
    return cache


def _entry(name: str, cfg_file: Path, **kw) -> dict:
    e = {"name": name, "variant": "dvis++", "mode": "online", "backbone": "r50", "dataset": "ovis",
         "config": str(cfg_file), "source": "hub", "repo_id": REPO, "filename": TINY_FILE, "revision": COMMIT,
         "sha256": None,
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
        _entry("tiny-pinned", cfg_file),
        _entry("tiny-exact", cfg_file, sha256=good_sha),
        _entry("tiny-badsum", cfg_file, sha256="f" * 64),
        _entry("tiny-external", cfg_file, source="external", repo_id=None, filename="model_final.pth",
               revision=None),
    ]
    monkeypatch.setattr(wmanifest, "load_manifest", lambda path=None: json.loads(json.dumps(real)))
    return real


# ---------------------------------------------------------------------------------------------
# manifest
# ---------------------------------------------------------------------------------------------
def test_manifest_schema():
    m = hub.load_manifest()
    assert hub.validate_manifest(m) == []
    assert m["version"] == 1 and m["default"] == "dvis-tiny-shapes"
    embedded = [e for e in hub.list_models() if e["source"] == "embedded"]
    assert [e["name"] for e in embedded] == ["dvis-tiny-shapes", "dvis-tiny-shapes-offline"]
    assert [e["mode"] for e in embedded] == ["online", "offline"]
    # video instance segmentation entries (the VIPSeg / VSPW ones: tests/test_panoptic_weights.py)
    models = [e for e in hub.list_models() if e["source"] != "embedded" and e.get("task", "vis") == "vis"]
    for e in models:
        for f in hub.REQUIRED_FIELDS:
            assert f in e, (e["name"], f)
        assert e["name"] == f"{e['variant']}-{e['backbone']}-{e['dataset'].replace('_20', '')}-{e['mode']}", e["name"]
        assert e["dataset"] in ("ovis", "ytvis_2019", "ytvis_2021")
        if e["source"] == "hub" and e["mode"] == "segmenter":  # the stage-1 CTVIS segmenters: no AP reported
            ds = {"ovis": "ovis", "ytvis_2019": "ytvis19", "ytvis_2021": "ytvis21"}[e["dataset"]]
            assert e["repo_id"] == REPO and e["revision"] == COMMIT and e["reported_ap"] is None
            stem = f"DVIS++/pretrained/ctvis_{e['backbone']}_{ds}"
            assert e["filename"] == f"{stem}.pth" or (e["filename"] is None and e["filename_glob"] == f"{stem}*.pth")
            assert "CTVIS" in e["config"] and e["sha256"] is None
        elif e["source"] == "hub":
            ds = {"ovis": "ovis", "ytvis_2019": "ytvis19", "ytvis_2021": "ytvis21"}[e["dataset"]]
            assert e["repo_id"] == REPO and e["revision"] == COMMIT
            ap10 = round(e["reported_ap"] * 10)
            assert e["filename"] == f"DVIS++/weights/{e['mode']}_{e['backbone']}_{ds}_{ap10}.pth"
            assert e["sha256"] == KNOWN_SHA256.get(e["filename"]), e["name"]
            assert "pattern" not in e and "keywords" not in e
        elif e["variant"] == "daq":  # on zhouyik/DVIS-DAQ without published file names: nothing guessed
            assert e["download_page"] == f"https://huggingface.co/{e['repo_id']}" and e["filename"] is None
            assert e["revision"] is None and e["sha256"] is None
        else:
            assert e["download_page"].startswith("https://") and e["filename"]
    stage1 = [e for e in models if e["mode"] == "segmenter"]
    assert {(e["dataset"], e["backbone"]) for e in stage1} == {
        (d, b) for d in ("ovis", "ytvis_2019", "ytvis_2021") for b in ("r50", "vitl")}
    assert sum(1 for e in stage1 if e["filename"]) == 4  # the names read on the Hub's listing; the rest by glob
    models = [e for e in models if e["mode"] != "segmenter"]
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
    assert sum(1 for e in models if e["sha256"]) == len(KNOWN_SHA256)


def test_validate_manifest_refuses_unpinned_or_searched_entries():
    m = hub.load_manifest()
    e = next(x for x in m["models"] if x["name"] == "dvis++-r50-ovis-online")
    e.update(revision="main", filename=None, pattern="DVIS++/*.pth")
    problems = " ".join(hub.validate_manifest(m))
    assert "pinned revision" in problems and "exact filename" in problems and "no longer used" in problems


def test_manifest_root_copy_is_identical_to_package_copy():
    root, pkg = ROOT / "weights_manifest.json", hub.MANIFEST_PATH
    assert not root.is_symlink()
    assert root.read_bytes() == pkg.read_bytes(), "weights_manifest.json must equal dvis_sdk/weights_manifest.json"


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
def test_pinned_entry_resolves_from_fake_hub_and_loads_strict(fx, fake_hub, tiny_manifest):
    res = hub.resolve_weights("tiny-pinned", cache_dir=fake_hub, local_files_only=True)
    assert res.name == "tiny-pinned" and TINY_FILE in res.source
    expected = convert_official_state_dict(fx.weights, res.config)
    assert set(res.state_dict) == set(expected)
    assert all(torch.equal(res.state_dict[k], expected[k]) for k in expected)
    model = dvis_sdk.build_model(res.config)
    model.load_state_dict(res.state_dict, strict=True)
    converted = list((fake_hub / "dvis_sdk" / "converted").glob("tiny-pinned-*"))
    assert len(converted) == 1
    sha = hub.sha256_file(fake_hub / f"models--zhangtao-whu--DVIS_Plus/snapshots/{COMMIT}/{TINY_FILE}")
    assert converted[0].name == f"tiny-pinned-{sha[:12]}"
    assert {"config.json", "model.safetensors", "meta.json"} <= {p.name for p in converted[0].iterdir()}


def test_conversion_happens_once(fake_hub, tiny_manifest, monkeypatch):
    first = hub.resolve_weights("tiny-pinned", cache_dir=fake_hub, local_files_only=True)

    def boom(*a, **k):
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(wresolve, "convert_official_state_dict", boom)
    monkeypatch.setattr(wresolve, "load_official_checkpoint", boom)
    second = hub.resolve_weights("tiny-pinned", cache_dir=fake_hub, local_files_only=True)
    assert "converted cache" in second.source
    assert set(first.state_dict) == set(second.state_dict)
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    assert second.config == first.config


def test_changed_download_is_reconverted(fake_hub, tiny_manifest, fx, tmp_path):
    hub.resolve_weights("tiny-pinned", cache_dir=fake_hub, local_files_only=True)
    # the upstream file changes (new bytes): a new conversion, keyed by the new sha
    src = fake_hub / f"models--zhangtao-whu--DVIS_Plus/snapshots/{COMMIT}/{TINY_FILE}"
    w = dict(fx.weights)
    w["tracker.class_embed.bias"] = w["tracker.class_embed.bias"] + 1
    torch.save(w, src)
    res = hub.resolve_weights("tiny-pinned", cache_dir=fake_hub, local_files_only=True)
    assert "converted cache" not in res.source
    assert torch.equal(res.state_dict["tracker.class_embed.bias"], w["tracker.class_embed.bias"])
    assert len(list((fake_hub / "dvis_sdk" / "converted").glob("tiny-pinned-*"))) == 2


def test_online_download_is_the_pinned_file_without_listing(fx, tmp_path, official_ckpt, tiny_manifest,
                                                           monkeypatch):
    calls = []

    class MustNotList:
        def __init__(self, *a, **k):
            raise AssertionError("the Hub repository must never be listed")

    def fake_download(repo_id, filename, *, revision=None, cache_dir=None, token=None, local_files_only=False, **kw):
        calls.append(dict(repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir, token=token,
                          local_files_only=local_files_only))
        dst = Path(cache_dir) / "dl" / revision / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(official_ckpt.read_bytes())
        return str(dst)

    monkeypatch.setattr(huggingface_hub, "HfApi", MustNotList)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    res = hub.resolve_weights("tiny-pinned", cache_dir=tmp_path / "c", token="hf_secret", local_files_only=False)
    assert calls == [dict(repo_id=REPO, filename=TINY_FILE, revision=COMMIT, cache_dir=tmp_path / "c",
                          token="hf_secret", local_files_only=False)]
    dvis_sdk.build_model(res.config).load_state_dict(res.state_dict, strict=True)
    # an explicit revision / file overrides the pin (and then no checksum applies)
    hub.resolve_weights("tiny-badsum", cache_dir=tmp_path / "c2", revision="v1.0", local_files_only=False)
    assert calls[-1]["revision"] == "v1.0" and calls[-1]["filename"] == TINY_FILE


def test_checksum(fake_hub, tiny_manifest, official_ckpt):
    res = hub.resolve_weights("tiny-exact", cache_dir=fake_hub, local_files_only=True)
    assert res.name == "tiny-exact"
    with pytest.raises(hub.ChecksumError) as ei:
        hub.resolve_weights("tiny-badsum", cache_dir=fake_hub, local_files_only=True)
    err = ei.value
    assert err.expected == "f" * 64 and err.actual == hub.sha256_file(official_ckpt)
    assert TINY_FILE.split("/")[-1] in err.file
    assert err.expected in str(err) and err.actual in str(err)


def test_checksum_also_checked_on_cached_conversion(fake_hub, tiny_manifest, monkeypatch):
    hub.resolve_weights("tiny-pinned", cache_dir=fake_hub, local_files_only=True)  # converted + cached
    m = wmanifest.load_manifest()
    for e in m["models"]:
        if e["name"] == "tiny-pinned":
            e["sha256"] = "e" * 64
    monkeypatch.setattr(wmanifest, "load_manifest", lambda path=None: json.loads(json.dumps(m)))
    with pytest.raises(hub.ChecksumError):
        hub.resolve_weights("tiny-pinned", cache_dir=fake_hub, local_files_only=True)


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

    monkeypatch.setattr(huggingface_hub, "HfApi", NoNetApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_net_download)
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("dvis++-r50-ovis-online", cache_dir=tmp_path, local_files_only=False)
    _assert_one_clear_line(str(ei.value))
    with pytest.raises(hub.WeightsUnavailableError) as ei:
        hub.resolve_weights("dvis++-r50-ovis-online", cache_dir=tmp_path, local_files_only=False,
                            filename="DVIS++/x.pth")
    _assert_one_clear_line(str(ei.value))


def test_real_entry_resolves_offline_from_cache_at_pinned_revision(fake_hub, monkeypatch):
    """A real manifest name, HF_HUB_OFFLINE=1, and a cache laid out like the real repo: no network needed."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = hub.resolve_weights("dvis++-r50-ovis-online", cache_dir=fake_hub)
    assert res.name == "dvis++-r50-ovis-online" and f"{REPO}/{TINY_FILE}@{COMMIT}" in res.source
    assert res.config.dataset == "ovis" and res.config.mode == "online"
    converted = fake_hub / "dvis_sdk" / "converted"
    meta = json.loads(next(converted.glob("dvis++-r50-ovis-online-*/meta.json")).read_text())
    assert meta["revision"] == COMMIT and meta["filename"] == TINY_FILE and meta["sha256_verified"] is False


def test_real_entry_with_wrong_bytes_is_a_checksum_error_and_not_used(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    make_fake_hub(cache, REPO, {"DVIS++/weights/offline_r50_ovis_412.pth": b"tampered bytes"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(hub.ChecksumError) as ei:
        hub.resolve_weights("dvis++-r50-ovis-offline", cache_dir=cache)
    msg = str(ei.value)
    assert "\n" not in msg and KNOWN_SHA256["DVIS++/weights/offline_r50_ovis_412.pth"] in msg
    assert not (cache / "dvis_sdk" / "converted").exists()  # nothing was converted or cached from it


def test_importing_weights_does_not_import_huggingface_hub():
    import subprocess
    import sys
    code = "import sys, dvis_sdk.weights; print('huggingface_hub' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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


def test_dvis_models_shows_revision_file_and_checksum_state(capsys):
    from dvis_sdk.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "dvis++-r50-ovis-offline" in line)
    assert COMMIT[:12] in row and "DVIS++/weights/offline_r50_ovis_412.pth" in row and row.rstrip().endswith("verified")
    row = next(line for line in out.splitlines() if "dvis++-r50-ovis-online " in line)
    assert "online_r50_ovis_372.pth" in row and row.rstrip().endswith("unverified")
    assert f"pinned to revision {COMMIT}" in out
