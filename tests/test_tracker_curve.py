"""The tracker learning curve (benchmarks/tracker_curve.py) and its threshold sweep (benchmarks/tracker_sweep.py):
the --quick smoke run writes every evaluation and the report, a killed run resumes exactly from its checkpoint, the
sweep equals tracking_metrics at every threshold, the official tracker initialisation."""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trackeval")

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


@pytest.fixture(scope="module")
def curve():
    return _load("tracker_curve")


# ~7 s alone (~30 s on a loaded 2-core CPU): data, a 1-iteration segmenter, 2 runs x 3 points, one resumed
def test_quick_curve_reports_and_resumes_exactly(curve, tmp_path):
    work, out = tmp_path / "work", tmp_path / "curve.json"
    argv = ["--quick", "--work", str(work), "--out", str(out), "--threads", "1"]
    curve.main(argv)
    saved = json.loads(out.read_text())
    names = [curve.PRIORITY[0].name, curve.PRIORITY[1].name]
    assert [(r["run"], r["iter"]) for r in saved["table"]] == [(n, k) for n in names for k in (0, 2, 4)]
    for r in saved["table"]:
        for side in ("tracker", "swap"):
            b = r[side]
            assert 0 <= b["at_best"]["IDF1"] <= 100 and b["at_best"]["IDF1"] >= b["at_0.3"]["IDF1"]
    assert set(saved["cosine"]["sweep"]) == {f"{t:g}" for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}
    row = [c for c in saved["comparisons"] if c["iter"] == 4][0]
    for key in ("none-cosine", "shuffle-cosine", "none_swap-cosine", "shuffle-none"):
        for v in row[key].values():
            assert v["ci95"][0] <= v["diff"] <= v["ci95"][1] or v["ci95"][0] == v["ci95"][1]
    # kill after the checkpoint at 2: the last evaluation and checkpoint are gone, a rerun redoes them exactly
    run = work / "curve" / names[0]
    before = json.loads((run / "eval_000004.json").read_text())
    (run / "eval_000004.json").unlink()
    ckpts = run / "train" / "checkpoints"
    shutil.rmtree(ckpts / "iter_0000004")
    (ckpts / "last").write_text("iter_0000002")
    curve.main(argv)
    after = json.loads((run / "eval_000004.json").read_text())
    for side in ("tracker", "swap"):
        assert after[side]["AP"] == before[side]["AP"]
        assert after[side]["sweep"] == before[side]["sweep"]
    assert after["train_s"] > 0  # it did train again (2 iterations), not read a stale result
    text = _load("tracker_curve_report").main([str(out), "--budgets", "2", "4"])
    assert "| fresh | 0.0005 | none | 1 |" in text and "| fresh | 0.0005 | 4 |" not in text  # 4 // 1000 = 0k


def test_report_first_budget_ahead_is_where_the_interval_stays_above_zero():
    report_mod = _load("tracker_curve_report")

    def comp(it, lo):
        d = {"diff": lo + 1, "ci95": [lo, lo + 2], "seeds": 2}
        return {"init": "fresh", "lr": 5e-4, "iter": it, "shuffle-cosine": {"AP_per_video": d, "IDF1_best": d}}

    # above zero at 2k, below at 4k, above from 6k on: "ahead from 6k", not 2k
    report = {"comparisons": [comp(2000, 0.5), comp(4000, -0.5), comp(6000, 0.1), comp(8000, 0.3)]}
    assert report_mod.first_ahead(report, "AP_per_video") == {("fresh", 5e-4, "shuffle"): 6000}
    report["comparisons"][-1] = comp(8000, -0.1)  # not ahead at the last point: never
    assert report_mod.first_ahead(report, "IDF1_best") == {("fresh", 5e-4, "shuffle"): None}


