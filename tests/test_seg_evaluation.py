"""VIPSeg (VPQ, STQ) and VSPW (mIoU, VC) metrics against the official scripts' printed numbers, round trips, errors."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dvis_sdk.cli import main
from dvis_sdk.evaluation import EvaluationInputError, evaluate_vps, evaluate_vss
from dvis_sdk.evaluation.vss import ClipConsistency

CASES = Path(__file__).parent / "fixtures" / "seg_eval"
EXPECTED = json.loads((CASES / "expected.json").read_text())


def _range(key: str) -> float:
    return 100.0 if key.startswith("VPQ") else 1.0


def _run(name: str) -> dict:
    case = CASES / name
    if name.startswith("vps"):
        return evaluate_vps(case / "gt.json", case / "gt", case / "pred.json", case / "pan_pred")
    return evaluate_vss(case, case / "pred")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_official_numbers(name):
    got = _run(name)
    for key, want in EXPECTED[name].items():
        if key == "vpq_final_txt":
            # the official file rounds the same means to 4 decimals
            for line in want.splitlines():
                k, v = line.split(":")
                assert f"{got[{'vpq_all': 'VPQ', 'vpq_thing': 'VPQ_thing', 'vpq_stuff': 'VPQ_stuff'}[k]]:.4f}" == v
            continue
        assert abs(got[key] - want) <= 1e-6 * _range(key), (name, key, got[key], want)


def test_cases_cover_the_quirks():
    """The vendored cases exercise what they are meant to: NaN clips, VC16's mixed list, non-trivial numbers."""
    assert len(EXPECTED) == 27
    vps = [v for k, v in EXPECTED.items() if k.startswith("vps")]
    assert any(v["VPQ_thing@35"] == 0.0 for v in vps) and all(0 < v["STQ"] <= 1 for v in vps)
    assert any(0 < v["VPQ"] < 30 for v in vps) and EXPECTED["vps_perfect"]["VPQ"] == 100.0
    flick = evaluate_vss(CASES / "vss_flicker", CASES / "vss_flicker" / "pred")
    assert flick["VC16"] != flick["VC16_only"]                  # the official VC16 mixes in the 8-frame clips


def _copy_vps_as_own_prediction(src: Path, dst: Path) -> None:
    gt = json.loads((src / "gt.json").read_text())
    # a prediction lists only segments present in the PNG (the GT of vps_basic has no absent ids)
    (dst / "pred").mkdir(parents=True)
    (dst / "pred.json").write_text(json.dumps({"annotations": gt["annotations"]}))
    shutil.copytree(src / "gt", dst / "pred" / "pan_pred")


def test_vps_ground_truth_against_itself(tmp_path):
    src = CASES / "vps_basic"
    _copy_vps_as_own_prediction(src, tmp_path)
    r = evaluate_vps(src / "gt.json", src / "gt", tmp_path / "pred.json", tmp_path / "pred" / "pan_pred")
    assert r["VPQ"] == pytest.approx(100.0) and r["VPQ_thing"] == pytest.approx(100.0)
    assert all(r[f"VPQ@{k}"] == pytest.approx(100.0) for k in (0, 5, 15, 25, 35))
    assert r["STQ"] == pytest.approx(1.0) and r["AQ"] == pytest.approx(1.0) and r["SQ"] == pytest.approx(1.0)


def test_vss_ground_truth_against_itself(tmp_path):
    src = CASES / "vss_basic"
    for mask in (src / "data").glob("*/mask/*.png"):
        gt = np.array(Image.open(mask)).astype(np.int64)
        pred = np.where((gt >= 1) & (gt <= 124), gt - 1, 0).astype(np.uint8)   # GT value c is class c - 1
        out = tmp_path / mask.parent.parent.name / mask.name
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pred).save(out)
    r = evaluate_vss(src, tmp_path)
    assert r["mIoU"] == 1.0 and r["Acc"] == 1.0
    # void pixels are compared raw by VC: 0 and 255 both became class 0 here, so only near-perfect
    assert r["VC8"] > 0.95


