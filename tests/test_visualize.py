"""Overlay rendering (fixed colour per track, options, file output and codec fallback) and 16-bit id-map export."""
from __future__ import annotations

import numpy as np
import pytest

from dvis_sdk import Instance, VideoResult
from dvis_sdk.io import VideoWriteError, open_video
from dvis_sdk.io import writer as io_writer
from dvis_sdk.visualize import (
    id_map_frames,
    load_id_map,
    render_frame,
    render_frames,
    render_video,
    save_id_maps,
    track_color,
)

T, H, W = 6, 48, 64
GRAY = 40


def moving_box(t: int, x0: int, y0: int = 22, size: int = 16) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y0 + size, x0 + 2 * t:x0 + 2 * t + size] = True
    return m


@pytest.fixture
def result() -> VideoResult:
    a = np.stack([moving_box(t, 2) for t in range(T)])
    b = np.stack([moving_box(t, 34) if t != 2 else np.zeros((H, W), bool) for t in range(T)])  # absent at t=2
    insts = [Instance(3, 0, 0.9, a, "cat"), Instance(300, 1, 0.6, b, "dog")]
    return VideoResult(insts, T, H, W, class_names=["cat", "dog"])


def frames() -> np.ndarray:
    return np.full((T, H, W, 3), GRAY, np.uint8)


def center(t: int, x0: int) -> tuple:
    return 22 + 12, x0 + 2 * t + 8  # well inside the box: away from contour and label


def test_colours_stay_fixed_per_track(result):
    alpha = 0.6
    out = list(render_frames(frames(), result, alpha=alpha))
    assert len(out) == T and all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in out)
    for track_id, x0, present in ((3, 2, range(T)), (300, 34, [0, 1, 3, 4, 5])):
        expected = np.round(GRAY * (1 - alpha) + np.array(track_color(track_id)) * alpha)
        for t in present:
            assert out[t][center(t, x0)].tolist() == expected.tolist(), (track_id, t)
    assert out[2][center(2, 34)].tolist() == [GRAY] * 3  # track 300 is absent in frame 2
    assert track_color(3) != track_color(300)
    assert (out[0][2, 2] == GRAY).all()  # background untouched


def test_render_options(result):
    f = frames()[0]
    plain = render_frame(f, result, 0, alpha=1.0, contours=False, show_labels=False, show_scores=False,
                         show_ids=False)
    expected = f.copy()
    for inst in result.instances:
        expected[inst.mask(0)] = track_color(inst.track_id)
    assert (plain == expected).all()  # with nothing but solid masks the output is exactly known
    labelled = render_frame(f, result, 0, alpha=1.0, contours=False)
    assert (labelled != plain).any()  # label text drawn
    with_ids = render_frame(f, result, 0, alpha=1.0, contours=False, show_ids=True)
    no_ids = render_frame(f, result, 0, alpha=1.0, contours=False, show_ids=False)
    assert (with_ids != no_ids).any()
    kept = render_frame(f, result, 0, score_threshold=0.7, show_labels=False, show_scores=False, show_ids=False)
    assert (kept[center(0, 34)] == GRAY).all() and (kept[center(0, 2)] != GRAY).any()  # the 0.6 one is skipped
    # a stream's FrameResult renders like the VideoResult at that index
    assert (render_frame(f, result.frame(3), alpha=0.5) == render_frame(f, result, 3, alpha=0.5)).all()


def test_best_score_on_top():
    m = np.zeros((1, H, W), bool)
    m[0, 10:30, 10:30] = True
    res = VideoResult([Instance(1, 0, 0.9, m), Instance(2, 0, 0.3, m)], 1, H, W)
    out = render_frame(frames()[0], res, 0, alpha=1.0, contours=False, show_labels=False, show_scores=False,
                       show_ids=False)
    assert out[20, 20].tolist() == list(track_color(1))
    assert next(id_map_frames(res))[20, 20] == 2  # track 1 + 1: the id map agrees


def test_render_errors(result):
    with pytest.raises(ValueError, match="frame is 10x10 but the result is 48x64"):
        render_frame(np.zeros((10, 10, 3), np.uint8), result, 0)
    with pytest.raises(IndexError, match="out of range"):
        render_frame(frames()[0], result, T)
    with pytest.raises(ValueError, match="alpha"):
        render_frame(frames()[0], result, 0, alpha=2)
    with pytest.raises(ValueError, match="uint8 RGB"):
        render_frame(frames()[0].astype(np.float32), result, 0)


def test_render_writes_a_video_that_decodes_back(result, tmp_path):
    path = render_video(result, frames(), tmp_path / "overlay.mp4", fps=5)
    assert path == tmp_path / "overlay.mp4"
    src = open_video(path)
    decoded = [f for _, f in src]
    assert len(decoded) == T and (src.height, src.width) == (H, W)
    expected = GRAY * 0.5 + np.array(track_color(3)) * 0.5
    y, x = center(4, 2)
    assert np.abs(decoded[4][y - 2:y + 2, x - 2:x + 2].reshape(-1, 3).mean(0) - expected).max() < 20  # lossy codec


def test_codec_fallback_and_clear_error(result, tmp_path, monkeypatch):
    monkeypatch.setitem(io_writer._WRITE_CODECS, ".mp4", ("ZZZZ",))  # an encoder that does not exist
    with pytest.warns(UserWarning, match="instead"):
        path = render_video(result, frames(), tmp_path / "overlay.mp4", fps=5)
    assert path == tmp_path / "overlay.avi" and len(list(open_video(path))) == T
    monkeypatch.setattr(io_writer, "_FALLBACK", (".avi", "YYYY"))
    with pytest.raises(VideoWriteError, match="no available video codec could write it"):
        render_video(result, frames(), tmp_path / "again.mp4", fps=5)


def test_id_maps_round_trip_as_uint16(result, tmp_path):
    paths = save_id_maps(result, tmp_path / "ids")
    assert [p.name for p in paths] == [f"{t:06d}.png" for t in range(T)]
    for t, p in enumerate(paths):
        got = load_id_map(p)
        assert got.dtype == np.uint16 and got.shape == (H, W)
        assert (got == result.frame(t).id_map()).all()
        assert got[center(t, 2)] == 4
        assert got[center(t, 34)] == (0 if t == 2 else 301)  # > 255: really 16-bit
    # the frame results of a stream are named by their index
    streamed = [result.frame(t) for t in range(T)][3:]
    for fr in streamed:
        fr.index += 100
    names = [p.name for p in save_id_maps(streamed, tmp_path / "stream")]
    assert names == ["000103.png", "000104.png", "000105.png"]


def test_id_map_errors(tmp_path):
    m = np.ones((1, 4, 4), bool)
    with pytest.raises(ValueError, match="uint16"):
        save_id_maps(VideoResult([Instance(70000, 0, 0.5, m)], 1, 4, 4), tmp_path)
    with pytest.raises(FileNotFoundError, match="cannot read id map"):
        load_id_map(tmp_path / "missing.png")
