"""Tests for dvis_sdk.io: sources, prefetching, writing and every documented error."""
from __future__ import annotations

import gc
import threading
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest

from dvis_sdk.io import VideoReadError, VideoWriteError, natural_sort_key, open_video, prefetch, write_video
from dvis_sdk.io import file_source as io_file_source
from dvis_sdk.io import writer as io_writer

H, W = 48, 64


# ---- helpers -----------------------------------------------------------------------------------------------------
def encode_index(i: int) -> np.ndarray:
    """A frame whose index survives lossy coding: 10 bits as black/white 12x16 blocks."""
    f = np.full((H, W, 3), 0, np.uint8)
    for b in range(10):
        if (i >> b) & 1:
            r, c = divmod(b, 5)
            f[r * 16:(r + 1) * 16, c * 12:(c + 1) * 12] = 255
    return f


def decode_index(f: np.ndarray) -> int:
    g = f.mean(-1)
    i = 0
    for b in range(10):
        r, c = divmod(b, 5)
        if g[r * 16 + 4:r * 16 + 12, c * 12 + 3:c * 12 + 9].mean() > 127:
            i |= 1 << b
    return i


def indexed_video(path: Path, n: int, fps: float = 10.0) -> Path:
    return write_video(path, (encode_index(i) for i in range(n)), fps)


def save_png(path: Path, rgb_or_raw: np.ndarray, raw: bool = False) -> Path:
    img = rgb_or_raw if raw else cv2.cvtColor(rgb_or_raw, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img)
    return path


def solid(rgb, h=H, w=W) -> np.ndarray:
    f = np.empty((h, w, 3), np.uint8)
    f[:] = rgb
    return f


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "dvis-video-prefetch" and t.is_alive()]


# ---- write + read round trips --------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_roundtrip_count_size_fps_and_rgb_order(tmp_path, suffix):
    frames = [solid((255, 0, 0))] * 4 + [solid((0, 0, 255))] * 4  # pure red, then pure blue (RGB)
    out = write_video(tmp_path / f"clip{suffix}", frames, fps=8)
    assert out == tmp_path / f"clip{suffix}" and out.stat().st_size > 0
    src = open_video(out)
    assert (src.kind, src.name, src.path) == ("file", "clip", out)
    assert (src.height, src.width) == (H, W) and src.fps == pytest.approx(8.0)
    assert len(src) == 8
    got = list(src)
    assert [i for i, _ in got] == list(range(8))
    for _, f in got:
        assert f.shape == (H, W, 3) and f.dtype == np.uint8 and f.flags.c_contiguous
    r, g, b = got[0][1].reshape(-1, 3).mean(0)
    assert r > 200 and g < 40 and b < 40, "a pure red frame must come back red (RGB order)"
    r, g, b = got[-1][1].reshape(-1, 3).mean(0)
    assert b > 200 and r < 40 and g < 40
    assert src.count_exact() == 8 and src.length_is_exact


def test_writer_accepts_source_pairs_and_pads_odd_sizes(tmp_path):
    odd = np.zeros((5, 47, 63, 3), np.uint8)
    with pytest.warns(UserWarning, match="odd"):
        out = write_video(tmp_path / "sub" / "odd.mp4", open_video(odd), fps=5)  # (index, frame) pairs, new dir
    src = open_video(out)
    assert (src.height, src.width, len(src)) == (48, 64, 5)


def test_writer_codec_fallback_to_avi(tmp_path, monkeypatch):
    monkeypatch.setitem(io_writer._WRITE_CODECS, ".mp4", ("ZZZZ",))  # an encoder that does not exist
    with pytest.warns(UserWarning, match="instead"):
        out = write_video(tmp_path / "clip.mp4", [solid((0, 255, 0))] * 3, fps=5)
    assert out == tmp_path / "clip.avi" and not (tmp_path / "clip.mp4").exists()
    assert len(list(open_video(out))) == 3


