"""The GPU path, checked on CPU: host reads in ``segment`` / ``track``, DAQ state storage, the long-video mask
output path (background encoder, its out-of-memory back-off and partial results), ``torch.compile`` after an
OOM, ``is_oom``, the NaN guard before top-k, ``stream`` without per-element reads, device frame tensors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import dvis_sdk
from conftest import build_fixture_model, load_fixture
from dvis_sdk.inference import runner as runner_mod
from dvis_sdk.inference.encoder import MaskEncoder
from dvis_sdk.inference.handle import VideoHandle
from dvis_sdk.inference.runner import InferenceOOMError, ScoreAccumulator, WindowResult, is_oom
from dvis_sdk.masks import encode_masks, encode_masks_colmajor
from dvis_sdk.models.optimize import compile_module, optimize
from dvis_sdk.ops import postprocess
from dvis_sdk.ops.postprocess import select_topk
from dvis_sdk.ops.preprocess import resize_frame, resize_frames_tensor
from host_reads import HostReads

OOM = torch.cuda.OutOfMemoryError


def _images(fx, model, t=2):
    video = fx.io["in.video_uint8"].permute(0, 3, 1, 2).float()
    return model.preprocess(video)[:t]


# ---- item 7: host reads ---------------------------------------------------------------------------------------
def test_host_read_counter_counts_what_it_should():
    x = torch.ones(4)
    with HostReads() as r:
        x.tolist(), x[0].item(), bool(x[0] > 0), x.cpu(), x[x > 0], torch.nonzero(x), x.numpy(), x + 1
    assert [n for n, _ in r.where] == ["tolist", "item", "__bool__", "cpu", "__getitem__", "nonzero", "numpy"]


@pytest.mark.parametrize("name", ["11_e2e_online_r50", "09_e2e_online_vit_adapter"])
def test_segment_reads_nothing_back_and_track_once_per_window(name):
    fx, _, model = build_fixture_model(name)
    optimize(model)
    with torch.no_grad():
        images = _images(fx, model, 4)
        with HostReads() as r:
            seg = model.segment(images[:2])
        assert r.count == 0, r.where
        state = None
        for s in (0, 2):  # a fresh video, then a resumed one
            seg = model.segment(images[s:s + 2])
            with HostReads() as r:
                _, state, _ = model.track(seg, state)
            assert r.count <= 1, r.where


def test_vit_adapter_passes_spatial_shapes_as_ints():
    fx, _, model = build_fixture_model("09_e2e_online_vit_adapter")
    seen = []
    extractor = model.backbone.interactions[0].extractor.attn
    hook = extractor.register_forward_pre_hook(lambda m, args: seen.append(args[3]))
    with torch.no_grad():
        model.segment(_images(fx, model, 1))
    hook.remove()
    assert seen and all(not isinstance(s, torch.Tensor) and all(isinstance(v, int) for hw in s for v in hw)
                        for s in seen)


# ---- item 8: DAQ state --------------------------------------------------------------------------------------
def test_daq_state_rows_own_their_storage():
    fx, _, model = build_fixture_model("16_e2e_online_daq_r50")
    with torch.no_grad():
        images = _images(fx, model, 3)
        _, state, _ = model.track(model.segment(images), None)
    seqs = [s for s in state.sequences if s.masks]
    assert seqs
    for s in seqs:
        for x in (*s.masks, *s.embeds, *s.logits, *s.pos_embeds):
            assert x.untyped_storage().nbytes() == x.numel() * x.element_size()


# ---- item 9: torch.compile survives an out-of-memory error ---------------------------------------------------
def test_compiled_call_oom_propagates_and_keeps_compile(monkeypatch):
    calls = {"compiled": 0}

    def fake_compile(fn, **_):
        def compiled(*a, **k):
            calls["compiled"] += 1
            if calls["compiled"] == 1:
                raise OOM("CUDA out of memory. Tried to allocate 2.00 GiB")
            return fn(*a, **k) + 100
        return compiled
    monkeypatch.setattr(torch, "compile", fake_compile)
    m = torch.nn.Identity()
    compile_module(m)
    with pytest.raises(OOM):  # the caller's back-off handles it
        m(torch.zeros(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "falling back to eager"
        assert float(m(torch.zeros(1))) == 100.0  # still the compiled path
    assert m.forward._dvis_compile_state["failed"] is False
    # a real compilation failure still falls back to eager
    monkeypatch.setattr(torch, "compile", lambda fn, **_: (lambda *a, **k: (_ for _ in ()).throw(ValueError("x"))))
    m2 = torch.nn.Identity()
    compile_module(m2)
    with pytest.warns(RuntimeWarning, match="falling back to eager"):
        assert float(m2(torch.ones(1))) == 1.0


# ---- item 10 ---------------------------------------------------------------------------------------------------
def test_is_oom_knows_cuda_library_allocation_failures():
    assert is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert is_oom(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert is_oom(torch.cuda.OutOfMemoryError("x")) and is_oom(MemoryError())
    assert not is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED"))
    assert not is_oom(ValueError("out of memory"))  # only runtime errors are read


def test_non_finite_logits_never_give_nan_scores():
    logits = torch.randn(6, 4)
    logits[1, 0] = float("inf")
    logits[2] = float("nan")
    scores, labels, queries = select_topk(logits, 24)
    assert torch.isfinite(scores).all()
    assert set(queries[scores == 0].tolist()) >= {1, 2}
    finite = select_topk(logits[[0, 3, 4, 5]], 12)[0]  # the finite queries: unchanged, ranked first
    torch.testing.assert_close(finite.sort().values, select_topk(logits, 24)[0].sort().values[-12:])
    acc = ScoreAccumulator(6, keep_masks=False)
    acc.add(WindowResult(0, logits[None], torch.zeros(6, 1, 2, 2), (8, 8), (8, 8), (8, 8)))
    with pytest.warns(RuntimeWarning, match="non-finite"):
        s, _, _ = acc.select(5)
    assert all(np.isfinite(s))


def test_stream_reads_scores_once_per_window_and_never_encodes_or_decodes(monkeypatch):
    from pycocotools import mask as mask_util

    fx = load_fixture("11_e2e_online_r50")
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, fx.weights, window_size=2)
    video = np.random.default_rng(0).integers(0, 256, size=(6, 64, 96, 3), dtype=np.uint8)
    ref = list(seg.stream(video, score_threshold=0.2))
    for name in ("encode", "decode"):
        monkeypatch.setattr(mask_util, name, lambda *a, _n=name: pytest.fail(f"stream called pycocotools {_n}"))
    with HostReads() as r:
        frames = list(seg.stream(video, score_threshold=0.2))
    monkeypatch.undo()
    names = [n for n, _ in r.where]
    assert not set(names) & {"__float__", "__int__", "__index__", "item", "__bool__"}, r.where
    assert names.count("tolist") <= 2 * 3  # per window: scores / labels / order at once, the active test
    assert len(frames) == 6 and any(f.instances for f in frames)
    for a, b in zip(frames, ref):
        assert [(i.track_id, i.label, i.score) for i in a.instances] == \
            [(i.track_id, i.label, i.score) for i in b.instances]
    # the masks are those predict encodes for the same queries (same up-sampling, no round trip)
    res = seg.predict(video)
    by_id = {i.track_id: i for i in res.instances}
    checked = 0
    for f in frames:
        for fi in f.instances:
            if fi.track_id in by_id:
                np.testing.assert_array_equal(fi.mask, by_id[fi.track_id].mask(f.index))
                checked += 1
    assert checked


def test_frames_on_a_device_stay_there_and_are_resized_there():
    # the meta device stands in for a GPU: any copy to the host or numpy conversion would fail
    frames = torch.empty((4, 3, 96, 128), dtype=torch.uint8, device="meta")
    handle = VideoHandle(frames, min_size=48, max_size=1000, pin=True, window_size=3)
    out = list(handle.windows())
    assert [x.device.type for _, x in out] == ["meta", "meta"] and tuple(out[0][1].shape) == (3, 3, 48, 64)
    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 90, 120, 3), dtype=np.uint8)
    dev = resize_frames_tensor(torch.from_numpy(rgb).permute(0, 3, 1, 2), (60, 80)).permute(0, 2, 3, 1).numpy()
    ref = np.stack([resize_frame(f, (60, 80)) for f in rgb])
    assert np.abs(dev.astype(int) - ref).max() <= 1  # PIL's filter, up to its fixed-point rounding


# ---- item 6: the long-video output path --------------------------------------------------------------------
def test_colmajor_encoding_equals_encode_masks():
    m = np.random.default_rng(0).random((4, 13, 17)) > 0.7
    m[1] = False
    assert encode_masks_colmajor(np.ascontiguousarray(m.transpose(0, 2, 1))) == encode_masks(m)


def _window(seed, q=5, t=3, start=0):
    g = torch.Generator().manual_seed(seed)
    return WindowResult(start, torch.randn(t, q, 4, generator=g), torch.randn(q, t, 8, 12, generator=g) - 0.5,
                        (32, 48), (30, 45), (45, 70))


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_background_encoder_gives_the_synchronous_result(workers):
    windows = [_window(i, start=3 * i) for i in range(5)]
    ref = ScoreAccumulator(5, buffer_bytes=0)
    for w in windows:
        ref.add(w)
    with MaskEncoder(torch.device("cpu"), workers=workers, max_pending=2) as enc:
        acc = ScoreAccumulator(5, buffer_bytes=0, encoder=enc)
        for w in windows:
            acc.add(w)
            assert len(acc.pending) <= 2  # back-pressure bounds what waits
        assert acc.masks_of([0, 3]) == ref.masks_of([0, 3])
    for q in range(5):  # and both equal one whole-video encoding
        assert ref.rles[q] == sum((w.encode([q])[q] for w in windows), [])


def _seg_and_video():
    fx = load_fixture("11_e2e_online_r50")
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, fx.weights, window_size=2)
    return seg, np.random.default_rng(1).integers(0, 256, size=(6, 64, 96, 3), dtype=np.uint8)


def _masks(res):
    return [(i.track_id, i.label, round(i.score, 6), i.rles) for i in res.instances]


@pytest.mark.parametrize("where", ["runner", "postprocess"])
@pytest.mark.parametrize("buffer_mb", [0, 1024])
def test_oom_in_mask_upsampling_backs_off_with_the_same_result(monkeypatch, where, buffer_mb):
    seg, video = _seg_and_video()
    seg.mask_buffer_mb = buffer_mb
    ref = seg.predict(video)
    real = postprocess.upsample_masks
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OOM("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real(*args, **kwargs)
    monkeypatch.setattr(runner_mod if where == "runner" else postprocess, "upsample_masks", flaky)
    with pytest.warns(RuntimeWarning, match="out of memory up-sampling the masks"):
        res = seg.predict(video)
    assert _masks(res) == _masks(ref)


def test_oom_in_mask_upsampling_that_never_fits_keeps_the_frames_done(monkeypatch):
    seg, video = _seg_and_video()
    seg.mask_buffer_mb = 0  # every window encoded as it comes
    ref = seg.predict(video)
    real = postprocess.upsample_masks

    def fails_after_frame_4(mask_logits, *args, **kwargs):
        if fails_after_frame_4.window >= 2:
            raise OOM("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real(mask_logits, *args, **kwargs)
    fails_after_frame_4.window = 0
    real_encode = WindowResult.encode

    def counting_encode(self, *a, **k):
        fails_after_frame_4.window = self.start // 2
        return real_encode(self, *a, **k)
    monkeypatch.setattr(WindowResult, "encode", counting_encode)
    monkeypatch.setattr(runner_mod, "upsample_masks", fails_after_frame_4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(InferenceOOMError, match="one query and one frame") as info:
            seg.predict(video)
    msg = str(info.value)
    assert "\n" not in msg and "frames 4-5" in msg
    partial = info.value.partial  # every frame done, masks of the frames encoded (those of the full result)
    assert partial is not None and partial.num_frames == 6 and partial.meta["masks_encoded_frames"] == 4
    assert [(i.track_id, i.label) for i in partial.instances] == [(i.track_id, i.label) for i in ref.instances]
    for a, b in zip(partial.instances, ref.instances):
        assert a.rles[:4] == b.rles[:4] and a.rles[4:] == [None, None]


def test_mask_upsampling_moves_to_the_cpu_when_one_query_does_not_fit_on_the_device():
    from dvis_sdk.inference.encoder import encode_with_backoff

    seen = []

    def job(query_chunk, frame_chunk, host_buffer, on_cpu):
        seen.append((query_chunk, frame_chunk, on_cpu))
        if not on_cpu:
            raise OOM("CUDA out of memory")
        return "encoded"
    out, notes = encode_with_backoff(job, torch.device("cuda", 0), "frames 0-4", host_buffer=lambda n: None)
    assert out == "encoded" and seen[-1] == (8, 16, True) and seen[-2] == (1, 1, False)
    assert "on the CPU" in notes[-1] and len(notes) == len(seen) - 1


needs_cuda = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _gpu(fn):
    for mark in needs_cuda:
        fn = mark(fn)
    return fn


@_gpu
@pytest.mark.parametrize("name", ["11_e2e_online_r50", "09_e2e_online_vit_adapter"])
def test_cuda_segment_never_synchronises_and_track_once(name):
    fx, _, model = build_fixture_model(name)
    model = optimize(model.cuda())
    with torch.no_grad():
        images = model.preprocess(fx.io["in.video_uint8"].permute(0, 3, 1, 2).float().cuda())[:4]
        model.segment(images[:2])  # warm-up (cuDNN algorithm choice, lazy initialisation)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            seg = model.segment(images[:2])
        finally:
            torch.cuda.set_sync_debug_mode(0)
        state = None
        for s in (0, 2):
            seg = model.segment(images[s:s + 2])
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    _, state, _ = model.track(seg, state)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            assert sum("synchroniz" in str(w.message) for w in caught) <= 1, [str(w.message) for w in caught]


@_gpu
def test_cuda_predict_output_path_and_device_frames():
    fx = load_fixture("11_e2e_online_r50")
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, fx.weights, device="cuda", window_size=2)
    video = np.random.default_rng(1).integers(0, 256, size=(6, 64, 96, 3), dtype=np.uint8)
    buffered = seg.predict(video)
    seg.mask_buffer_mb = 0  # every window encoded in the background as it comes
    streamed = seg.predict(video)
    assert streamed.meta["masks_encoded_per_window"] and _masks(streamed) == _masks(buffered)
    on_device = seg.predict(torch.from_numpy(video).permute(0, 3, 1, 2).cuda(), resize=False)
    on_host = seg.predict(torch.from_numpy(video).permute(0, 3, 1, 2), resize=False)
    assert _masks(on_device) == _masks(on_host)


@_gpu
def test_cuda_encoder_equals_cpu():
    windows = [_window(i, start=3 * i) for i in range(3)]
    cpu = ScoreAccumulator(5, buffer_bytes=0)
    with MaskEncoder(torch.device("cuda"), workers=2) as enc:
        gpu = ScoreAccumulator(5, buffer_bytes=0, encoder=enc)
        for w in windows:
            cpu.add(w)
            gpu.add(WindowResult(w.start, w.logits.cuda(), w.mask_logits.cuda(), w.padded_size, w.image_size,
                                 w.output_size))
        assert gpu.masks_of(list(range(5))) == cpu.masks_of(list(range(5)))


# ---- item 11 and the benchmark scripts -----------------------------------------------------------------------
BENCH = __import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench_path():
    import sys

    sys.path.insert(0, str(BENCH))
    try:
        yield
    finally:
        sys.path.remove(str(BENCH))


def test_benchmark_scripts_share_one_helper_module_without_cycles():
    import ast

    local = {p.stem for p in BENCH.glob("*.py")}
    graph = {}
    for p in BENCH.glob("*.py"):
        tree = ast.parse(p.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        graph[p.stem] = names & local - {p.stem}
        assert len(p.read_text().splitlines()) < 500, p.name
    assert not graph["common"]  # the helpers import no script

    def reach(start, node, seen):
        for nxt in graph[node]:
            assert nxt != start, f"import cycle through {start}"
            if nxt not in seen:
                seen.add(nxt)
                reach(start, nxt, seen)
    for name in graph:
        reach(name, name, set())
    assert "common" in graph["speed"] and "common" in graph["onnx_speed"] and "speed" not in graph["onnx_speed"]


def test_speed_end_to_end_is_predict(bench_path, capsys):
    import speed

    r = speed.main(["--config", "tiny", "--frames", "4", "--window", "2", "--no-flops", "--warmup", "0",
                    "--mask-buffer-mb", "0"])
    assert r["end_to_end_fps"] > 0 and r["model_loop_fps"] > 0 and "predict" in r["end_to_end"]
    assert r["predict"]["masks_encoded_per_window"] is True and r["predict"]["model_size"]
    assert "VideoSegmenter.predict" in capsys.readouterr().out


def test_precision_warms_up_repeats_syncs_the_device_in_use_and_uses_true_fp32(bench_path, monkeypatch):
    import precision

    calls, synced = [], []
    monkeypatch.setattr(precision, "video_inference", lambda model, video: calls.append(
        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)) or "out")
    monkeypatch.setattr(precision, "sync", lambda device: synced.append(device))
    dev = torch.device("cpu")
    before = (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())
    with precision.true_fp32():
        out, _ = precision._run(torch.nn.Identity(), torch.zeros(1), dev, "fp32")
    assert out == "out" and len(calls) == 3 and calls[0] == (False, False)  # 1 warm-up + 2 timed, TF32 off
    assert synced and all(d is dev for d in synced)
    assert (torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()) == before  # restored
    args = [a for a in precision.main.__code__.co_consts if isinstance(a, str)]
    assert any("untimed runs" in a for a in args)


def test_output_path_benchmark_smoke(bench_path):
    import output_path

    r = output_path.main(["--queries", "2", "--window", "2", "--frames", "4", "--repeat", "1"])
    assert all(e["query_frames_per_s"] > 0 for e in r["encode"])
    assert [e["size"] for e in r["encode"]] == ["480p", "1080p"]
    p = r["predict"]
    assert p["encoded_per_window"] and 0 <= p["wait_share"] <= 1 and p["wait_s"] <= p["wall_s"]
