"""`dvis` command line, end to end in-process on a tiny model (official-format random weights)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import dvis_sdk
from conftest import load_fixture
from dvis_sdk.cli import main
from dvis_sdk.io import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames, fps=5)


def test_predict_writes_results_and_overlay(tiny_model_dir, clip, tmp_path, capsys):
    rc = main(["predict", str(clip), "--model", str(tiny_model_dir), "--out", str(tmp_path), "--save-video",
               "--save-id-maps", "--device", "cpu"])
    assert rc == 0
    results = json.loads((tmp_path / "results.json").read_text())["instances"]
    assert len(results) == 10 and all(len(r["segmentations"]) == 5 for r in results)
    assert (tmp_path / "overlay.mp4").stat().st_size > 0
    assert "10 instances over 5 frames" in capsys.readouterr().out
    from dvis_sdk.visualize import load_id_map
    saved = dvis_sdk.VideoResult.load(tmp_path)
    maps = sorted((tmp_path / "id_maps").iterdir())
    assert [p.name for p in maps] == [f"{t:06d}.png" for t in range(5)]
    for t, p in enumerate(maps):
        assert (load_id_map(p) == saved.frame(t).id_map()).all()


def test_predict_no_video_codec_is_a_one_line_error(tiny_model_dir, clip, tmp_path, capsys, monkeypatch):
    from dvis_sdk.io import writer as io_writer
    monkeypatch.setitem(io_writer._WRITE_CODECS, ".mp4", ("ZZZZ",))
    monkeypatch.setattr(io_writer, "_FALLBACK", (".avi", "YYYY"))
    rc = main(["predict", str(clip), "--model", str(tiny_model_dir), "--out", str(tmp_path), "--save-video",
               "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no available video codec" in err


def test_convert_then_predict_round_trip(tmp_path):
    fx = load_fixture("13_e2e_offline_dvis_r50")
    (tmp_path / "cfg.json").write_text(json.dumps(fx.config))
    torch.save({"model": fx.weights}, tmp_path / "model_final.pth")
    cfg_yaml = tmp_path / "cfg.yaml"
    import yaml
    cfg_yaml.write_text(yaml.safe_dump(fx.config))
    assert main(["convert", str(cfg_yaml), str(tmp_path / "model_final.pth"), str(tmp_path / "conv")]) == 0
    seg = dvis_sdk.VideoSegmenter.from_pretrained(tmp_path / "conv")
    assert seg.cfg.mode == "offline" and seg.cfg.variant == "dvis"
    res = seg.predict(fx.io["in.video_uint8"].numpy(), resize=False)
    assert sorted(round(i.score, 4) for i in res.instances) == sorted(
        round(float(s), 4) for s in fx.io["out.result.scores"])
    online = dvis_sdk.VideoSegmenter.from_pretrained(tmp_path / "conv", mode="online")
    assert online.cfg.mode == "online" and not hasattr(online.model, "refiner")


@pytest.mark.parametrize("argv, message", [
    (["predict", "does_not_exist.mp4", "--model", "MODEL"], "does_not_exist.mp4"),
    (["predict", "CORRUPT", "--model", "MODEL"], "corrupt"),
    (["predict", "CLIP", "--model", "dvis++-r50-ovsi-online"], "dvis++-r50-ovis-online"),
    (["predict", "CLIP", "--config", "x.yaml"], "--config and --checkpoint go together"),
    (["download", "dvis-r50-ovis-online"], "not on the Hugging Face Hub"),
])
def test_user_errors_are_one_line_with_exit_code_2(argv, message, tiny_model_dir, clip, tmp_path, capsys):
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00garbage" * 100)
    subst = {"MODEL": str(tiny_model_dir), "CORRUPT": str(corrupt), "CLIP": str(clip)}
    argv = [subst.get(a, a) for a in argv] + ["--out", str(tmp_path / "o")] * (argv[0] == "predict")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dvis: error:") and len(err.splitlines()) == 1 and message in err


def test_models_lists_the_manifest(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "* dvis-tiny-shapes" in out and "embedded in the package" in out
    assert "  dvis++-r50-ovis-online" in out and "dvis-swinl-ytvis21-offline" in out


def test_predict_time_range_and_bad_inputs_do_not_stop_the_others(tiny_model_dir, clip, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    rc = main(["predict", str(bad), str(clip), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"),
               "--device", "cpu", "--quiet", "--start", "0.2", "--stride", "2"])
    assert rc == 1
    assert "bad.mp4" in capsys.readouterr().err
    doc = json.loads((tmp_path / "o" / "clip" / "results.json").read_text())
    assert doc["num_frames"] == 2 and doc["meta"]["start"] == 0.2   # frames 1 and 3 of 5 at 5 fps


def test_predict_out_of_memory_saves_the_frames_done(tiny_model_dir, clip, tmp_path, capsys, monkeypatch):
    from dvis_sdk.models.dvis import OnlineDVIS
    real = OnlineDVIS.segment
    calls = {"n": 0}

    def segment(self, images):
        calls["n"] += 1
        if calls["n"] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(self, images)
    monkeypatch.setattr(OnlineDVIS, "segment", segment)
    rc = main(["predict", str(clip), "--model", str(tiny_model_dir), "--out", str(tmp_path), "--device", "cpu",
               "--quiet", "--window-size", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "1 frames done are saved" in err
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["num_frames"] == 1 and doc["meta"]["partial"] is True
