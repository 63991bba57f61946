"""The denoising study's --quick smoke run: every arm x seed trained and scored, the report written, a rerun
resumes from the stored per-run results instead of training again."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trackeval")

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("denoise_ablation", ROOT / "benchmarks" / "denoise_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


# ~15 s (the CI smoke of the study): data generation, a segmenter step, 5 arms, 7 evaluations
def test_quick_study_runs_reports_and_resumes(tmp_path):
    mod = _module()
    out = tmp_path / "report.json"
    argv = ["--quick", "--work", str(tmp_path / "work"), "--out", str(out), "--threads", "1"]
    report = mod.main(argv)
    saved = json.loads(out.read_text())
    arms = set(mod.ARMS)
    assert {(r["arm"], r["seed"]) for r in saved["runs"]} == {(a, 0) for a in arms}
    for r in saved["runs"]:
        for m in mod.METRICS:
            assert m in r and r[m] == r[m]  # present and not NaN
        assert len(r["per_video"]) == 2 and r["matched"] <= r["gt_dets"]
    assert 0 <= saved["segmenter_per_frame_AP"] <= 100
    assert set(saved["vs_none"]) == arms - {"none"}
    for d in saved["vs_none"].values():
        for v in d.values():
            lo, hi = v["ci95"]
            assert lo <= hi
    assert set(saved["vs_cosine_association"]) == arms
    assert len(saved["cosine_association"]["per_video"]) == 2
    # a rerun (e.g. after a kill) reuses every finished arm x seed
    for r in saved["runs"]:
        assert (tmp_path / "work" / "runs" / f"{r['arm']}_s0" / "result.json").is_file()
    again = mod.main(argv)
    assert [r["IDF1"] for r in again["runs"]] == [r["IDF1"] for r in report["runs"]]
    assert again["wall_s"] < report["wall_s"]


def test_paired_bootstrap_of_known_differences():
    import numpy as np

    mod = _module()
    rng = np.random.default_rng(0)

    def run(ap_shift: float, idtp_shift: int = 0):
        return {"per_video": [{"AP": 10.0 * i + ap_shift, "IDTP": 50 + idtp_shift, "IDFN": 10, "IDFP": 10,
                               "IDSW": i, "CLR_TP": 40} for i in range(6)]}

    base = {0: run(0.0), 1: run(1.0)}
    same = mod.paired_bootstrap(base, base, "AP_per_video", 200, rng)
    assert same == {"diff": 0.0, "ci95": [0.0, 0.0]}
    # every video 2.5 AP better on every seed: the difference and its interval are exactly 2.5
    better = mod.paired_bootstrap({0: run(2.5), 1: run(3.5)}, base, "AP_per_video", 200, rng)
    assert better["diff"] == pytest.approx(2.5) and better["ci95"] == pytest.approx([2.5, 2.5])
    # IDF1 = 2 IDTP / (2 IDTP + IDFN + IDFP), pooled over the resampled videos: 60 / 70 vs 50 / 60
    f1 = mod.paired_bootstrap({0: run(0.0, 10)}, {0: run(0.0)}, "IDF1", 50, rng)
    assert f1["diff"] == pytest.approx(100 * (120 / 140 - 100 / 120))