def test_writer_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "a.mp4", [], fps=5)
    with pytest.raises(ValueError, match="fps"):
        write_video(tmp_path / "a.mp4", [solid(0)], fps=None)
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "a.xyz", [solid(0)], fps=5)
    with pytest.raises(ValueError, match="grayscale"):
        write_video(tmp_path / "a.mp4", [np.zeros((H, W), np.uint8)], fps=5)
    with pytest.raises(ValueError, match="frame 1 is 32x32"):
        write_video(tmp_path / "a.mp4", [solid(0), solid(0, 32, 32)], fps=5)
    monkeypatch.setitem(io_writer._WRITE_CODECS, ".mp4", ("ZZZZ",))
    monkeypatch.setattr(io_writer, "_FALLBACK", (".avi", "YYYY"))
    with pytest.raises(VideoWriteError, match="no available video codec"):
        write_video(tmp_path / "b.mp4", [solid(0)], fps=5)


# ---- sampling: stride, max_frames, ranges ----------------------------------------------------------------------------
def test_stride_max_frames_and_time_range(tmp_path):
    path = indexed_video(tmp_path / "idx.mp4", 40, fps=10)
    src = open_video(path)
    assert [decode_index(f) for _, f in src] == list(range(40))

    src = open_video(path, stride=3, max_frames=5)
    assert len(src) == 5
    assert [decode_index(f) for _, f in src] == [0, 3, 6, 9, 12]

    src = open_video(path, start=1.0, end=2.5)  # seconds: frames with 1.0 <= i / 10 < 2.5
    assert len(src) == 15
    assert [decode_index(f) for _, f in src] == list(range(10, 25))
    assert src.source_index(2) == 12 and src.timestamp(2) == pytest.approx(1.2)

    src = open_video(path, start=1.0, stride=4)
    assert [decode_index(f) for _, f in src] == list(range(10, 40, 4)) and len(src) == 8

    src = open_video(path, end=100.0)  # past the end: just the whole video
    assert len(src) == 40 and len(list(src)) == 40
    with pytest.raises(VideoReadError, match="past the end"):
        open_video(path, start=10.0)
    with pytest.raises(ValueError, match="greater than start"):
        open_video(path, start=2.0, end=1.0)
    with pytest.raises(ValueError, match="stride"):
        open_video(path, stride=0)


def test_seek_matches_sequential_grab(tmp_path, monkeypatch):
    path = indexed_video(tmp_path / "long.mp4", 120, fps=10)
    seeked = [decode_index(f) for _, f in open_video(path, start=7.3, stride=2)]   # frame 73 >= _SEEK_MIN_FRAMES
    monkeypatch.setattr(io_file_source, "_SEEK_MIN_FRAMES", 10 ** 9)                       # force the grab path
    grabbed = [decode_index(f) for _, f in open_video(path, start=7.3, stride=2)]
    assert seeked == grabbed == list(range(73, 120, 2))


def test_iter_chunks_and_reiteration(tmp_path):
    arr = np.stack([encode_index(i) for i in range(10)])
    src = open_video(arr, stride=2)  # 0 2 4 6 8
    chunks = list(src.iter_chunks(2))
    assert [s for s, _ in chunks] == [0, 2, 4]
    assert [c.shape for _, c in chunks] == [(2, H, W, 3), (2, H, W, 3), (1, H, W, 3)]
    assert all(c.dtype == np.uint8 and c.flags.c_contiguous for _, c in chunks)
    assert [decode_index(f) for _, c in chunks for f in c] == [0, 2, 4, 6, 8]
    assert [i for i, _ in src] == [0, 1, 2, 3, 4]  # a source can be iterated again


# ---- folders, lists, arrays ------------------------------------------------------------------------------------------
def test_folder_natural_sort_and_ranges(tmp_path):
    names = ["frame10.png", "frame2.png", "frame1.PNG", "frame9.jpg", "frame100.bmp"]
    order = sorted(names, key=natural_sort_key)
    assert order == ["frame1.PNG", "frame2.png", "frame9.jpg", "frame10.png", "frame100.bmp"]
    for n in names:
        k = order.index(n)
        cv2.imwrite(str(tmp_path / n), encode_index(k))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"not an image")  # hidden files are ignored
    src = open_video(tmp_path)
    assert (src.kind, src.fps, len(src), src.height, src.width) == ("folder", None, 5, H, W)
    assert src.name == tmp_path.name
    assert [decode_index(f) for _, f in src] == [0, 1, 2, 3, 4]
    # start / end are frame indices for folders
    src = open_video(tmp_path, start=1, end=4, stride=2)
    assert len(src) == 2 and [decode_index(f) for _, f in src] == [1, 3]
    with pytest.raises(ValueError, match="frame index"):
        open_video(tmp_path, start=0.5)


