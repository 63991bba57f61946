"""evaluate_ytvis on results with categories the ground truth does not have: ignored with one warning, and the
numbers equal the official computation (pycocotools' COCOeval, which the YouTube-VIS API ports frame-for-video:
on one-frame videos the two are the same metric)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from dvis_sdk.evaluation import evaluate_ytvis

H, W = 40, 48


def _box(rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((H, W), bool)
    y, x = rng.integers(0, H - 12), rng.integers(0, W - 12)
    m[y:y + rng.integers(6, 12), x:x + rng.integers(6, 12)] = True
    return m


def _rle(m: np.ndarray) -> dict:
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [H, W], "counts": r["counts"].decode("ascii")}


def _case(seed: int):
    """Ten one-frame videos, GT categories {1, 2, 3}; predictions: noisy copies of GT plus extra classes 7 / 9."""
    rng = np.random.default_rng(seed)
    gt = {"videos": [{"id": v, "height": H, "width": W, "length": 1} for v in range(1, 11)],
          "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)], "annotations": []}
    preds = []
    for v in range(1, 11):
        for _ in range(rng.integers(1, 4)):
            m, c = _box(rng), int(rng.integers(1, 4))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "video_id": v, "category_id": c,
                                      "iscrowd": 0, "segmentations": [_rle(m)], "areas": [int(m.sum())]})
            noisy = np.roll(m, int(rng.integers(-2, 3)), axis=1)
            preds.append({"video_id": v, "category_id": c, "score": float(rng.random()),
                          "segmentations": [_rle(noisy)]})
        for extra in (7, 9):  # a model with more classes than the dataset
            preds.append({"video_id": v, "category_id": extra, "score": float(rng.random()),
                          "segmentations": [_rle(_box(rng))]})
        preds.append({"video_id": v, "category_id": int(rng.integers(1, 4)), "score": float(rng.random()),
                      "segmentations": [_rle(_box(rng))]})  # a false positive of a GT class
    return gt, preds


def _coco_ap(gt: dict, preds: list) -> list:
    """The official computation: COCO (segm) over the same one-frame data, extra classes passed in as they are."""
    coco = COCO()
    coco.dataset = {"images": [{"id": v["id"], "height": H, "width": W} for v in gt["videos"]],
                    "categories": gt["categories"],
                    "annotations": [{"id": a["id"], "image_id": a["video_id"], "category_id": a["category_id"],
                                     "iscrowd": 0, "segmentation": a["segmentations"][0], "area": a["areas"][0]}
                                    for a in gt["annotations"]]}
    coco.createIndex()
    dt = coco.loadRes([{"image_id": p["video_id"], "category_id": p["category_id"], "score": p["score"],
                        "segmentation": p["segmentations"][0]} for p in preds])
    ev = COCOeval(coco, dt, "segm")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [s * 100 for s in ev.stats]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extra_classes_are_ignored_like_the_official_api(seed, capsys):
    gt, preds = _case(seed)
    with pytest.warns(UserWarning) as rec:
        ours = evaluate_ytvis(gt, preds)
    msgs = [str(w.message) for w in rec if "category_id" in str(w.message)]
    assert len(msgs) == 1 and "ignored 20 result(s)" in msgs[0] and "7, 9" in msgs[0]
    official = _coco_ap(gt, preds)
    capsys.readouterr()
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    for k, o in zip(keys, official):
        if o < 0:
            assert math.isnan(ours[k]), k
        else:
            assert ours[k] == pytest.approx(o, abs=1e-9), k
    # the same numbers as without the extra-class results, and no warning then
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = evaluate_ytvis(gt, [p for p in preds if p["category_id"] in (1, 2, 3)])
    assert all(clean[k] == ours[k] or (math.isnan(clean[k]) and math.isnan(ours[k])) for k in keys)
