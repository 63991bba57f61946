"""Batch processing (``predict_folder`` / ``dvis batch``) on a tiny model (official-format random weights), CPU."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import dvis_sdk
from dvis_sdk.batch import BatchLockedError, discover_videos, predict_folder
from dvis_sdk.batch.store import OutputLock
from dvis_sdk.cli import main
from dvis_sdk.io import write_video
from dvis_sdk.results import VideoResult

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seg(tiny_model_dir):
    return dvis_sdk.VideoSegmenter.from_pretrained(tiny_model_dir, device="cpu")


def _clip(path: Path, n: int, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_video(path, [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)], fps=5)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """Good clips (one in a sub-folder, one folder of frames) and every kind of bad input."""
    root = tmp_path_factory.mktemp("videos")
    _clip(root / "a.mp4", 4, seed=1)
    _clip(root / "b.mp4", 5, seed=2)
    (root / "sub").mkdir()
    _clip(root / "sub" / "c.mp4", 3, 40, 56, seed=3)
    rng = np.random.default_rng(4)
    (root / "frames").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "frames" / f"{i:03d}.jpg"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    (root / "corrupt.mp4").write_bytes(b"\x00garbage" * 100)
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("not a video")
    # a video cut in half: its frames up to the cut are used, with a warning (docs/user_guide.md, broken frames)
    avi = _clip(root / "truncated.avi", 30, seed=5)
    data = avi.read_bytes()
    avi.write_bytes(data[: len(data) // 2])
    # a folder of frames with an undecodable image in the middle
    (root / "badframes").mkdir()
    for i in range(3):
        cv2.imwrite(str(root / "badframes" / f"{i:03d}.jpg"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    (root / "badframes" / "001.jpg").write_bytes(b"\xff\xd8 truncated jpeg")
    return root


GOOD = {"a", "b", "frames", "sub/c", "truncated"}
BAD = {"corrupt": "corrupt", "empty": "0 bytes", "notes": "not a video file",
       "badframes": "001.jpg"}


def _manifest(out: Path):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def _stamps(out: Path):
    return {str(p.relative_to(out).parent): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("**/results.json")
            if p.parent != out}


@pytest.fixture(scope="module")
def mixed_run(seg, mixed_folder, tmp_path_factory):
    """The mixed folder through the local backend (one CPU thread, as the Ray workers of the Ray test)."""
    out = tmp_path_factory.mktemp("mixed_out")
    return out, predict_folder(seg, mixed_folder, out, pattern="*", recursive=True, progress=False,
                               cpus_per_worker=1)


def test_folder_with_bad_files_goes_on_and_reports(seg, mixed_folder, mixed_run, tmp_path):
    out, s = mixed_run
    assert s.exit_code == 1 and not s.interrupted
    assert {r["output"] for r in s.ok} == GOOD
    failed = {r["output"]: r["error"] for r in s.failed}
    assert set(failed) == set(BAD)
    for key, reason in BAD.items():
        assert reason in failed[key] and len(failed[key].splitlines()) == 1, failed[key]
    # one manifest line per video, ids in natural order of the relative paths
    man = _manifest(out)
    assert [r["video_id"] for r in man] == list(range(1, 10))
    videos = json.loads((out / "videos.json").read_text())["videos"]
    rel = [Path(v["path"]).relative_to(mixed_folder).as_posix() for v in videos]
    assert rel == ["a.mp4", "b.mp4", "badframes", "corrupt.mp4", "empty.mp4", "frames", "notes.txt", "sub/c.mp4",
                   "truncated.avi"]
    for v in videos:
        assert (out / v["result"]).exists() == (v["result"].rsplit("/", 1)[0] in GOOD)
    # a video's file is what predict() gives (the batch drives the same pipeline, with decode overlap)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for v in (videos[0], videos[5]):  # a.mp4 and the folder of frames
            ref = seg.predict(v["path"])
            ref.meta["fingerprint"] = s.records[0]["fingerprint"]
            assert ref.save(tmp_path / str(v["id"]), video_id=v["id"]).read_bytes() == (out / v["result"]).read_bytes()
    finally:
        torch.set_num_threads(threads)
    # the merged file: the official submission format, over the good videos, with the videos.json ids
    merged = json.loads((out / "results.json").read_text())
    assert isinstance(merged, list) and len(merged) == len(GOOD) * 10
    assert all(set(e) == {"video_id", "score", "category_id", "segmentations"} for e in merged)
    ids = {v["id"]: v for v in videos}
    for e in merged:
        per_video = VideoResult.load(out / ids[e["video_id"]]["result"])
        assert len(e["segmentations"]) == per_video.num_frames
    assert "failed:" in s.table() and "not a video file" in s.table()


def test_rerun_skips_finished_and_retries_failed(seg, mixed_folder, mixed_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(mixed_run[0], out)
    before = _stamps(out)
    assert set(before) == GOOD
    # not recursive this time, other patterns: sub/c is not part of it; folders of frames count whatever the pattern
    s = predict_folder(seg, mixed_folder, out, pattern=["*.mp4", "*.avi"], progress=False)
    assert {r["output"] for r in s.skipped} == GOOD - {"sub/c"} and not s.ok
    assert {r["output"] for r in s.failed} == {"badframes", "corrupt", "empty"}  # retried, still failing
    assert _stamps(out) == before  # finished results were not rewritten
    assert s.exit_code == 1 and len(_manifest(out)) == 7


def test_fingerprint_change_and_overwrite_reprocess(seg, tiny_model_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _clip(src / "x.mp4", 2, seed=7)
    out = tmp_path / "out"
    s1 = predict_folder(seg, src, out, progress=False)
    fp1 = s1.ok[0]["fingerprint"]
    assert predict_folder(seg, src, out, progress=False).skipped
    # other options -> other fingerprint -> reprocessed
    s2 = predict_folder(seg, src, out, progress=False, score_threshold=0.3)
    assert len(s2.ok) == 1 and s2.ok[0]["fingerprint"] != fp1
    assert json.loads((out / "x" / "results.json").read_text())["meta"]["fingerprint"] == s2.ok[0]["fingerprint"]
    # other weights (same config) -> reprocessed
    other = dvis_sdk.VideoSegmenter.from_pretrained(tiny_model_dir, device="cpu")
    with torch.no_grad():
        next(other.model.parameters()).add_(1e-3)
    s3 = predict_folder(other, src, out, progress=False, score_threshold=0.3)
    assert len(s3.ok) == 1 and s3.ok[0]["fingerprint"] != s2.ok[0]["fingerprint"]
    # overwrite forces it with an unchanged fingerprint
    before = _stamps(out)
    s4 = predict_folder(other, src, out, progress=False, score_threshold=0.3, overwrite=True)
    assert len(s4.ok) == 1 and s4.ok[0]["fingerprint"] == s3.ok[0]["fingerprint"]
    assert all(_stamps(out)[k] != before[k] for k in before)


def test_save_video_writes_overlays_and_a_missing_overlay_is_redone(seg, tmp_path):
    src = tmp_path / "src"
    (src / "frames").mkdir(parents=True)
    _clip(src / "x.mp4", 2, seed=11)
    for i in range(2):
        cv2.imwrite(str(src / "frames" / f"{i}.png"), np.full((40, 48, 3), 60 * i, np.uint8))
    out = tmp_path / "out"
    s = predict_folder(seg, src, out, save_video=True, progress=False)
    assert len(s.ok) == 2
    for key in ("x", "frames"):
        assert cv2.VideoCapture(str(out / key / "overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 2
    (out / "x" / "overlay.mp4").unlink()
    s = predict_folder(seg, src, out, save_video=True, progress=False)
    assert [r["output"] for r in s.ok] == ["x"] and [r["output"] for r in s.skipped] == ["frames"]
    assert (out / "x" / "overlay.mp4").exists()
    # without --save-video the overlay is not needed to count as done
    assert len(predict_folder(seg, src, out, progress=False).skipped) == 2


def test_out_of_memory_on_one_video_fails_only_that_video(seg, tmp_path, monkeypatch):
    from dvis_sdk.models.dvis import OnlineDVIS

    src = tmp_path / "src"
    src.mkdir()
    _clip(src / "huge.mp4", 2, 48, 160, seed=9)  # a wider input: padded to 128 columns instead of 96
    _clip(src / "small.mp4", 2, seed=10)
    real = OnlineDVIS.segment

    def segment(self, images):  # "huge" inputs do not fit, even one frame at a time
        if images.shape[-1] > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, images)
    monkeypatch.setattr(OnlineDVIS, "segment", segment)
    with pytest.warns(RuntimeWarning, match="out of memory"):
        s = predict_folder(seg, src, tmp_path / "out", progress=False)
    assert [r["output"] for r in s.ok] == ["small"]
    assert [r["output"] for r in s.failed] == ["huge"] and "out of memory" in s.failed[0]["error"]
    assert not (tmp_path / "out" / "huge" / "results.json").exists()


def test_discovery_glob_list_collisions_and_output_exclusion(tmp_path):
    root = tmp_path / "data"
    (root / "deep" / "er").mkdir(parents=True)
    for name in ["clip10.mp4", "clip2.mp4", "clip.mp4", "clip.avi", "deep/er/z.mp4", "deep/x.MP4"]:
        (root / name).write_bytes(b"x")
    (root / ".hidden.mp4").write_bytes(b"x")
    (root / "out").mkdir()
    (root / "out" / "overlay.mp4").write_bytes(b"x")  # outputs of an earlier run inside the input folder
    tasks = discover_videos(root, pattern="*.mp4", recursive=True, exclude=[root / "out"])
    assert [(t.video_id, t.key) for t in tasks] == [
        (1, "clip"), (2, "clip2"), (3, "clip10"), (4, "deep/er/z"), (5, "deep/x")]
    tasks = discover_videos(root, pattern=["*.mp4", "*.avi"])
    assert [t.key for t in tasks] == ["clip.avi", "clip.mp4", "clip2", "clip10"]  # same stem: keep the suffix
    assert [t.key for t in discover_videos(str(root / "deep" / "**" / "*.mp4"))] == ["er/z"]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# my videos\ndata/clip2.mp4\n\n{root / 'deep' / 'x.MP4'}\ndata/missing.mp4\ndata/clip2.mp4\n")
    tasks = discover_videos(lst)
    assert [(t.key, t.kind) for t in tasks] == [("clip2", "file"), ("deep/x", "file"), ("missing", "missing")]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        discover_videos(tmp_path / "nope")


def test_second_batch_on_the_same_output_is_refused(seg, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _clip(src / "x.mp4", 2)
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out):
        with pytest.raises(BatchLockedError, match="another dvis batch"):
            predict_folder(seg, src, out, progress=False)


def test_cli_batch_user_errors(tiny_model_dir, tmp_path, capsys):
    assert main(["batch", str(tmp_path / "nope"), str(tmp_path / "o"), "--model", str(tiny_model_dir),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dvis: error:") and "nope" in err and len(err.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), str(tmp_path / "o"), "--model", str(tiny_model_dir),
                 "--device", "cpu"]) == 2
    assert "no videos found" in capsys.readouterr().err


def _run_cli(args, until=None, sig=None, timeout=120):
    """Run ``dvis batch`` in a subprocess; with ``until`` (a predicate over the manifest lines) send ``sig`` as soon
    as it holds. Returns the exit code."""
    cmd = [sys.executable, "-m", "dvis_sdk.cli", "batch", *map(str, args), "--device", "cpu", "--quiet",
           "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if until is not None:
            manifest = Path(args[1]) / "manifest.jsonl"
            deadline = time.time() + timeout
            while time.time() < deadline and proc.poll() is None:
                try:
                    lines = [json.loads(x) for x in manifest.read_text().splitlines() if x.endswith("}")]
                except (OSError, ValueError):
                    lines = []
                if until(lines):
                    proc.send_signal(sig)
                    break
                time.sleep(0.02)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.decode()


def test_cli_interrupt_and_kill_then_resume(tiny_model_dir, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(7):
        _clip(src / f"v{i}.mp4", 4, seed=20 + i)
    out = tmp_path / "out"
    args = [src, out, "--model", tiny_model_dir]

    def ok_count(n):
        return lambda lines: sum(r["status"] == "ok" for r in lines) >= n

    # 1. Ctrl-C after the first video: exit 130, finished work kept, manifest and merged file written
    rc, err = _run_cli(args, until=ok_count(1), sig=signal.SIGINT)
    assert rc == 130, err
    run1 = _manifest(out)
    done1 = {r["output"] for r in run1 if r["status"] == "ok"}
    assert 1 <= len(done1) < 7 and all(r["status"] == "ok" for r in run1)
    assert len(json.loads((out / "results.json").read_text())) == 10 * len(done1)
    stamps1 = _stamps(out)
    assert set(stamps1) == done1
    # 2. SIGKILL (no chance to clean up) once this run has begun (its manifest lists the skipped videos) and done one
    rc, err = _run_cli(args, sig=signal.SIGKILL,
                       until=lambda lines: any(r["status"] == "skipped" for r in lines) and ok_count(1)(lines))
    assert rc == -signal.SIGKILL, err
    run2 = _manifest(out)
    assert {r["output"] for r in run2 if r["status"] == "skipped"} == done1
    stamps2 = _stamps(out)
    assert {k: stamps2[k] for k in stamps1} == stamps1  # nothing finished was redone
    # 3. finish
    rc, err = _run_cli(args)
    assert rc == 0, err
    run3 = _manifest(out)
    assert len(run3) == 7 and {r["status"] for r in run3} <= {"ok", "skipped"}
    assert {r["output"] for r in run3 if r["status"] == "skipped"} == set(stamps2)
    stamps3 = _stamps(out)
    assert {k: stamps3[k] for k in stamps2} == stamps2 and len(stamps3) == 7
    for r in run3:
        res = VideoResult.load(out / r["output"])
        assert res.num_frames == 4 and len(res) == 10
    assert not list(out.glob("**/.*.tmp*"))
    merged = json.loads((out / "results.json").read_text())
    assert sorted({e["video_id"] for e in merged}) == list(range(1, 8)) and len(merged) == 70


def test_worker_processes_match_in_process(seg, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        _clip(src / f"w{i}.mp4", 3, seed=30 + i)
    (src / "bad.mp4").write_bytes(b"")
    a = predict_folder(seg, src, tmp_path / "a", progress=False, cpus_per_worker=1)
    b = predict_folder(seg, src, tmp_path / "b", progress=False, workers=2, cpus_per_worker=1)
    assert [r["status"] for r in a.records] == [r["status"] for r in b.records] == ["failed", "ok", "ok"]
    for k in ("w0", "w1"):
        assert (tmp_path / "a" / k / "results.json").read_bytes() == (tmp_path / "b" / k / "results.json").read_bytes()
    assert (tmp_path / "a" / "results.json").read_bytes() == (tmp_path / "b" / "results.json").read_bytes()


def test_ray_backend_is_byte_identical_to_local(seg, mixed_folder, mixed_run, tmp_path):
    ray = pytest.importorskip("ray")
    local_out, local = mixed_run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = predict_folder(seg, mixed_folder, tmp_path / "ray", pattern="*", recursive=True, progress=False,
                                backend="ray", workers=2)
    finally:
        ray.shutdown()
    # same layout and fingerprints: the local backend resumes a Ray run (and vice versa)
    again = predict_folder(seg, mixed_folder, tmp_path / "ray", pattern="*", recursive=True, progress=False)
    assert [(r["output"], r["status"]) for r in remote.records] == [(r["output"], r["status"]) for r in local.records]
    for key in GOOD:
        assert (tmp_path / "ray" / key / "results.json").read_bytes() == \
            (local_out / key / "results.json").read_bytes()
    assert (tmp_path / "ray" / "results.json").read_bytes() == (local_out / "results.json").read_bytes()
    assert {r["output"] for r in again.skipped} == GOOD and not again.ok


def _square_clip(path: Path, n: int, h: int, w: int, x0: int):
    """A white square moving right on black; returns the clip and its (n, h, w) masks."""
    frames, masks = [], []
    for t in range(n):
        m = np.zeros((h, w), bool)
        m[8:24, x0 + 2 * t: x0 + 2 * t + 16] = True
        frames.append(np.where(m[..., None], 255, 0).astype(np.uint8).repeat(3, -1))
        masks.append(m)
    return write_video(path, frames, fps=5), np.stack(masks)


def test_merged_results_evaluate_against_synthetic_ground_truth(seg, tmp_path):
    evaluation = pytest.importorskip("dvis_sdk.evaluation")
    from pycocotools import mask as mask_util

    src = tmp_path / "src"
    src.mkdir()
    # names whose natural order (clip2 < clip10) differs from the plain string order; lengths and sizes differ so
    # that a result under the wrong video id could not pass the evaluator's checks
    specs = {"clip2": (3, 48, 64, 4), "clip10": (5, 40, 56, 10), "clip1": (4, 48, 48, 0)}
    gt = {"videos": [], "annotations": [], "categories": [{"id": i + 1, "name": f"c{i}"}
                                                          for i in range(seg.cfg.segmenter.num_classes)]}
    for vid, name in enumerate(["clip1", "clip2", "clip10"], start=1):
        n, h, w, x0 = specs[name]
        _, masks = _square_clip(src / f"{name}.mp4", n, h, w, x0)
        rles = []
        for m in masks:
            r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            rles.append({"size": r["size"], "counts": r["counts"].decode()})
        gt["videos"].append({"id": vid, "width": w, "height": h, "length": n,
                             "file_names": [f"{name}/{t:05d}.jpg" for t in range(n)]})
        gt["annotations"].append({"id": vid, "video_id": vid, "category_id": 1, "iscrowd": 0, "segmentations": rles,
                                  "areas": [float(m.sum()) for m in masks], "bboxes": [None] * n})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    s = predict_folder(seg, src, tmp_path / "out", progress=False)
    assert s.exit_code == 0
    videos = json.loads((tmp_path / "out" / "videos.json").read_text())["videos"]
    assert [Path(v["path"]).name for v in videos] == ["clip1.mp4", "clip2.mp4", "clip10.mp4"]
    metrics = evaluation.evaluate_ytvis(tmp_path / "gt.json", tmp_path / "out" / "results.json")
    assert isinstance(metrics, dict) and 0.0 <= metrics["AP"] <= 100.0
    # the same file with the ground-truth masks as predictions scores 100: ids, lengths and sizes line up
    merged = json.loads((tmp_path / "out" / "results.json").read_text())
    by_vid = {a["video_id"]: a for a in gt["annotations"]}
    first = {}
    for e in merged:
        first.setdefault(e["video_id"], e)
    perfect = [{**e, "segmentations": by_vid[vid]["segmentations"], "category_id": 1} for vid, e in first.items()]
    assert evaluation.evaluate_ytvis(gt, perfect)["AP"] == pytest.approx(100.0)
