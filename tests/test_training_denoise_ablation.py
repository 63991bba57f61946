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
    # a rerun (e.g. after a kill) reuses every finished arm x seed
    for r in saved["runs"]:
        assert (tmp_path / "work" / "runs" / f"{r['arm']}_s0" / "result.json").is_file()
    again = mod.main(argv)
    assert [r["IDF1"] for r in again["runs"]] == [r["IDF1"] for r in report["runs"]]
    assert again["wall_s"] < report["wall_s"]
