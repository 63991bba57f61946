"""Manifest entries of the DVIS++ VIPSeg / VSPW checkpoints: names not published, resolved once AT THE PINNED
COMMIT (listing), recorded with their sha256 in the cache; tested on a local fake Hub cache (no network)."""
from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch

import dvis_sdk
from dvis_sdk import weights as hub
from dvis_sdk.weights import manifest as wmanifest
from dvis_sdk.weights import pinned_names
from test_panoptic import fixture
from test_weights import COMMIT, REPO, make_fake_hub

GLOB = "DVIS++/weights/online_r50_vipseg_*.pth"
REAL_NAME = "DVIS++/weights/online_r50_vipseg_419.pth"  # what the fake repo holds (the tiny fixture-18 model)
DECOYS = ["DVIS++/weights/offline_r50_vipseg_442.pth", "DVIS++/weights/online_r50_vspw_469.pth",
          "DVIS++/weights/online_vitl_vipseg_560.pth", "DVIS++/weights/online_r50_ovis_372.pth"]


def test_manifest_has_the_eight_dvis_plus_panoptic_and_semantic_models():
    entries = [e for e in hub.list_models() if e.get("task") in ("vps", "vss") and e["variant"] == "dvis++"]
    assert {(e["dataset"], e["backbone"], e["mode"]) for e in entries} == {
        (d, b, m) for d in ("vipseg", "vspw") for b in ("r50", "vitl") for m in ("online", "offline")}
    for e in entries:
        assert e["name"] == f"dvis++-{e['backbone']}-{e['dataset']}-{e['mode']}"
        assert e["source"] == "hub" and e["repo_id"] == REPO and e["revision"] == COMMIT
        assert e["filename"] is None and e["sha256"] is None
        assert e["filename_glob"] == f"DVIS++/weights/{e['mode']}_{e['backbone']}_{e['dataset']}_*.pth"
        assert e["task"] == ("vps" if e["dataset"] == "vipseg" else "vss")
        cfg = dvis_sdk.official.load_official_config(hub.entry_config_path(e))
        assert (cfg.test.task, cfg.dataset, cfg.mode, cfg.segmenter.num_queries) == (
            e["task"], e["dataset"], e["mode"], e["num_queries"])
    daq = [e for e in hub.list_models() if e["variant"] == "daq" and e["dataset"] == "vipseg"]
    assert {e["backbone"] for e in daq} == {"r50", "vitl"} and all(e["filename"] is None for e in daq)
    assert hub.validate_manifest() == []
    bad = hub.load_manifest()
    next(e for e in bad["models"] if e["name"] == "dvis++-r50-vspw-online")["filename_glob"] = None
    assert "exact filename" in " ".join(hub.validate_manifest(bad))


@pytest.fixture
def vps_ckpt(tmp_path) -> Path:
    _, weights, _ = fixture("18_e2e_online_vps_r50")
    path = tmp_path / "model_final.pth"
    torch.save({"model": dict(weights)}, path)
    return path


@pytest.fixture
def entry_manifest(monkeypatch, tmp_path):
    cfg, _, _ = fixture("18_e2e_online_vps_r50")
    cfg_file = tmp_path / "vipseg_tiny.yaml"
    cfg_file.write_text(json.dumps(cfg))
    real = hub.load_manifest()
    base = next(e for e in real["models"] if e["name"] == "dvis++-r50-vipseg-online")
    real["models"].append(dict(base, name="tiny-vipseg", config=str(cfg_file), num_queries=10))
    real["models"].append(dict(base, name="tiny-ambiguous", config=str(cfg_file),
                               filename_glob="DVIS++/weights/*_r50_*.pth"))
    monkeypatch.setattr(wmanifest, "load_manifest", lambda path=None: json.loads(json.dumps(real)))
    return real


@pytest.fixture
def fake_hub(tmp_path, vps_ckpt) -> Path:
    cache = tmp_path / "hf_cache"
    files = {f: b"not a checkpoint" for f in DECOYS}
    files[REAL_NAME] = vps_ckpt
    make_fake_hub(cache, REPO, files)
    return cache


def test_resolved_once_at_the_pinned_commit_then_pinned_by_sha256(fake_hub, entry_manifest, vps_ckpt, monkeypatch):
    res = hub.resolve_weights("tiny-vipseg", cache_dir=fake_hub, local_files_only=True)
    assert res.config.test.task == "vps"
    rec = pinned_names.recorded(fake_hub, REPO, COMMIT, GLOB)
    assert rec == {"filename": REAL_NAME, "sha256": hub.sha256_file(vps_ckpt)}
    assert pinned_names.record_path(fake_hub, REPO, COMMIT).parent == fake_hub / "dvis_sdk" / "resolved"
    # the predictor runs the resolved model as the official code does (fixture 18, exactly)
    seg = dvis_sdk.VideoSegmenter.from_config(res.config, res.state_dict)
    _, _, io = fixture("18_e2e_online_vps_r50")
    ids, _ = seg.predict(io["in.video_uint8"].numpy(), resize=False).panoptic
    assert torch.equal(torch.from_numpy(ids[:]), io["out.result.ids"])

    def no_listing(*a, **k):
        raise AssertionError("the name is recorded: no second listing")
    monkeypatch.setattr(pinned_names, "_list_snapshot", no_listing)
    monkeypatch.setattr(pinned_names, "_list_hub", no_listing)
    hub.resolve_weights("tiny-vipseg", cache_dir=fake_hub, local_files_only=True)
    # a changed file behind the recorded name is refused (the recorded sha256 pins it)
    snap = fake_hub / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / REAL_NAME
    snap.write_bytes(snap.read_bytes() + b"tampered")
    for conv in (fake_hub / "dvis_sdk" / "converted").glob("tiny-vipseg-*"):
        (conv / "meta.json").unlink()
    with pytest.raises(hub.ChecksumError):
        hub.resolve_weights("tiny-vipseg", cache_dir=fake_hub, local_files_only=True)


def test_online_listing_is_at_the_pinned_revision(tmp_path, entry_manifest, vps_ckpt, monkeypatch):
    listed, downloaded = [], []

    class FakeApi:
        def list_repo_files(self, repo_id, revision=None, token=None):
            listed.append((repo_id, revision))
            return DECOYS + [REAL_NAME, "README.md"]

    def fake_download(repo_id, filename, *, revision=None, cache_dir=None, token=None, local_files_only=False, **kw):
        downloaded.append((filename, revision))
        dst = Path(cache_dir) / "dl" / revision / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(vps_ckpt.read_bytes())
        return str(dst)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cache = tmp_path / "c"
    hub.resolve_weights("tiny-vipseg", cache_dir=cache, local_files_only=False)
    hub.resolve_weights("tiny-vipseg", cache_dir=cache, local_files_only=False)
    assert listed == [(REPO, COMMIT)]  # once, at the pinned commit
    assert downloaded == [(REAL_NAME, COMMIT)] * 2


def test_unresolvable_names_are_one_line_errors(fake_hub, entry_manifest, tmp_path):
    with pytest.raises(hub.WeightsUnavailableError, match="files of .* match .*expected exactly one"):
        hub.resolve_weights("tiny-ambiguous", cache_dir=fake_hub, local_files_only=True)
    with pytest.raises(hub.WeightsUnavailableError, match="cannot be listed offline") as ei:
        hub.resolve_weights("tiny-vipseg", cache_dir=tmp_path / "empty", local_files_only=True)
    assert "\n" not in str(ei.value) and "from_official" in str(ei.value)
