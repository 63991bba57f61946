"""YouTube-VIS video AP: hand-computed cases, invariances, the IoU against its definition, input errors, CLI.

Expected numbers are worked out in the comments. Recall the metric: precision is interpolated at 101 recall
points and averaged over IoU thresholds .50, .55, ..., .95, so a single detection matched at IoU ``u`` scores
AP = (number of thresholds <= u) / 10.
"""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from pycocotools import mask as mask_util

from dvis_sdk import Instance, VideoResult
from dvis_sdk.cli import main
from dvis_sdk.evaluation import STAT_KEYS, EvaluationInputError, evaluate_ytvis, format_table
from dvis_sdk.evaluation.rle import rle_string_totals
from dvis_sdk.evaluation.ytvis import _Track, _video_ious
from dvis_sdk.results import decode_rles

H = W = 32


def rle(m: np.ndarray):
    if m is None or not m.any():
        return None
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)[:, :, None]))[0]
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": r["counts"].decode("ascii")}


def box(y0, y1, x0, x1, h=H, w=W):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def track(masks):
    """Per-frame masks (None = absent) -> YouTube-VIS segmentations."""
    return [None if m is None else rle(m) for m in masks]


def make_gt(videos, objects, num_cats=3, h=H, w=W):
    """videos: {id: length}; objects: [(video_id, category_id, masks, iscrowd)]."""
    return {"videos": [{"id": v, "height": h, "width": w, "length": n} for v, n in videos.items()],
            "categories": [{"id": c, "name": f"cat{c}"} for c in range(1, num_cats + 1)],
            "annotations": [{"id": i + 1, "video_id": v, "category_id": c, "iscrowd": crowd,
                             "segmentations": track(ms), "areas": [None if m is None else int(m.sum()) for m in ms]}
                            for i, (v, c, ms, crowd) in enumerate(objects)]}


def pred(video_id, category_id, score, masks):
    return {"video_id": video_id, "category_id": category_id, "score": score, "segmentations": track(masks)}


A = box(2, 10, 2, 10)     # 8x8 = 64 px
B = box(20, 28, 20, 28)   # 8x8, disjoint from A