def test_list_of_paths_and_single_image(tmp_path):
    p1 = save_png(tmp_path / "b.png", solid((255, 0, 0)))
    p2 = save_png(tmp_path / "a.png", solid((0, 255, 0)))
    src = open_video([p1, p2])  # explicit list: given order, not sorted
    frames = [f for _, f in src]
    assert frames[0][0, 0].tolist() == [255, 0, 0] and frames[1][0, 0].tolist() == [0, 255, 0]
    one = open_video(str(p2))
    assert len(one) == 1 and one.name == "a"


def test_list_and_array_inputs():
    arr = np.stack([encode_index(i) for i in range(6)])
    src = open_video(arr, start=1, end=5, max_frames=3)
    assert (src.kind, src.fps, len(src)) == ("array", None, 3)
    assert [decode_index(f) for _, f in src] == [1, 2, 3]
    lst = [encode_index(i) for i in range(4)]
    src = open_video(lst, stride=3)
    assert len(src) == 2 and [decode_index(f) for _, f in src] == [0, 3]
    # non-contiguous input still yields contiguous frames
    src = open_video(np.ascontiguousarray(arr[:, :, ::-1])[:, :, ::-1])
    assert all(f.flags.c_contiguous for _, f in src)


# ---- prefetch --------------------------------------------------------------------------------------------------------
def test_prefetch_runs_ahead_bounded_by_depth():
    produced = []
    ahead = threading.Event()

    def gen():
        for i in range(20):
            produced.append(i)
            if len(produced) >= 3:
                ahead.set()
            yield i

    it = prefetch(gen(), depth=2)
    assert next(it) == 0
    # the consumer is idle now, the producer keeps decoding in the background: that is the overlap
    assert ahead.wait(5.0), "producer did not run ahead of the consumer"
    time.sleep(0.2)
    # bounded: 2 queued + 1 in the producer's hand, beyond the one consumed
    assert len(produced) <= 1 + 2 + 1
    assert list(it) == list(range(1, 20))
    assert not prefetch_threads()


def test_prefetch_propagates_exceptions_after_good_items():
    def gen():
        yield 1
        yield 2
        raise VideoReadError("boom at frame 2")

    got = []
    with pytest.raises(VideoReadError, match="boom at frame 2"):
        for x in prefetch(gen()):
            got.append(x)
    assert got == [1, 2]
    assert not prefetch_threads()


def test_prefetch_early_close_stops_thread_and_closes_source():
    closed = threading.Event()
    closed_in = []

    def gen():
        try:
            for i in range(10 ** 6):
                yield i
        finally:
            closed_in.append(threading.current_thread().name)
            closed.set()

    it = prefetch(gen(), depth=3)
    assert [next(it), next(it)] == [0, 1]
    it.close()
    assert closed.wait(5.0) and closed_in == ["dvis-video-prefetch"]  # closed in the worker thread
    assert not prefetch_threads()


def test_prefetch_break_over_video_source(tmp_path):
    path = indexed_video(tmp_path / "v.mp4", 30)
    got = []
    for i, f in prefetch(open_video(path)):
        got.append(decode_index(f))
        if i == 4:
            break
    gc.collect()
    assert got == [0, 1, 2, 3, 4]
    for _ in range(50):  # join happens in the generator's finally; allow the GC-triggered close to finish
        if not prefetch_threads():
            break
        time.sleep(0.05)
    assert not prefetch_threads()


