"""Issue 23's closing round trip: a VPS and a VSS result written by ``dvis predict`` (the real writers) and read back
by ``evaluate_vps`` / ``evaluate_vss`` (and ``dvis eval``) against themselves as ground truth score VPQ 100 / STQ 1
and mIoU 1 / VC 1, so the writers' layout (folders, file names, ``pred.json`` keys, dataset category ids) is the one
the metrics read."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import dvis_sdk
from dvis_sdk.cli import main
from dvis_sdk.configs.vipseg import MODEL_ORDER, VIPSEG_CATEGORIES
from dvis_sdk.evaluation import evaluate_vps, evaluate_vss
from dvis_sdk.evaluation.segmentation_io import vipseg_gt_from_predictions, vspw_gt_from_predictions
from dvis_sdk.io.segmentation import rgb2id
from test_panoptic import fixture

#: the VIPSeg GT json's ``categories``: dataset ids and the dataset's own isthing flags
CATEGORIES = [{"id": c[0], "name": c[1], "isthing": c[2]} for c in VIPSEG_CATEGORIES]


def _model_dir(name: str, root: Path) -> Path:
    cfg, weights, _ = fixture(name)
    seg = dvis_sdk.VideoSegmenter.from_official(cfg, weights)
    seg.model.cfg.input.min_size_test, seg.model.cfg.input.max_size_test = 64, 128  # the fixture size
    seg.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Videos laid out as the datasets ship their frames (``VIPSeg_720P/images/<video>/*.jpg``,
    ``VSPW_480p/data/<video>/origin/*.jpg``): ``clip``, 14 frames (the fixture video forth and back: VPQ's longest
    window needs 8 frames, VC8 9), and ``short``, 4 frames (for ``dvis batch``)."""
    video = fixture("18_e2e_online_vps_r50")[2]["in.video_uint8"].numpy()
    root = tmp_path_factory.mktemp("datasets")
    for name, frames in (("clip", np.concatenate([video, video[::-1]])), ("short", video[::-1][:4])):
        for folder in (root / "VIPSeg_720P" / "images" / name, root / "VSPW_480p" / "data" / name / "origin"):
            folder.mkdir(parents=True)
            for t, f in enumerate(frames):
                cv2.imwrite(str(folder / f"{t:05d}.jpg"), f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    return root


def test_vps_written_by_predict_scores_vpq_100_against_itself(datasets, tmp_path, capsys):
    model = _model_dir("18_e2e_online_vps_r50", tmp_path / "model")
    out = tmp_path / "out"
    frames = datasets / "VIPSeg_720P" / "images" / "clip"
    assert main(["predict", str(frames), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    pred = json.loads((out / "pred.json").read_text())
    (entry,) = pred["annotations"]
    assert entry["video_id"] == "clip" and len(entry["annotations"]) == 14
    # not vacuous: segments in every frame, things and stuff, and their PNG pixels
    infos = [s for a in entry["annotations"] for s in a["segments_info"]]
    assert all(a["segments_info"] for a in entry["annotations"])
    known = {c["id"]: c["isthing"] for c in CATEGORIES}
    assert {known[s["category_id"]] for s in infos} == {0, 1}
    first = entry["annotations"][0]
    pan = rgb2id(cv2.imread(str(out / "pan_pred" / "clip" / "00000.png"), cv2.IMREAD_COLOR)[..., ::-1])
    assert sorted(set(np.unique(pan).tolist()) - {0}) == sorted(s["id"] for s in first["segments_info"])
    # the written category ids are the dataset's, the thing/stuff split agrees with the result's isthing
    doc = json.loads((out / "results.json").read_text())
    assert {known[MODEL_ORDER[s["category_id"]][0]] == s["isthing"] for s in doc["segments"]} == {True}

    gt = vipseg_gt_from_predictions(out / "pred.json", CATEGORIES)
    r = evaluate_vps(gt, out / "pan_pred", out / "pred.json")
    for k in (0, 5, 15, 25, 35):
        assert r[f"VPQ@{k}"] == r[f"VPQ_thing@{k}"] == r[f"VPQ_stuff@{k}"] == 100.0
    assert r["VPQ"] == r["VPQ_thing"] == r["VPQ_stuff"] == 100.0
    assert r["STQ"] == r["AQ"] == r["SQ"] == 1.0
    # the same through the command line, the GT written as the official json and the submission folder given
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "gt.json"), str(out), "--task", "vps", "--gt-dir", str(out / "pan_pred"),
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["VPQ"] == 100.0 and printed["STQ"] == 1.0
    # a wrong category somewhere is seen: the metric is not blind
    sid = first["segments_info"][0]["id"]
    for frame in gt["annotations"][0]["annotations"]:
        for s in frame["segments_info"]:
            if s["id"] == sid:
                s["category_id"] = next(c["id"] for c in CATEGORIES if c["id"] != s["category_id"]
                                        and c["isthing"] == known[s["category_id"]])
    assert evaluate_vps(gt, out / "pan_pred", out / "pred.json")["VPQ"] < 100.0


def test_vss_written_by_predict_scores_miou_1_against_itself(datasets, tmp_path, capsys):
    model = _model_dir("20_e2e_online_vss_r50", tmp_path / "model")
    out = tmp_path / "out"
    vspw = datasets / "VSPW_480p"
    # the VSPW frame folder data/<video>/origin/ writes <out>/<video>/ (the video id of val.txt), not origin/
    frames = vspw / "data" / "clip" / "origin"
    assert main(["predict", str(frames), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    pngs = sorted((out / "clip").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(14)]
    labels = np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in pngs])
    # not vacuous: several classes, written as VSPW dataset ids (the model's class indices mapped back)
    result = dvis_sdk.VideoResult.load(out)
    lut = np.array([c[0] for c in MODEL_ORDER])
    np.testing.assert_array_equal(labels, lut[np.asarray(result.semantic)])
    assert len(np.unique(labels)) > 1

    root = vspw_gt_from_predictions(out, vspw, videos=["clip"])   # data/clip/mask/ beside data/clip/origin/
    s = evaluate_vss(root, out)
    assert s["mIoU"] == s["Acc"] == 1.0 and s["fwIoU"] == pytest.approx(1.0, abs=1e-12)  # fwIoU: a float sum
    assert s["VC8"] == s["VC16"] == 1.0
    capsys.readouterr()
    assert main(["eval", str(root), str(out), "--task", "vss", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mIoU"] == 1.0
    # a wrong class somewhere is seen: the metric is not blind
    wrong = tmp_path / "wrong"
    (wrong / "clip").mkdir(parents=True)
    for p, lab in zip(pngs, labels):
        cv2.imwrite(str(wrong / "clip" / p.name), np.where(lab == lab.flat[0], (lab + 1) % 124, lab).astype(np.uint8))
    assert evaluate_vss(root, wrong)["mIoU"] < 1.0


def test_batch_submission_folders_score_against_themselves(datasets, tmp_path):
    """``dvis batch`` over the dataset folders: its ``submission/`` is what the metrics read, one entry per video."""
    vps_out, vss_out = tmp_path / "vps", tmp_path / "vss"
    assert main(["batch", str(datasets / "VIPSeg_720P" / "images"), str(vps_out), "--model",
                 str(_model_dir("18_e2e_online_vps_r50", tmp_path / "vps_model"))]) == 0
    sub = vps_out / "submission"
    gt = vipseg_gt_from_predictions(sub / "pred.json", CATEGORIES)
    assert sorted(v["video_id"] for v in gt["videos"]) == ["clip", "short"]
    assert all(f["segments_info"] for a in gt["annotations"] for f in a["annotations"])   # segments in every frame
    r = evaluate_vps(gt, sub / "pan_pred", sub)
    assert r["VPQ"] == 100.0 and r["STQ"] == 1.0
    # VSPW: data/<video>/origin/ folders, named by <video> in the submission (not all "origin")
    assert main(["batch", str(datasets / "VSPW_480p" / "data" / "*" / "origin"), str(vss_out), "--model",
                 str(_model_dir("20_e2e_online_vss_r50", tmp_path / "vss_model"))]) == 0
    sub = vss_out / "submission"
    assert sorted(p.name for p in sub.iterdir()) == ["clip", "short"]
    root = vspw_gt_from_predictions(sub, tmp_path / "vspw_gt")
    s = evaluate_vss(root, sub)
    assert s["mIoU"] == 1.0 and s["VC8"] == 1.0
