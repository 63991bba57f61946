"""Writers of video panoptic / semantic results (VIPSeg and VSPW submission layouts, overlays) through
result.save, ``dvis predict`` and ``dvis batch``."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import dvis_sdk
from dvis_sdk.cli import main
from dvis_sdk.configs.vipseg import MODEL_ORDER, VIPSEG_CATEGORIES
from dvis_sdk.io.segmentation import rgb2id, segment_colors
from dvis_sdk.visualize import track_color
from dvis_sdk.visualize_panoptic import render_dense_frame, segment_palette
from test_panoptic import fixture


def _segmenter(name):
    cfg, weights, io = fixture(name)
    return dvis_sdk.VideoSegmenter.from_official(cfg, weights), io["in.video_uint8"].numpy()


@pytest.fixture(scope="module")
def vps_result():
    seg, video = _segmenter("18_e2e_online_vps_r50")
    return seg.predict(video, resize=False), video


def read_vipseg(sub: Path, video: str):
    """What the official eval_vpq_vspw.py reads: per frame the RGB id map and pred.json's segments_info."""
    pred = json.loads((sub / "pred.json").read_text())
    entry = [a for a in pred["annotations"] if a["video_id"] == video][0]
    frames = []
    for ann in entry["annotations"]:
        png = sub / "pan_pred" / video / (Path(ann["file_name"]).stem + ".png")
        rgb = cv2.imread(str(png), cv2.IMREAD_COLOR)[..., ::-1]
        frames.append((rgb2id(rgb), ann["segments_info"]))
    return frames


def check_vipseg_layout(sub: Path, video: str, result):
    """The PNGs and pred.json encode exactly result.panoptic, and pass the official evaluator's sanity checks
    (every PNG id in the JSON and back, known category ids, areas)."""
    ids, segments = result.panoptic
    frames = read_vipseg(sub, video)
    assert len(frames) == result.num_frames
    by_id = {s["id"]: s for s in segments}
    colors = segment_colors(segments, "vipseg")
    known = {c[0] for c in VIPSEG_CATEGORIES}
    for t, (pan, infos) in enumerate(frames):
        ours = ids[t]
        present = sorted(set(np.unique(ours).tolist()) - {0})
        assert sorted(i["id"] for i in infos) == sorted(rgb2id(colors[s]) for s in present)
        for sid in present:  # one colour per segment, the same pixels
            np.testing.assert_array_equal(pan == rgb2id(colors[sid]), ours == sid)
            info = [i for i in infos if i["id"] == rgb2id(colors[sid])][0]
            assert info["area"] == int((ours == sid).sum()) and info["iscrowd"] == 0
            # the model's class index -> the VIPSeg dataset id (things first, then stuff)
            assert info["category_id"] == MODEL_ORDER[by_id[sid]["category_id"]][0] in known
        assert (pan[ours == 0] == 0).all()


def test_vipseg_layout_round_trip(vps_result, tmp_path):
    result, _ = vps_result
    path = result.save(tmp_path)
    doc = json.loads(Path(path).read_text())
    assert doc["task"] == "vps" and doc["num_frames"] == 7 and len(doc["segments"]) == 3
    check_vipseg_layout(tmp_path, doc["video"], result)
    back = dvis_sdk.VideoResult.load(tmp_path)  # the maps read back from the PNGs
    assert back.task == "vps" and back.panoptic[0] == result.panoptic[0]
    assert [s["id"] for s in back.panoptic[1]] == [s["id"] for s in result.panoptic[1]]
    # a second video into the same folder keeps the first one's pred.json entry
    result.meta["source"] = "other_video"
    result.save(tmp_path)
    videos = [a["video_id"] for a in json.loads((tmp_path / "pred.json").read_text())["annotations"]]
    assert sorted(videos) == sorted({doc["video"], "other_video"})


