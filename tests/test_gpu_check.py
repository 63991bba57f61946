"""benchmarks/gpu_check.py without a GPU: the dry run lists every check, the smoke run (a narrow R50 at 64x96 on the
CPU) executes the machinery of the model checks and writes the JSON report."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_lists_every_check(gpu_check, tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in gpu_check.CHECKS:
        assert name in text
    assert "DVIS_Plus_Online_VitAdapterL" in text and "480x854" in text and "500 frames" in text
    assert not out.exists()  # nothing ran


def test_no_gpu_without_smoke_is_a_one_line_error(gpu_check, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as e:
        gpu_check.main(["--device", "cpu"])
    assert e.value.code == 2 and "--dry-run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--only", "nope"])


def test_smoke_run_of_the_model_checks(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.json"
    rc = gpu_check.main(["--smoke", "--device", "cpu", "--out", str(out),
                         "--only", "vitl_online_bf16,r50_precisions,daq_memory"])
    report = json.loads(out.read_text())
    assert rc == 0, report
    checks = report["checks"]
    assert [checks[c]["status"] for c in ("vitl_online_bf16", "r50_precisions", "daq_memory")] == ["ok"] * 3
    vit = checks["vitl_online_bf16"]
    assert vit["fp32"]["dtype_run"] == "fp32" and vit["bf16"]["dtype_run"] == "bf16" and vit["fp32"]["fps"] > 0
    assert 0 <= vit["bf16_vs_fp32"]["mean_iou"] <= 1 and isinstance(vit["bf16_vs_fp32"]["same_top5"], bool)
    r50 = checks["r50_precisions"]
    assert r50["auto_picks"] == "fp32" and r50["r50_offline"]["bf16"]["vs_fp32"]["total"] > 0
    assert r50["r50_online"]["fp16"]["status"].startswith("skipped")  # fp16 runs fp32 on a CPU
    assert checks["daq_memory"]["frames"] == 12 and checks["daq_memory"]["dtype_run"] == "fp32"
    assert all(v.startswith("random") for v in report["weights"].values())
    assert report["environment"]["smoke"] is True


def test_agreement_of_identical_and_disjoint_results(gpu_check):
    import numpy as np

    from dvis_sdk.results import Instance, VideoResult

    masks = np.zeros((2, 8, 8), bool)
    masks[:, :4] = True

    def result(mask, label=1):
        return VideoResult(instances=[Instance(0, label, 0.9, masks=mask)], num_frames=2, height=8, width=8)
    same = gpu_check.agreement(result(masks), result(masks.copy()))
    assert same["mean_iou"] == 1.0 and same["same_top5"] and same["matched"] == 1
    half = gpu_check.agreement(result(masks), result(np.concatenate([masks[:, :2], ~masks[:, 2:]], 1)))
    assert half["mean_iou"] == pytest.approx(2 / 8) and half["matched"] == 1  # rows 0-1 overlap, union rows 0-7
    other = gpu_check.agreement(result(masks), result(masks, label=2))
    assert other["mean_iou"] == 0.0 and other["matched"] == 0 and not other["same_top5"]


@pytest.mark.slow
def test_full_smoke_run(gpu_check, tmp_path):
    """Every check on the CPU, ONNX export and 2 worker processes included (minutes)."""
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--smoke", "--device", "cpu", "--out", str(out)]) == 0
    checks = json.loads(out.read_text())["checks"]
    assert all(c["status"] == "ok" or c["status"].startswith("skipped") for c in checks.values()), checks
