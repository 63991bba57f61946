"""The official stage-1 CTVIS segmenters by manifest name (``dvis++-<backbone>-<dataset>-segmenter``): resolved from
a Hugging Face cache laid out like the real repository (``DVIS++/pretrained/ctvis_*.pth`` at the pinned commit,
offline), by exact name or by pattern, and run as segmenter-only video models equal to ``from_official``. The cache
holds the CTMinVIS fixture made by the official code, with the entry's yaml swapped for the fixture's tiny one."""
from __future__ import annotations

import json

import pytest
import torch

from dvis_sdk import VideoSegmenter
from dvis_sdk.models.minvis import MinVIS
from dvis_sdk.weights import WeightsUnavailableError
from dvis_sdk.weights import manifest as wmanifest
from test_minvis import check_result, load_fixture, tiny_yaml
from test_weights import COMMIT, REPO, make_fake_hub

FX = "ctminvis_ytvis19_dvisplus"


@pytest.fixture
def tiny_entries(monkeypatch, tmp_path):
    """The real manifest, its two YouTube-VIS 2019 segmenter entries pointed at the fixture's tiny yaml."""
    real = wmanifest.load_manifest()
    cfg = tiny_yaml(FX, tmp_path)
    for e in real["models"]:
        if e["name"] in ("dvis++-r50-ytvis19-segmenter", "dvis++-vitl-ytvis19-segmenter"):
            e["config"] = cfg
    monkeypatch.setattr(wmanifest, "load_manifest", lambda path=None: json.loads(json.dumps(real)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return real


@pytest.fixture
def cache(tmp_path):
    ckpt = tmp_path / "ctvis.pth"
    torch.save({"model": dict(load_fixture(FX).weights), "iteration": 1}, ckpt)
    files = {"DVIS++/pretrained/ctvis_r50_ytvis19.pth": ckpt, "DVIS++/pretrained/ctvis_vitl_ytvis19.pth": ckpt,
             "DVIS++/pretrained/ctvis_vitl_ytvis21.pth": b"a decoy the pattern must not pick",
             "DVIS++/weights/online_r50_ytvis19_...pth": b"not this either"}
    make_fake_hub(tmp_path / "hf", REPO, files)
    return tmp_path / "hf"


@pytest.mark.parametrize("name", ["dvis++-r50-ytvis19-segmenter", "dvis++-vitl-ytvis19-segmenter"])
def test_stage1_segmenter_by_name_runs_like_from_official(name, tiny_entries, cache):
    fx = load_fixture(FX)
    seg = VideoSegmenter.from_pretrained(name, cache_dir=cache)
    assert seg.mode == "segmenter" and isinstance(seg.model, MinVIS)
    ref = VideoSegmenter.from_official(fx.config, fx.weights)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(seg.model.state_dict()[k], v), k
    check_result(seg.predict(fx.io["in.video_uint8"].numpy(), resize=False), fx.io)
    if name.startswith("dvis++-vitl"):  # found by pattern at the pinned commit, then recorded
        rec = cache / "dvis_sdk" / "resolved" / f"{REPO.replace('/', '--')}@{COMMIT}.json"
        assert json.loads(rec.read_text())["DVIS++/pretrained/ctvis_vitl_ytvis19*.pth"]["filename"] == \
            "DVIS++/pretrained/ctvis_vitl_ytvis19.pth"


def test_stage1_segmenter_missing_offline_is_one_line(tiny_entries, tmp_path):
    with pytest.raises(WeightsUnavailableError) as ei:
        VideoSegmenter.from_pretrained("dvis++-r50-ovis-segmenter", cache_dir=tmp_path / "empty")
    msg = str(ei.value)
    assert "\n" not in msg and "ctvis_r50_ovis.pth" in msg and "CTVIS_R50.yaml" in msg