def test_vc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    T = 20
    gt = [rng.integers(0, 3, (6, 7)) for _ in range(T)]
    pred = [rng.integers(0, 2, (6, 7)) for _ in range(T)]
    vc = ClipConsistency(T)
    for g, p in zip(gt, pred):
        vc.add(g, p)
    for c in (8, 16):
        want = []
        for i in range(T - c):           # the official range: the last clip is left out
            g_common = np.ones((6, 7), bool)
            p_common = np.ones((6, 7), bool)
            for j in range(1, c):
                g_common &= gt[i] == gt[i + j]
                p_common &= pred[i] == pred[i + j]
            want.append((g_common & p_common).sum() / g_common.sum() if g_common.sum() else float("nan"))
        np.testing.assert_allclose(vc.accs[c], want, equal_nan=True)


def _short_vps(tmp_path: Path, frames: int, thing_first: bool = False) -> Path:
    """One video of ``frames`` frames: a thing and a stuff segment, predicted perfectly."""
    gt_dir, pred_dir = tmp_path / "gt" / "v", tmp_path / "pred" / "v"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    images, anns = [], []
    for t in range(frames):
        ids = np.full((8, 8), 300, np.uint32)
        ids[2:5, 2:5] = 70000
        rgb = np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], -1).astype(np.uint8)
        Image.fromarray(rgb).save(gt_dir / f"{t}.png")
        Image.fromarray(rgb).save(pred_dir / f"{t}.png")
        images.append({"file_name": f"{t}.png"})
        segs = [{"id": 300, "category_id": 0, "iscrowd": 0, "area": 55},
                {"id": 70000, "category_id": 1, "iscrowd": 0, "area": 9}]
        anns.append({"segments_info": segs[::-1] if thing_first else segs})
    cats = [{"id": 0, "isthing": 0}, {"id": 1, "isthing": 1}]
    gt = {"videos": [{"video_id": "v", "images": images}], "annotations": [{"video_id": "v", "annotations": anns}],
          "categories": cats}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred" / "pred.json").write_text(json.dumps({"annotations": [{"video_id": "v", "annotations": anns}]}))
    return tmp_path


def test_short_videos_leave_long_windows_empty(tmp_path):
    """Every video shorter than 8 frames: the official script divides by zero at k=35; here that window is NaN."""
    root = _short_vps(tmp_path, 5)
    r = evaluate_vps(root / "gt.json", root / "gt", root / "pred" / "pred.json", root / "pred")
    assert r["VPQ@0"] == r["VPQ@5"] == r["VPQ@15"] == 100.0 and r["windows"][15]["N"] == 2
    assert math.isnan(r["VPQ@25"]) and math.isnan(r["VPQ@35"]) and math.isnan(r["VPQ"])   # 6 and 8 frames


@pytest.mark.parametrize("thing_first, stq", [(False, 1.0), (True, 0.0)])
def test_stq_first_listed_thing_is_crowd(tmp_path, thing_first, stq):
    """Instance numbers count from 0 and STQ reads GT instance 0 of a thing as crowd: listed first, the only thing
    leaves the association term (AQ 0 over no tubes)."""
    root = _short_vps(tmp_path, 3, thing_first)
    r = evaluate_vps(root / "gt.json", root / "gt", root / "pred" / "pred.json")
    assert r["STQ"] == stq and r["SQ"] == 1.0 and r["VPQ@0"] == 100.0


