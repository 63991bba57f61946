"""A video panoptic / semantic model exported to ONNX runs on ONNX Runtime with the official results (the graphs
are the VIS ones; the VPS / VSS post-processing stays in Python)."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

import dvis_sdk

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from dvis_sdk.export import export_onnx  # noqa: E402
from test_panoptic import fixture, official_segments, our_segments  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Fixture 19 (offline VIPSeg, R50) exported at the fixture size (slow: a few minutes on a small CPU)."""
    cfg, weights, _ = fixture("19_e2e_offline_vps_r50")
    seg = dvis_sdk.VideoSegmenter.from_official(cfg, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_onnx(seg.model, tmp_path_factory.mktemp("onnx_vps"), size=(64, 96))


@pytest.mark.slow
def test_vps_and_vss_on_onnxruntime_match_the_official(exported, tmp_path):
    _, _, io = fixture("19_e2e_offline_vps_r50")
    seg = dvis_sdk.VideoSegmenter.from_pretrained(exported)
    assert seg.backend == "onnxruntime" and seg.cfg.test.task == "vps"
    ids, segments = seg.predict(io["in.video_uint8"].numpy(), resize=False).panoptic
    np.testing.assert_array_equal(np.asarray(ids), io["out.result.ids"].numpy())
    assert our_segments(segments) == official_segments(io)
    # the VSPW model of fixture 21 has the same weights and graphs: only the task (post-processing) differs
    vss_dir = tmp_path / "vss"
    shutil.copytree(exported, vss_dir)
    doc = json.loads((vss_dir / "config.json").read_text())
    doc["model_config"]["test"].update(task="vss", num_thing_classes=None)
    doc["model_config"]["dataset"] = "vspw"
    (vss_dir / "config.json").write_text(json.dumps(doc))
    _, _, io21 = fixture("21_e2e_offline_vss_r50")
    sem = dvis_sdk.VideoSegmenter.from_pretrained(vss_dir).predict(io21["in.video_uint8"].numpy(), resize=False)
    np.testing.assert_array_equal(np.asarray(sem.semantic), io21["out.result.semantic"].numpy())
