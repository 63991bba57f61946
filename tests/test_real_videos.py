"""Videos as users have them: several codecs and containers, odd frame sizes, damaged bytes in the middle,
variable frame rates. Files are generated here: OpenCV's encoders for the codecs, PyAV (``av``, a dev extra) for
what OpenCV cannot write (odd sizes, which its writer crops to even; per-frame timestamps for variable rates)."""
from __future__ import annotations

import fractions
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from dvis_sdk.io import VideoReadError, open_video

H, W = 96, 128
BLOCK_H, BLOCK_W = 32, 25


def index_frame(i: int, h: int = H, w: int = W) -> np.ndarray:
    """A frame whose index (8 bits as black / white blocks) survives lossy coding."""
    f = np.full((h, w, 3), 40, np.uint8)
    for b in range(8):
        if (i >> b) & 1:
            r, c = divmod(b, 4)
            f[r * BLOCK_H:(r + 1) * BLOCK_H, c * BLOCK_W:(c + 1) * BLOCK_W] = 230
    return f


def read_index(frame: np.ndarray) -> int:
    return sum(1 << b for b in range(8)
               if frame[(b // 4) * BLOCK_H + BLOCK_H // 2, (b % 4) * BLOCK_W + BLOCK_W // 2].mean() > 135)


def cv2_write(path: Path, fourcc: str, frames, fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    if not wr.isOpened():
        wr.release()
        pytest.skip(f"this OpenCV build has no {fourcc} encoder for {path.suffix}")
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
    return path


def av_write(path: Path, codec: str, frames, pts, pix_fmt: str = "yuv420p",
             tb: fractions.Fraction = fractions.Fraction(1, 1000)) -> Path:
    """Encode with PyAV; frame ``i`` gets timestamp ``pts[i]`` in units of ``tb`` (milliseconds by default)."""
    av = pytest.importorskip("av", reason="PyAV (pip install av) writes odd sizes and per-frame timestamps")
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt, s.time_base = w, h, pix_fmt, tb
        s.codec_context.time_base = tb
        for f, t in zip(frames, pts):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = t, tb
            for pk in s.encode(vf):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path


CODECS = [(".avi", "MJPG"), (".avi", "XVID"), (".avi", "DIVX"), (".avi", "MP42"), (".avi", "MP43"),
          (".avi", "FMP4"), (".avi", "cvid"), (".mp4", "mp4v"), (".mp4", "avc1"), (".mov", "mp4v"),
          (".mkv", "mp4v"), (".mkv", "VP80"), (".avi", "FFV1"), (".avi", "IYUV")]


@pytest.mark.parametrize("suffix, fourcc", CODECS, ids=[f"{c}{s}" for s, c in CODECS])
def test_codecs_decode_every_frame_in_order(tmp_path, suffix, fourcc):
    n = 24
    path = cv2_write(tmp_path / f"clip_{fourcc}{suffix}", fourcc, [index_frame(i) for i in range(n)])
    src = open_video(path)
    assert (src.height, src.width) == (H, W) and src.fps == pytest.approx(25.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean file: no skipped-frame warning
        got = [read_index(f) for _, f in src]
    assert got == list(range(n))
    assert len(src) == n and src.length_is_exact


@pytest.mark.parametrize("w, h", [(317, 239), (161, 97), (33, 17)])
def test_odd_frame_sizes(tmp_path, w, h):
    """OpenCV's writer crops odd sizes to even, so the files come from PyAV (MJPEG 4:4:4 keeps odd sizes)."""
    frames = [np.ascontiguousarray(np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8))
              for i in range(5)]
    path = av_write(tmp_path / f"odd_{w}x{h}.avi", "mjpeg", frames, range(5), "yuvj444p", fractions.Fraction(1, 25))
    src = open_video(path)
    assert (src.width, src.height) == (w, h) and len(src) == 5
    got = [f for _, f in src]
    assert all(f.shape == (h, w, 3) and f.dtype == np.uint8 for f in got)
    assert all(np.abs(g.astype(int) - f.astype(int)).mean() < 30 for g, f in zip(got, frames))  # lossy, same image
    (_, chunk), = list(src.iter_chunks(8))
    assert chunk.shape == (5, h, w, 3)


def _damage(path: Path, n_bytes: int, where: float = 0.5) -> Path:
    data = bytearray(path.read_bytes())
    at = int(len(data) * where)
    data[at:at + n_bytes] = bytes(n_bytes)
    out = path.with_name("damaged_" + path.name)
    out.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("suffix, fourcc", [(".avi", "MJPG"), (".avi", "XVID"), (".mp4", "mp4v"), (".avi", "MP43")])
def test_damaged_bytes_in_the_middle_skip_frames_with_one_warning(tmp_path, suffix, fourcc):
    n = 60
    clean = cv2_write(tmp_path / f"c{suffix}", fourcc, [index_frame(i) for i in range(n)])
    path = _damage(clean, 2000)
    src = open_video(path)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        frames = [f for _, f in src]
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and "skipped" in msgs[0] and str(path) in msgs[0], msgs
    skipped = int(msgs[0].split("skipped ")[1].split(" ")[0])
    assert skipped >= 1 and len(frames) + skipped == n
    assert len(frames) > n // 2
    if fourcc == "MJPG":  # intra-only: every decoded frame is intact and they come in order
        idx = [read_index(f) for f in frames]
        assert idx == sorted(idx) and len(set(idx)) == len(idx) and set(idx) < set(range(n))
    assert len(src) == len(frames) and src.length_is_exact  # the pass made the length exact


def test_only_garbage_is_an_error_and_a_cut_file_gives_its_frames_with_one_warning(tmp_path):
    (tmp_path / "garbage.avi").write_bytes(b"RIFF" + bytes(5000))
    with pytest.raises(VideoReadError, match="corrupt or empty"):  # nothing decodes: the only error
        open_video(tmp_path / "garbage.avi")
    n = 60
    clean = cv2_write(tmp_path / "c.avi", "MJPG", [index_frame(i) for i in range(n)])
    cut = tmp_path / "cut.avi"
    cut.write_bytes(clean.read_bytes()[: clean.stat().st_size // 3])
    with pytest.warns(UserWarning, match="skipped") as rec:
        frames = [f for _, f in open_video(cut)]
    assert len(rec) == 1 and 0 < len(frames) < n
    assert [read_index(f) for f in frames] == list(range(len(frames)))  # the frames before the cut, in order
    assert f"skipped {n - len(frames)} frame(s)" in str(rec[0].message)


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_variable_frame_rate(tmp_path, suffix):
    """Frames at irregular times: every frame decodes once, in order, and timestamp() gives each frame's own time
    (MKV reports duration x average rate as its frame count, more than it holds: not an error)."""
    pts = [0, 40, 80, 200, 240, 600, 640, 680, 1000, 1040, 1500, 1540]
    path = av_write(tmp_path / f"vfr{suffix}", "mpeg4", [index_frame(i) for i in range(len(pts))], pts)
    src = open_video(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [(i, read_index(f)) for i, f in src]
    assert [g for _, g in got] == list(range(len(pts)))
    assert [round(src.timestamp(i) * 1000) for i, _ in got] == pts
    assert len(src) == len(pts) and src.length_is_exact