def test_stuff_takes_its_class_colour_and_things_are_unique():
    segs = [{"id": 1, "category_id": 0, "isthing": True}, {"id": 2, "category_id": 0, "isthing": True},
            {"id": 3, "category_id": 60, "isthing": False}]
    colors = segment_colors(segs, "vipseg")
    assert colors[1] == MODEL_ORDER[0][3] and colors[2] != colors[1]  # second "door" jittered
    assert max(abs(a - b) for a, b in zip(colors[2], colors[1])) <= 30
    assert colors[3] == MODEL_ORDER[60][3]
    assert segment_colors(segs, "vipseg") == colors  # deterministic


def test_vspw_layout_round_trip(tmp_path):
    seg, video = _segmenter("20_e2e_online_vss_r50")
    result = seg.predict(video, resize=False)
    result.save(tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())
    folder = tmp_path / doc["layout"]["png"]
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 7
    lut = np.array([c[0] for c in MODEL_ORDER])
    for t, p in enumerate(pngs):
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint8 and img.ndim == 2
        np.testing.assert_array_equal(img, lut[result.semantic[t]])
    back = dvis_sdk.VideoResult.load(tmp_path)
    assert back.task == "vss" and back.semantic == result.semantic


def test_overlay_colours_stuff_by_class_things_by_track(vps_result):
    result, video = vps_result
    palette = segment_palette(result)
    ids = result.panoptic[0]
    for s in result.panoptic[1]:
        want = track_color(s["track_id"]) if s["isthing"] else MODEL_ORDER[s["category_id"]][3]
        assert palette[s["id"]][0] == tuple(want)
    out = render_dense_frame(video[0], ids[0], palette, alpha=1.0, contours=False, legend=False)
    sid = int(np.unique(ids[0][ids[0] > 0])[0])
    assert (out[ids[0] == sid] == np.array(palette[sid][0], np.uint8)).all()
    assert (out[ids[0] == 0] == video[0][ids[0] == 0]).all()
    with_legend = render_dense_frame(video[0], ids[0], palette)
    assert with_legend.shape == video[0].shape and not np.array_equal(with_legend, out)


@pytest.fixture(scope="module")
def vps_model_dir(tmp_path_factory):
    seg, _ = _segmenter("18_e2e_online_vps_r50")
    seg.model.cfg.input.min_size_test, seg.model.cfg.input.max_size_test = 64, 128  # the fixture size
    d = tmp_path_factory.mktemp("vps_model")
    seg.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def frame_folders(tmp_path_factory):
    _, video = _segmenter("18_e2e_online_vps_r50")
    root = tmp_path_factory.mktemp("videos")
    for name, frames in (("clip_a", video), ("clip_b", video[::-1][:5])):
        (root / name).mkdir()
        for t, f in enumerate(frames):
            cv2.imwrite(str(root / name / f"img_{t + 1:03d}.png"), f[..., ::-1])
    return root


def test_cli_predict_follows_the_model_task(vps_model_dir, frame_folders, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", str(frame_folders / "clip_a"), "--model", str(vps_model_dir), "--out", str(out),
               "--save-video", "--quiet"])
    assert rc == 0
    doc = json.loads((out / "results.json").read_text())
    assert doc["task"] == "vps" and doc["video"] == "clip_a"
    assert doc["meta"]["frame_names"][0] == "img_001.png"
    assert (out / "pan_pred" / "clip_a" / "img_001.png").exists()
    assert any(out.glob("overlay.*"))
    # the frames were written losslessly: the same maps as predict on the array
    seg, video = _segmenter("18_e2e_online_vps_r50")
    check_vipseg_layout(out, "clip_a", seg.predict(video, resize=False))


def test_cli_batch_collects_one_submission(vps_model_dir, frame_folders, tmp_path):
    out = tmp_path / "batch"
    rc = main(["batch", str(frame_folders), str(out), "--model", str(vps_model_dir), "--pattern", "clip_*"])
    assert rc == 0
    sub = out / "submission"
    pred = json.loads((sub / "pred.json").read_text())
    assert sorted(a["video_id"] for a in pred["annotations"]) == ["clip_a", "clip_b"]
    assert len(list((sub / "pan_pred" / "clip_b").glob("*.png"))) == 5
