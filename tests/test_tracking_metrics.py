"""Association metrics (dvis_sdk.evaluation.tracking, via trackeval) on hand-checkable cases."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_util

pytest.importorskip("trackeval")

from dvis_sdk.evaluation.tracking import tracking_metrics  # noqa: E402

H, W, T = 8, 8, 4


def _rle(m):
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def _box(x):
    m = np.zeros((H, W), bool)
    m[2:6, x:x + 3] = True
    return m


def _gt():
    video = {"id": 1, "height": H, "width": W, "length": T, "file_names": [f"{t}.jpg" for t in range(T)]}
    anns = [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": [_rle(_box(0))] * T},
            {"id": 2, "video_id": 1, "category_id": 1, "iscrowd": 0, "segmentations": [_rle(_box(5))] * T}]
    return {"videos": [video], "annotations": anns, "categories": [{"id": 1, "name": "a"}]}


def _track(tid, frames_x, score=0.9):
    segs = [None if x is None else _rle(_box(x)) for x in frames_x]
    return {"video_id": 1, "category_id": 1, "score": score, "track_id": tid, "segmentations": segs}


def test_perfect_tracks():
    m = tracking_metrics(_gt(), [_track(1, [0] * T), _track(2, [5] * T)])
    assert m["id_switches"] == 0 and m["matched"] == 2 * T == m["gt_dets"]
    assert m["IDF1"] == pytest.approx(100) and m["AssA"] == pytest.approx(100)
    assert m["id_switches_per_matched"] == 0


def test_swapped_identities_halfway():
    # the two tracks exchange their objects after frame 1: 2 switches over 8 matched object-frames; each track
    # covers each object for half of it -> IDF1 = 2 * 4 / (8 + 8) = 50
    m = tracking_metrics(_gt(), [_track(1, [0, 0, 5, 5]), _track(2, [5, 5, 0, 0])])
    assert m["id_switches"] == 2 and m["matched"] == 8
    assert m["id_switches_per_matched"] == pytest.approx(0.25)
    assert m["IDF1"] == pytest.approx(50)
    # for every true positive: TPA 2, FNA 2 (the object's other half), FPA 2 (the track's other half) -> 1/3
    assert m["AssA"] == pytest.approx(100 / 3, rel=1e-6)
    assert m["DetA"] == pytest.approx(100)
    per = tracking_metrics(_gt(), [_track(1, [0, 0, 5, 5]), _track(2, [5, 5, 0, 0])], per_video=True)["per_video"]
    assert per == [{"video_id": 1, "CLR_TP": 8, "CLR_FN": 0, "IDSW": 2, "IDTP": 4, "IDFN": 4, "IDFP": 4}]


def test_low_scores_are_ignored_and_missing_tracks_count_as_misses():
    m = tracking_metrics(_gt(), [_track(1, [0] * T), _track(2, [5] * T, score=0.1)])
    assert m["matched"] == T and m["gt_dets"] == 2 * T and m["id_switches"] == 0
    assert m["IDF1"] == pytest.approx(100 * 2 * T / (2 * T + T))