def _noisy_results(gt: dict, rng: np.random.Generator) -> list:
    """Results from the ground truth: random scores, some tracks that swap identities half-way, duplicates of a
    track with another class and a lower score, empty frames."""
    out = []
    anns = gt["annotations"]
    for k, a in enumerate(anns):
        segs = list(a["segmentations"])
        other = [b for b in anns if b["video_id"] == a["video_id"] and b["id"] != a["id"]]
        if other and k % 3 == 0:  # identity switch half-way
            half = len(segs) // 2
            segs = segs[:half] + list(other[0]["segmentations"][half:])
        if k % 4 == 1:
            segs[0] = None
        s = float(rng.uniform(0.05, 0.95))
        out.append({"video_id": a["video_id"], "category_id": a["category_id"], "score": s, "track_id": k,
                    "segmentations": segs})
        out.append({**out[-1], "category_id": 1 + a["category_id"] % 3, "score": s * 0.5})
    return out


def test_sweep_equals_tracking_metrics_at_every_threshold(tmp_path):
    from dvis_sdk.evaluation.tracking import tracking_metrics
    from dvis_sdk.training.synthetic import SyntheticConfig, generate_ytvis

    sweep = _load("tracker_sweep")
    gt = json.loads(Path(generate_ytvis(tmp_path, 4, seed=3, config=SyntheticConfig(
        width=48, height=40, num_frames=5, max_objects=3), image_ext=".png")).read_text())
    res = _noisy_results(gt, np.random.default_rng(0))
    got = sweep.sweep_metrics(gt, res, (0.1, 0.3, 0.5, 0.8))
    for t, m in got.items():
        ref = tracking_metrics(gt, res, score_threshold=float(t), per_video=True)
        for k in ("IDF1", "HOTA", "DetA", "AssA"):
            assert m[k] == pytest.approx(ref[k], abs=1e-9), (t, k)
        assert m["IDSW"] == ref["id_switches"] and m["matched"] == ref["matched"]
        assert m["per_video"] == [[v[k] for k in sweep.COUNTS] for v in ref["per_video"]]
        assert sweep.pooled_idf1(m["per_video"]) == pytest.approx(ref["IDF1"])
    assert len({round(m["IDF1"], 6) for m in got.values()}) > 1  # the threshold does matter on these results
    assert sweep.best_threshold(got) == max(got, key=lambda t: got[t]["IDF1"])


def test_official_tracker_init(curve):
    import torch

    from dvis_sdk import VideoSegmenter

    tracker = VideoSegmenter.from_pretrained("dvis-tiny-shapes", mode="online").model.tracker
    curve.official_tracker_init(tracker, 7)
    a = {k: v.detach().clone() for k, v in tracker.named_parameters()}
    curve.official_tracker_init(tracker, 7)
    b = {k: v.detach().clone() for k, v in tracker.named_parameters()}
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded
    for layer in tracker.ref_proj.layers:  # c2_xavier_fill: zero bias, kaiming-uniform(a=1) bound sqrt(3 / fan_in)
        assert not layer.bias.any() and layer.weight.abs().max() <= (3 / layer.weight.shape[1]) ** 0.5
    attn = tracker.transformer_cross_attention_layers[0].multihead_attn
    bound = (6 / (attn.in_proj_weight.shape[0] + attn.in_proj_weight.shape[1])) ** 0.5  # xavier on the whole matrix
    assert attn.in_proj_weight.abs().max() <= bound and not attn.in_proj_bias.any()
    assert attn.in_proj_weight.abs().max() > 0.8 * bound


@pytest.mark.slow  # ~10 s: a wrapper of the study's run_arm and of the sweep, both covered above
def test_quick_rescore_of_study_arms(tmp_path):
    rescore = _load("denoise_rescore")
    out = rescore.main(["--quick", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "r.json"),
                        "--arms", "none", "--threads", "1"])
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved == json.loads(json.dumps(out)) and [r["arm"] for r in saved["runs"]] == ["none"]
    run = saved["runs"][0]
    # the sweep at 0.3 is the study's own IDF1 of the same trained tracker
    assert run["tracker"]["sweep"]["0.3"]["IDF1"] == pytest.approx(run["IDF1_at_0.3_study"], abs=1e-3)
    assert set(run["swap"]["sweep"]) == set(saved["cosine_sweep"])