def same(a: dict, b: dict) -> bool:
    """Equal stats, NaN == NaN."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def approx(x):
    return pytest.approx(x, abs=1e-9)


# ---- hand-computed cases ---------------------------------------------------------------------------------------
def test_perfect_predictions_score_100():
    objs = [(1, 1, [A, A, None], 0), (1, 2, [B, B, B], 0), (2, 1, [None, B], 0)]
    gt = make_gt({1: 3, 2: 2}, objs)
    res = [pred(v, c, 0.9 - 0.1 * i, ms) for i, (v, c, ms, _) in enumerate(objs)]
    s = evaluate_ytvis(gt, res)
    for k in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs"):
        assert s[k] == approx(100.0), k
    # every object is small (< 128^2 px): the medium / large numbers have nothing to average, as the official -1
    for k in ("APm", "APl", "ARm", "ARl"):
        assert math.isnan(s[k]), k
    assert set(STAT_KEYS) <= set(s)


def test_empty_results_score_0():
    gt = make_gt({1: 3}, [(1, 1, [A, A, A], 0)])
    s = evaluate_ytvis(gt, [])
    assert s["AP"] == 0 and s["AP50"] == 0 and s["AR10"] == 0 and s["APs"] == 0
    assert math.isnan(s["APl"])


def test_wrong_class():
    gt = make_gt({1: 2}, [(1, 1, [A, A], 0)])
    s = evaluate_ytvis(gt, [pred(1, 2, 0.9, [A, A])], per_category=True)
    # category 1 is missed (AP 0); category 2 has no ground truth, so it is left out of the average
    assert s["AP"] == 0 and s["AR100"] == 0
    assert s["per_category"]["cat1"] == 0 and math.isnan(s["per_category"]["cat2"])
    # with a second object, of category 2, found with a higher score than the wrong detection: category 2 is
    # perfect (its false positive ranks below the only true one), so the mean over {cat1: 0, cat2: 100} is 50
    gt = make_gt({1: 2}, [(1, 1, [A, A], 0), (1, 2, [B, B], 0)])
    s = evaluate_ytvis(gt, [pred(1, 2, 0.8, [A, A]), pred(1, 2, 0.9, [B, B])], per_category=True)
    assert s["AP"] == approx(50.0)
    assert s["per_category"] == {"cat1": 0.0, "cat2": approx(100.0), "cat3": pytest.approx(math.nan, nan_ok=True)}
    # ranked above it, the false positive halves category 2's precision at full recall: mean(0, 50) = 25
    s = evaluate_ytvis(gt, [pred(1, 2, 0.9, [A, A]), pred(1, 2, 0.8, [B, B])])
    assert s["AP"] == approx(25.0)


def test_half_overlapping_masks():
    gt = make_gt({1: 3}, [(1, 1, [A] * 3, 0)])
    # left half of A in every frame: I = 32, U = 64 per frame -> IoU 0.5: matched at the .50 threshold only
    s = evaluate_ytvis(gt, [pred(1, 1, 0.9, [box(2, 10, 2, 6)] * 3)])
    assert s["AP"] == approx(10.0) and s["AP50"] == approx(100.0) and s["AP75"] == 0
    assert s["AR1"] == approx(10.0)
    # A shifted by half its width: I = 32, U = 96 -> IoU 1/3: never matched
    s = evaluate_ytvis(gt, [pred(1, 1, 0.9, [box(2, 10, 6, 14)] * 3)])
    assert s["AP"] == 0 and s["AP50"] == 0
    # A plus 3 extra columns: IoU 64/88 = 0.727 -> thresholds .50 .55 .60 .65 .70: AP 50, AP50 100, AP75 0
    s = evaluate_ytvis(gt, [pred(1, 1, 0.9, [box(2, 10, 2, 13)] * 3)])
    assert s["AP"] == approx(50.0) and s["AP50"] == approx(100.0) and s["AP75"] == 0


def test_identity_switch_mid_video():
    # two objects of one class over 5 frames; each predicted track follows one object for 4 frames, then the
    # other. IoU(track, object) = 4a / (4a + a + a) = 2/3 -> matched at .50 .55 .60 .65 -> AP 40
    gt = make_gt({1: 5}, [(1, 1, [A] * 5, 0), (1, 1, [B] * 5, 0)])
    switched = [pred(1, 1, 0.9, [A, A, A, A, B]), pred(1, 1, 0.8, [B, B, B, B, A])]
    s = evaluate_ytvis(gt, switched)
    assert s["AP"] == approx(40.0) and s["AP50"] == approx(100.0) and s["AP75"] == 0
    assert s["AR10"] == approx(40.0)
    assert s["AR1"] == approx(20.0)  # one detection per video and class: half the objects, at 4 of 10 thresholds
    clean = [pred(1, 1, 0.9, [A] * 5), pred(1, 1, 0.8, [B] * 5)]
    assert evaluate_ytvis(gt, clean)["AP"] == approx(100.0)


def test_absent_frames():
    gt = make_gt({1: 4}, [(1, 1, [None, A, A, None], 0)])
    assert evaluate_ytvis(gt, [pred(1, 1, 0.9, [None, A, A, None])])["AP"] == approx(100.0)
    # an extra mask where the object is absent only adds to the union: IoU 2a / 3a = 2/3 -> AP 40
    assert evaluate_ytvis(gt, [pred(1, 1, 0.9, [A, A, A, None])])["AP"] == approx(40.0)
    # a frame missed: IoU a / 2a = 0.5 -> AP 10
    assert evaluate_ytvis(gt, [pred(1, 1, 0.9, [None, A, None, None])])["AP"] == approx(10.0)
    # the whole object missed in every frame
    assert evaluate_ytvis(gt, [pred(1, 1, 0.9, [None, B, B, None])])["AP"] == 0


def test_area_range_uses_mean_area_over_annotated_frames():
    h = w = 300
    big = box(0, 150, 0, 150, h, w)  # 22500 px: medium (128^2 = 16384 .. 256^2 = 65536)
    gt = make_gt({1: 4}, [(1, 1, [big, None, None, None], 0)], h=h, w=w)
    s = evaluate_ytvis(gt, [pred(1, 1, 0.9, [big, None, None, None])])
    # mean over the one annotated frame = 22500 (counting the 3 absent frames as 0 would make it small)
    assert s["APm"] == approx(100.0) and math.isnan(s["APs"]) and math.isnan(s["APl"])
    # like the official API, the ground truth's own 'areas' decide its range when the file has them
    gt["annotations"][0]["areas"] = [10000, None, None, None]
    s = evaluate_ytvis(gt, [pred(1, 1, 0.9, [big, None, None, None])])
    assert s["APs"] == approx(100.0) and math.isnan(s["APm"])
    # without 'areas', the mask areas are used
    del gt["annotations"][0]["areas"]
    assert evaluate_ytvis(gt, [pred(1, 1, 0.9, [big, None, None, None])])["APm"] == approx(100.0)


def test_crowd_objects_are_ignored():
    gt = make_gt({1: 2}, [(1, 1, [A, A], 0), (1, 1, [B, B], 1)])  # B is a crowd region
    # the crowd region is not an object to find: finding only A gives full recall
    assert evaluate_ytvis(gt, [pred(1, 1, 0.9, [A, A])])["AP"] == approx(100.0)
    # and a detection on it is neither a true nor a false positive (were it a false positive, AP would be 50)
    s = evaluate_ytvis(gt, [pred(1, 1, 0.95, [B, B]), pred(1, 1, 0.9, [A, A]), pred(1, 1, 0.85, [B, B])])
    assert s["AP"] == approx(100.0)


def test_precision_interpolation_and_max_dets():
    gt = make_gt({1: 2}, [(1, 1, [A, A], 0), (1, 1, [B, B], 0)])
    fp = box(12, 18, 12, 18)
    res = [pred(1, 1, 0.9, [fp, fp]), pred(1, 1, 0.8, [A, A]), pred(1, 1, 0.7, [B, B])]
    s = evaluate_ytvis(gt, res)
    # precision 0, 1/2, 2/3 at recall 0, 1/2, 1; interpolated (max to the right) 2/3 at every recall point
    assert s["AP"] == pytest.approx(200 / 3, abs=1e-6)
    assert s["AR1"] == 0 and s["AR10"] == approx(100.0)  # the single best detection is the false one


def test_results_order_does_not_matter():
    rng = np.random.default_rng(0)
    objs, res = [], []
    for v in (1, 2, 3):
        for _ in range(3):
            y, x, s = rng.integers(0, 20), rng.integers(0, 20), rng.integers(4, 12)
            ms = [box(y, y + s, x, x + s) if rng.random() < 0.8 else None for _ in range(4)]
            objs.append((v, int(rng.integers(1, 4)), ms, 0))
            for _ in range(3):
                dy, dx = rng.integers(-3, 4, 2)
                pm = [None if m is None or rng.random() < 0.2 else np.roll(m, (dy, dx), (0, 1)) for m in ms]
                res.append((v, int(rng.integers(1, 4)) if rng.random() < 0.3 else objs[-1][1], pm))
    gt = make_gt({1: 4, 2: 4, 3: 4}, objs)
    scores = rng.permutation(len(res)) / len(res) + 0.01  # distinct scores
    results = [pred(v, c, float(sc), ms) for (v, c, ms), sc in zip(res, scores)]
    ref = evaluate_ytvis(gt, results)
    assert 0 < ref["AP"] < 100
    for seed in range(3):
        shuffled = results[:]
        random.Random(seed).shuffle(shuffled)
        assert same(evaluate_ytvis(gt, shuffled), ref)


def test_video_result_files_and_python_objects(tmp_path):
    masks_a = np.stack([A, A, np.zeros_like(A)])
    gt = make_gt({1: 3, 2: 3}, [(1, 1, list(masks_a), 0), (2, 2, [B, B, B], 0)])
    r1 = VideoResult([Instance(0, 0, 0.9, masks_a)], 3, H, W)                   # label 0 -> category 1
    r2 = VideoResult([Instance(5, 1, 0.8, np.stack([B, B, B]))], 3, H, W)
    p1 = r1.save(tmp_path / "v1", video_id=1)
    r2.save(tmp_path / "v2", video_id=2)
    both = evaluate_ytvis(gt, [p1, tmp_path / "v2"])  # a results.json and a folder holding one
    assert both["AP"] == approx(100.0)
    one = evaluate_ytvis(json.loads(json.dumps(gt)), json.loads(p1.read_text()))  # the loaded dict
    assert one["AP"] == approx(50.0)  # category 2 (video 2) missed
    # the submission list written to a file gives the same
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "sub.json").write_text(json.dumps(r1.to_ytvis(1) + r2.to_ytvis(2)))
    assert same(evaluate_ytvis(tmp_path / "gt.json", str(tmp_path / "sub.json")), both)


def test_gt_in_polygons_and_uncompressed_rle():
    gt = make_gt({1: 2}, [(1, 1, [A, A], 0)])
    seg = gt["annotations"][0]["segmentations"]
    seg[0] = [[2, 2, 10, 2, 10, 10, 2, 10]]  # polygon of A's outline (pycocotools rasterises it)
    # A as uncompressed RLE, by hand: column-major runs (2 columns + 2 rows of 0s, then 8 ones per column)
    seg[1] = {"size": [H, W], "counts": [2 * H + 2, 8] + [H - 8, 8] * 7 + [H * W - 9 * H - 10]}
    assert (decode_rles(mask_util.frPyObjects(seg[1], H, W)) == A).all()
    poly_mask = decode_rles(mask_util.merge(mask_util.frPyObjects(seg[0], H, W)))
    s = evaluate_ytvis(gt, [pred(1, 1, 0.9, [poly_mask, A])])
    assert s["AP"] == approx(100.0)


# ---- the IoU against its definition; RLE checks --------------------------------------------------------------------
def test_vectorised_iou_matches_per_frame_merge():
    rng = np.random.default_rng(1)
    T = 5

    def random_track():
        ms = []
        for _ in range(T):
            if rng.random() < 0.3:
                ms.append(None)
            else:
                m = rng.random((H, W)) < 0.1
                m[rng.integers(0, 20):, rng.integers(0, 20):][:10, :10] = True
                ms.append(m)
        return _Track(1, 1, [None if m is None else {"size": [H, W], "counts": rle(m)["counts"].encode()}
                             for m in ms])

    dts, gts = [random_track() for _ in range(6)], [random_track() for _ in range(4)]
    for tr in dts + gts:
        tr.areas = np.array([0 if r is None else int(mask_util.area(r)) for r in tr.rles])
    got = _video_ious(dts, gts, T)
    for i, d in enumerate(dts):
        for j, g in enumerate(gts):
            inter = union = 0
            for rd, rg in zip(d.rles, g.rles):
                if rd is not None and rg is not None:
                    inter += int(mask_util.area(mask_util.merge([rd, rg], intersect=True)))
                    union += int(mask_util.area(mask_util.merge([rd, rg], intersect=False)))
                elif rd is not None or rg is not None:
                    union += int(mask_util.area(rd if rd is not None else rg))
            assert got[i, j] == (inter / union if union else 0.0)


def test_rle_string_totals():
    rng = np.random.default_rng(2)
    blobs, sizes = [], []
    for _ in range(200):
        h, w = rng.integers(1, 50, 2)
        m = rng.random((h, w)) < rng.random()
        blobs.append(mask_util.encode(np.asfortranarray(m.astype(np.uint8)[:, :, None]))[0]["counts"])
        sizes.append(h * w)
    big = np.zeros((360, 640), np.uint8)
    big[100:300, 50:600] = 1  # long runs: values several characters long
    blobs.append(mask_util.encode(np.asfortranarray(big[:, :, None]))[0]["counts"])
    sizes.append(360 * 640)
    assert rle_string_totals(blobs).tolist() == sizes
    assert rle_string_totals(blobs, chunk_chars=64).tolist() == sizes  # block boundaries do not matter
    good = blobs[-1]
    bad = [b"", b"b'" + good + b"'", good[:-1] + b"P", good + b"0" * 3, good[:len(good) // 2]]
    totals = rle_string_totals(bad)
    assert totals[0] == -1 and totals[1] == -1 and totals[2] == -1      # empty, bad characters, cut-off value
    assert (totals[3:] != 360 * 640).all()                               # wrong number of pixels


# ---- errors --------------------------------------------------------------------------------------------------------
def _base():
    gt = make_gt({1: 3}, [(1, 1, [A, A, A], 0)])
    return gt, [pred(1, 1, 0.9, [A, A, A]), pred(1, 1, 0.5, [A, None, A])]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[1].update(video_id=99), r"results\[1\]: video_id 99 is not in the ground truth"),
    (lambda r: r[1].update(category_id=[7]), r"results\[1\]: category_id \[7\] is not a category id"),
    (lambda r: r[1]["segmentations"].pop(), r"results\[1\]: 'segmentations' has 2 frames but video 1 has 3"),
    (lambda r: r[0]["segmentations"][2].update(counts=str(r[0]["segmentations"][2]["counts"].encode())),
     r"results\[0\], frame 2: malformed RLE \(counts string is not a valid"),
    (lambda r: r[0]["segmentations"][1].update(counts=r[0]["segmentations"][1]["counts"][:4]),
     r"results\[0\], frame 1: malformed RLE"),
    (lambda r: r[0]["segmentations"][0].update(size=[W, H + 1]), r"results\[0\], frame 0: RLE size \[32, 33\]"),
    (lambda r: r[0]["segmentations"][0].pop("counts"), r"results\[0\], frame 0: not an RLE"),
    (lambda r: r[0]["segmentations"].__setitem__(0, 5), r"results\[0\], frame 0: segmentation is int"),
    (lambda r: r[1].pop("score"), r"results\[1\]: missing score"),
    (lambda r: r[1].update(score=float("nan")), r"results\[1\]: score must be a finite number"),
])
def test_bad_results_name_the_entry(mutate, message):
    gt, res = _base()
    mutate(res)
    with pytest.raises(EvaluationInputError, match=message):
        evaluate_ytvis(gt, res)


def test_bad_inputs(tmp_path):
    gt, res = _base()
    with pytest.raises(EvaluationInputError, match="expected a YouTube-VIS annotation file"):
        evaluate_ytvis({"videos": []}, res)
    with pytest.raises(EvaluationInputError, match="expected a list of YouTube-VIS results"):
        evaluate_ytvis(gt, 3)
    with pytest.raises(EvaluationInputError, match="'instances'"):
        evaluate_ytvis(gt, {"annotations": []})
    with pytest.raises(FileNotFoundError, match="no such file"):
        evaluate_ytvis(gt, tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(EvaluationInputError, match="not valid JSON"):
        evaluate_ytvis(gt, tmp_path / "bad.json")
    bad_gt = make_gt({1: 3}, [(1, 1, [A, A], 0)])
    with pytest.raises(EvaluationInputError, match=r"ground truth annotations\[0\] \(id 1\): 'segmentations' has 2"):
        evaluate_ytvis(bad_gt, [])
    saved = {"height": H + 1, "width": W, "instances": res}
    with pytest.raises(EvaluationInputError, match=r"the result is 33x32 but video 1 is 32x32"):
        evaluate_ytvis(gt, saved)


# ---- CLI -----------------------------------------------------------------------------------------------------------
def test_cli_eval(tmp_path, capsys):
    gt, res = _base()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "res.json"), "--per-category"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len([ln for ln in out if ln.startswith(" Average")]) == 12
    assert out[0] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000"
    assert out[4].endswith("= -1.000")  # APm: no medium objects, printed as the official API does
    assert any(ln.split() == ["cat1", "100.0"] for ln in out) and any(ln.split() == ["cat2", "-"] for ln in out)
    assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "res.json"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["AP"] == approx(100.0) and stats["APm"] is None
    assert format_table(evaluate_ytvis(gt, res)).splitlines()[0] == out[0]


def test_cli_eval_errors_are_one_line(tmp_path, capsys):
    gt, res = _base()
    res[0]["video_id"] = 42
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    assert main(["eval", str(tmp_path / "gt.json"), str(tmp_path / "res.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dvis: error: results[0]: video_id 42 is not in the ground truth"]
    assert main(["eval", str(tmp_path / "nope.json"), str(tmp_path / "res.json")]) == 2
    assert "no such file" in capsys.readouterr().err