# ---- errors ----------------------------------------------------------------------------------------------------------
def test_error_missing_path(tmp_path):
    with pytest.raises(VideoReadError, match="no such file") as e:
        open_video(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(e.value)
    assert issubclass(VideoReadError, ValueError)


def test_error_corrupt_and_empty_files(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(VideoReadError, match="corrupt or empty video") as e:
        open_video(bad)
    assert str(bad) in str(e.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoReadError, match=r"corrupt or empty video.*0 bytes"):
        open_video(empty)


def test_error_folders_without_images(tmp_path):
    d = tmp_path / "empty_dir"
    d.mkdir()
    with pytest.raises(VideoReadError, match="no frame images.*empty") as e:
        open_video(d)
    assert str(d) in str(e.value)
    (d / "readme.txt").write_text("x")
    with pytest.raises(VideoReadError, match="no frame images.*readme.txt"):
        open_video(d)


def test_error_grayscale_and_rgba_images(tmp_path):
    gray = tmp_path / "gray"
    gray.mkdir()
    save_png(gray / "0.png", np.zeros((H, W), np.uint8), raw=True)
    with pytest.raises(VideoReadError, match="grayscale.*COLOR_GRAY2RGB") as e:
        open_video(gray)
    assert "0.png" in str(e.value)
    rgba = tmp_path / "rgba"
    rgba.mkdir()
    save_png(rgba / "0.png", np.zeros((H, W, 4), np.uint8), raw=True)
    with pytest.raises(VideoReadError, match=r"RGBA.*\[\.\.\., :3\]"):
        open_video(rgba)


def test_error_gray_rgba_nonuint8_arrays():
    with pytest.raises(VideoReadError, match="grayscale"):
        open_video([np.zeros((H, W), np.uint8)])
    with pytest.raises(VideoReadError, match="RGBA"):
        open_video(np.zeros((2, H, W, 4), np.uint8))
    with pytest.raises(VideoReadError, match="single frame or grayscale"):
        open_video(np.zeros((2, H, W), np.uint8))
    with pytest.raises(VideoReadError, match="float32.*255"):
        open_video(np.zeros((2, H, W, 3), np.float32))
    with pytest.raises(VideoReadError, match="frame 1 of the list has dtype uint16"):
        open_video([np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint16)])
    with pytest.raises(VideoReadError, match="frame 1 of the list is 32x16"):
        open_video([np.zeros((H, W, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)])
    with pytest.raises(VideoReadError, match="empty"):
        open_video([])
    with pytest.raises(TypeError, match="unsupported"):
        open_video(42)


def test_error_mixed_sizes_yields_good_frames_first(tmp_path):
    for i in range(3):
        save_png(tmp_path / f"f{i}.png", solid((i, 0, 0)))
    save_png(tmp_path / "f3.png", solid((3, 0, 0), h=30, w=40))
    save_png(tmp_path / "f4.png", solid((4, 0, 0)))
    src = open_video(tmp_path)
    got = []
    with pytest.raises(VideoReadError) as e:
        for _, f in src:
            got.append(f)
    assert len(got) == 3
    msg = str(e.value)
    assert "f3.png" in msg and "40x30" in msg and f"{W}x{H}" in msg and "f0.png" in msg


def test_error_undecodable_image_is_named(tmp_path):
    save_png(tmp_path / "f0.png", solid(0))
    (tmp_path / "f1.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    src = open_video(tmp_path)
    it = iter(src)
    next(it)
    with pytest.raises(VideoReadError, match=r"f1\.jpg: cannot decode image"):
        next(it)


def test_truncated_video_yields_its_good_frames_with_one_warning(tmp_path):
    rng = np.random.default_rng(0)  # noise frames make every MJPG frame big, so truncation hits mid-stream
    path = write_video(tmp_path / "t.avi", (rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(60)), 10)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:len(data) // 2])
    src = open_video(cut)
    assert len(src) == 60  # the container header still claims 60 frames
    with pytest.warns(UserWarning, match="could not be decoded") as rec:
        got = [i for i, _ in src]
    assert 10 < len(got) < 60 and got == list(range(len(got)))
    msg = str(rec[0].message)
    assert len(rec) == 1 and str(cut) in msg and f"skipped {60 - len(got)} frame(s)" in msg
    assert len(src) == len(got) and src.length_is_exact


# ---- memory ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_prefetch", [False, True])
def test_streaming_holds_a_bounded_number_of_frames(tmp_path, use_prefetch):
    n = 300
    path = indexed_video(tmp_path / "long.mp4", n, fps=25)
    src = open_video(path)
    depth = 2
    it = prefetch(src, depth=depth) if use_prefetch else iter(src)
    refs = []
    max_alive = 0
    for _, f in it:
        refs.append(weakref.ref(f))
        del f
        max_alive = max(max_alive, sum(r() is not None for r in refs))
    assert len(refs) == n
    # without prefetch only the frame just yielded is alive; with it, at most the queue + one in each thread
    assert max_alive <= (1 if not use_prefetch else depth + 2)