def test_default_pred_dir_and_cli(tmp_path, capsys):
    root = _short_vps(tmp_path, 9)
    r = evaluate_vps(root / "gt.json", root / "gt", root / "pred")          # folder of pred.json, PNGs beside
    assert r["VPQ"] == 100.0 and r["STQ"] == 1.0
    assert main(["eval", "--task", "vps", str(root / "gt.json"), str(root / "pred"), "--gt-dir", str(root / "gt"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["VPQ"] == 100.0 and out["windows"]["35"]["VPQ_thing"] == 100.0
    case = CASES / "vss_basic"
    assert main(["eval", "--task", "vss", str(case), str(case / "pred")]) == 0
    assert f"{EXPECTED['vss_basic']['mIoU']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("break_it, message", [
    (lambda root: (root / "pred" / "v" / "3.png").unlink(), "missing frame"),
    (lambda root: _edit_pred(root, lambda a: a[0]["annotations"][2]["segments_info"].pop()), "not in the frame's"),
    (lambda root: _edit_pred(root, lambda a: a[0]["annotations"][2]["segments_info"].append(
        {"id": 12345, "category_id": 0})), "not in the PNG"),
    (lambda root: _edit_pred(root, lambda a: a[0]["annotations"][1]["segments_info"][0].update(category_id=7)),
     "not in the ground truth's categories"),
    (lambda root: _edit_pred(root, lambda a: a.clear()), "video 'v' is missing"),
    (lambda root: _edit_pred(root, lambda a: a[0]["annotations"].pop()), "frame annotations"),
])
def test_vps_errors_are_one_line(tmp_path, capsys, break_it, message):
    root = _short_vps(tmp_path, 4)
    break_it(root)
    with pytest.raises(EvaluationInputError, match=message):
        evaluate_vps(root / "gt.json", root / "gt", root / "pred" / "pred.json")
    assert main(["eval", "--task", "vps", str(root / "gt.json"), str(root / "pred" / "pred.json"), "--gt-dir",
                 str(root / "gt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def _edit_pred(root: Path, fn) -> None:
    p = root / "pred" / "pred.json"
    data = json.loads(p.read_text())
    fn(data["annotations"])
    p.write_text(json.dumps(data))


def test_vss_errors(tmp_path):
    root = tmp_path / "vspw"
    (root / "data" / "a" / "mask").mkdir(parents=True)
    (tmp_path / "pred" / "a").mkdir(parents=True)
    (root / "val.txt").write_text("a")                                   # no final newline: still read whole
    Image.fromarray(np.full((4, 5), 124, np.uint8)).save(root / "data" / "a" / "mask" / "0.png")
    Image.fromarray(np.full((4, 5), 3, np.uint8)).save(tmp_path / "pred" / "a" / "0.png")
    r = evaluate_vss(root, tmp_path / "pred")
    assert r["mIoU"] == 0.0 and math.isnan(r["VC8"])                     # one frame: no clip
    Image.fromarray(np.full((4, 5), 124, np.uint8)).save(tmp_path / "pred" / "a" / "0.png")
    with pytest.raises(EvaluationInputError, match="overflow"):           # class 123 row + 124: past the matrix
        evaluate_vss(root, tmp_path / "pred")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "pred" / "a" / "0.png")
    with pytest.raises(EvaluationInputError, match="prediction is 6x4"):
        evaluate_vss(root, tmp_path / "pred")
    with pytest.raises(EvaluationInputError, match="val.txt not found"):
        evaluate_vss(tmp_path, tmp_path / "pred")


def test_inputs_are_not_modified():
    case = CASES / "vps_crowd"
    gt = json.loads((case / "gt.json").read_text())
    pred = json.loads((case / "pred.json").read_text())
    gt_copy, pred_copy = json.dumps(gt), json.dumps(pred)
    r = evaluate_vps(gt, case / "gt", pred, case / "pan_pred")
    assert json.dumps(gt) == gt_copy and json.dumps(pred) == pred_copy
    assert abs(r["VPQ"] - EXPECTED["vps_crowd"]["VPQ"]) < 1e-9


def test_reading_threads_give_the_same_numbers():
    case = CASES / "vps_mixed"
    one = evaluate_vps(case / "gt.json", case / "gt", case / "pred.json", case / "pan_pred")
    three = evaluate_vps(case / "gt.json", case / "gt", case / "pred.json", case / "pan_pred", workers=3)
    assert {k: v for k, v in one.items() if k != "per_video"} == {k: v for k, v in three.items() if k != "per_video"}
    with pytest.raises(EvaluationInputError, match="pred_dir is required"):
        evaluate_vps(case / "gt.json", case / "gt", {"annotations": []})
    pred = json.loads((case / "pred.json").read_text())
    submission = evaluate_vps(case / "gt.json", case / "gt", pred, case)   # the folder holding pan_pred/
    assert submission["VPQ"] == one["VPQ"] and submission["STQ"] == one["STQ"]
    case = CASES / "vss_mixed"
    assert evaluate_vss(case, case / "pred")["VC16"] == evaluate_vss(case, case / "pred", workers=3)["VC16"]


@pytest.mark.parametrize("kind", ["L", "P", "L+tRNS", "I;16", "RGB", "RGBA", "RGB+tRNS"])
def test_png_readers_read_what_the_official_scripts_read(tmp_path, kind):
    """OpenCV decodes the common PNGs (faster); the values must be those of ``np.array(Image.open(p))``."""
    from dvis_sdk.evaluation.segmentation_io import read_label_png, read_panoptic_png

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    p = tmp_path / "x.png"
    if kind == "L":
        Image.fromarray(a).save(p)
    elif kind == "P":
        im = Image.frombytes("P", (9, 7), a.tobytes())
        im.putpalette([int(x) for x in rng.integers(0, 256, 768)])
        im.save(p)
    elif kind == "L+tRNS":
        Image.fromarray(a).save(p, transparency=5)
    elif kind == "I;16":
        Image.fromarray(a.astype(np.uint16) * 200).save(p)
    elif kind == "RGB":
        Image.fromarray(rgb).save(p)
    elif kind == "RGBA":
        Image.fromarray(np.concatenate([rgb, a[..., None]], -1)).save(p)
    else:
        Image.fromarray(rgb).save(p, transparency=(1, 2, 3))
    want = np.array(Image.open(p))
    if want.ndim == 2:
        got = read_label_png(p)
        assert got.dtype == want.dtype and (got == want).all()
        with pytest.raises(EvaluationInputError, match="must be RGB"):
            read_panoptic_png(p)
    else:
        w = want.astype(np.uint32)
        assert (read_panoptic_png(p) == w[..., 0] + 256 * w[..., 1] + 65536 * w[..., 2]).all()
        with pytest.raises(EvaluationInputError, match="one channel"):
            read_label_png(p)


def test_predictions_scored_against_themselves(tmp_path):
    """The round trip of a written result: its predictions turned into ground truth score VPQ 100 / mIoU 1.0."""
    from dvis_sdk.evaluation.segmentation_io import vipseg_gt_from_predictions, vspw_gt_from_predictions

    case = CASES / "vps_mixed"
    cats = json.loads((case / "gt.json").read_text())["categories"]
    gt = vipseg_gt_from_predictions(case / "pred.json", cats)
    r = evaluate_vps(gt, case / "pan_pred", case / "pred.json")
    assert r["VPQ"] == 100.0 and r["SQ"] == 1.0 and r["AQ"] == 1.0
    case = CASES / "vss_basic"
    root = vspw_gt_from_predictions(case / "pred", tmp_path / "vspw")
    s = evaluate_vss(root, case / "pred")
    assert s["mIoU"] == 1.0 and s["Acc"] == 1.0 and s["VC8"] == 1.0 and s["VC16"] == 1.0
    with pytest.raises(EvaluationInputError, match="class 255 does not fit"):   # predicted 255: GT 256
        vspw_gt_from_predictions(CASES / "vss_spill" / "pred", tmp_path / "spill")
