"""The GPU path on CPU (issue 22, items 1-5 and Ray placement): faked GPUs (``torch.cuda.is_available`` /
``device_count`` / ``get_device_properties`` patched), a mocked ``onnxruntime.InferenceSession``, CPU autocast.

What a worker resolves for its own device is checked by building the worker's segmenter from the spec it receives,
with the model move to the faked GPU turned into a no-op (no CUDA kernel ever runs here)."""
from __future__ import annotations

import json
import queue
import sys
import threading
import types
from types import SimpleNamespace

import pytest
import torch

import dvis_sdk
from conftest import write_avi_folder
from dvis_sdk.runtime import native_bf16, resolve_dtype
from dvis_sdk.training.draws import Draws
from dvis_sdk.training.loop import Trainer, grad_scaler
from dvis_sdk.training.matcher import HungarianMatcher


# ---- faked devices ------------------------------------------------------------------------------------------------
def fake_gpus(monkeypatch, n=2, major=8):
    """``n`` CUDA devices of compute capability ``major``.0 as far as the package can ask."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    def props(index=0):
        if isinstance(index, torch.device):
            index = index.index or 0
        if int(index) >= n:
            raise AssertionError(f"no faked GPU {index}")
        return SimpleNamespace(major=major, minor=0, name=f"fake sm_{major}0", total_memory=16 << 30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", props)


@pytest.fixture
def no_cuda_moves(monkeypatch):
    """``Module.to(cuda)`` returns the module unchanged: a segmenter 'on' a faked GPU can be built and inspected."""
    real = torch.nn.Module.to

    def to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if target is not None and not isinstance(target, torch.dtype) and torch.device(target).type == "cuda":
            return self
        return real(self, *args, **kwargs)
    monkeypatch.setattr(torch.nn.Module, "to", to)


# ---- item 1: the matcher's costs do not depend on autocast ---------------------------------------------------------
def _matcher_inputs(seed=0, q=12, m=4, t=5, size=32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(q, 8, generator=g) * 3
    # large mask logits, as a trained model's: the point sums then exceed fp16's range (65504)
    masks = torch.randn(q, t, size, size, generator=g) * 12
    labels = torch.randint(0, 7, (m,), generator=g)
    tgt = (torch.rand(m, t, size * 2, size * 2, generator=g) > 0.5).float()
    return logits, masks, labels, tgt


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_matcher_costs_under_autocast_equal_fp32(dtype):
    logits, masks, labels, tgt = _matcher_inputs()

    def costs(autocast):
        matcher = HungarianMatcher(num_points=12544, draws=Draws(torch.Generator().manual_seed(1)))
        with torch.autocast("cpu", dtype=dtype, enabled=autocast):
            return matcher.cost_matrix(logits, masks, labels, tgt)
    ref, amp = costs(False), costs(True)
    assert amp.dtype == torch.float32 and torch.isfinite(amp).all()
    torch.testing.assert_close(amp, ref, rtol=1e-5, atol=0)
    # the whole match under autocast: a feasible assignment, the fp32 one
    matcher = HungarianMatcher(num_points=12544, draws=Draws(torch.Generator().manual_seed(1)))
    outputs = {"pred_logits": logits[None], "pred_masks": masks[None]}
    with torch.autocast("cpu", dtype=dtype):
        (rows, cols), = matcher(outputs, [{"labels": labels, "masks": tgt}])
    from scipy.optimize import linear_sum_assignment
    r, c = linear_sum_assignment(ref.numpy())
    assert rows.tolist() == r.tolist() and cols.tolist() == c.tolist()


# ---- item 2: "auto" precision per device --------------------------------------------------------------------------
@pytest.mark.parametrize("major,expected", [(7, "fp16"), (8, "bf16"), (9, "bf16")])
def test_auto_dtype_needs_native_bf16(monkeypatch, major, expected):
    fake_gpus(monkeypatch, n=2, major=major)
    assert native_bf16("cuda:1") is (major >= 8)
    assert resolve_dtype("auto", "cuda:1") == expected
    assert resolve_dtype("auto", "cpu") == "fp32" and resolve_dtype("fp16", "cpu") == "fp32"
    assert resolve_dtype("bf16", "cuda:0") == "bf16" and resolve_dtype("fp16", "cuda:0") == "fp16"
    # training: amp="auto" follows the same rule (torch.cuda.is_bf16_supported() says True on emulating GPUs)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    trainer = SimpleNamespace(device=torch.device("cuda:1"), cfg=SimpleNamespace(amp="auto"))
    assert Trainer._amp_dtype(trainer) == {"fp16": torch.float16, "bf16": torch.bfloat16}[expected]
    trainer.cfg.amp = "none"
    assert Trainer._amp_dtype(trainer) is None


def test_predict_dtype_auto(monkeypatch, tiny_model_dir, no_cuda_moves):
    cpu = dvis_sdk.VideoSegmenter.from_pretrained(tiny_model_dir, dtype="auto", optimize=False)
    assert cpu.dtype == "fp32" and cpu.spec()["dtype"] == "auto"
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        dvis_sdk.VideoSegmenter.from_pretrained(tiny_model_dir, dtype="fp8")
    fake_gpus(monkeypatch, n=1, major=7)
    v100 = dvis_sdk.VideoSegmenter.from_spec(dict(cpu.spec(), device="cuda:0"))
    assert v100.dtype == "fp16" and v100.device == torch.device("cuda:0")
    with pytest.warns(UserWarning, match="bf16 is emulated"):
        dvis_sdk.VideoSegmenter.from_spec(dict(cpu.spec(), device="cuda:0", dtype="bf16"))


# ---- item 3: the loss scaler on torch < 2.3 ------------------------------------------------------------------------
def test_grad_scaler_without_torch_amp_gradscaler(monkeypatch):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available, disabling" / deprecation of torch.cuda.amp
        assert isinstance(grad_scaler(), torch.amp.GradScaler)
        monkeypatch.delattr(torch.amp, "GradScaler")  # torch 2.1 / 2.2
        scaler = grad_scaler()
    assert type(scaler).__module__.startswith("torch.cuda.amp") or "cuda" in type(scaler).__module__
    assert hasattr(scaler, "scale") and hasattr(scaler, "unscale_")


# ---- item 4: the workers resolve the request for their own device ---------------------------------------------------
@pytest.fixture
def src(tmp_path):
    return write_avi_folder(tmp_path / "src", videos=2, frames=3)


class _Queue(queue.Queue):
    def cancel_join_thread(self):
        pass


class FakeWorkers:
    """A ``multiprocessing`` spawn context whose processes build the worker's segmenter from the spec they are
    given (in this process) and then answer every task with an ok record without running it."""

    def __init__(self):
        self.built = []

    def get_context(self, method):
        assert method == "spawn"
        return self

    def Queue(self):  # noqa: N802 - multiprocessing's name
        return _Queue()

    def Process(self, target, name, daemon, args):  # noqa: N802
        from dvis_sdk.batch.worker import new_record

        wid, spec, _threads, opts, task_q, msg_q, _parent = args
        owner = self

        class Proc:
            exitcode = 0

            def start(self):
                seg = dvis_sdk.VideoSegmenter.from_spec(spec)
                owner.built.append({"spec": dict(spec), "device": str(seg.device), "dtype": seg.dtype,
                                    "model": seg.model})
                msg_q.put(("ready", wid, 0))

                def serve():
                    while (task := task_q.get()) is not None:
                        msg_q.put(("take", wid, task.video_id))
                        msg_q.put(("done", wid, new_record(task, opts, "ok", frames=3, instances=0)))
                self.thread = threading.Thread(target=serve, daemon=True)
                self.thread.start()

            def is_alive(self):
                return self.thread.is_alive()

            def join(self, timeout=None):
                self.thread.join(timeout)

            def terminate(self):
                pass
        return Proc()


@pytest.fixture
def fake_workers(monkeypatch):
    import multiprocessing

    fake = FakeWorkers()
    monkeypatch.setattr(multiprocessing, "get_context", fake.get_context)
    return fake


def test_cli_batch_fp16_reaches_gpu_workers(monkeypatch, tiny_model_dir, src, tmp_path, fake_workers,
                                            no_cuda_moves, recwarn):
    from dvis_sdk.cli import main

    fake_gpus(monkeypatch, n=2, major=8)
    out = tmp_path / "out"
    rc = main(["batch", str(src), str(out), "--model", str(tiny_model_dir), "--devices", "cuda:0,cuda:1",
               "--dtype", "fp16", "--pattern", "*.avi", "--quiet", "--no-overlap"])
    assert rc == 0
    assert sorted((b["device"], b["spec"]["dtype"], b["dtype"]) for b in fake_workers.built) == [
        ("cuda:0", "fp16", "fp16"), ("cuda:1", "fp16", "fp16")]
    # the driver (a CPU feeder) says nothing misleading about fp16 falling back to fp32
    assert not [w for w in recwarn if "fp16" in str(w.message)]


# ---- item 5: ONNX Runtime on GPUs ----------------------------------------------------------------------------------
class FakeSession:
    """Records what ``onnxruntime.InferenceSession`` was asked for."""

    created = []

    def __init__(self, path, opts=None, providers=None):
        self.path, self.providers = path, providers
        FakeSession.created.append(self)


def _fake_export(folder, tiny_model_dir):
    """A DVIS ONNX export folder as ``dvis export`` writes it (config.json + graph files; the graphs are never
    run here)."""
    from dvis_sdk.export.graphs import graph_specs
    from dvis_sdk.export.onnx_export import FORMAT, FORMAT_VERSION

    seg = dvis_sdk.VideoSegmenter.from_pretrained(tiny_model_dir, optimize=False)
    cfg = seg.cfg
    folder.mkdir()
    graphs = {}
    for name, spec in graph_specs(seg.model).items():
        (folder / f"{name}.onnx").write_bytes(name.encode())
        graphs[name] = {"file": f"{name}.onnx", "inputs": spec["inputs"], "outputs": spec["outputs"]}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "variant": cfg.variant, "mode": cfg.mode,
            "graphs": graphs, "tracker": {"inverse_matching": False, "permute_first_reference": False},
            "input": {"pixel_mean": list(cfg.input.pixel_mean), "pixel_std": list(cfg.input.pixel_std),
                      "size_divisibility": 32}, "model_config": cfg.to_dict()}
    (folder / "config.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def fake_ort(monkeypatch):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    FakeSession.created = []
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    return FakeSession


def _options(session, provider):
    return next(o for p, o in (x if isinstance(x, tuple) else (x, {}) for x in session.providers) if p == provider)


def test_ort_cuda_device_maps_to_provider_device_id(monkeypatch, tiny_model_dir, tmp_path, fake_ort):
    from dvis_sdk.export import OnnxDVIS

    export = _fake_export(tmp_path / "export", tiny_model_dir)
    fake_gpus(monkeypatch, n=2)
    seg = dvis_sdk.VideoSegmenter.from_pretrained(export, device="cuda:1", window_size=4,
                                                  providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert isinstance(seg.model, OnnxDVIS) and seg.device == torch.device("cuda:1") and seg.model.io_binding
    assert seg.spec()["device"] == "cuda:1" and seg.dtype == "fp32"
    seg_graph = next(s for s in fake_ort.created if s.path.endswith("segmenter.onnx"))
    assert _options(seg_graph, "CUDAExecutionProvider") == {"device_id": 1}
    trt = _options(seg_graph, "TensorrtExecutionProvider")
    assert trt["device_id"] == 1 and trt["trt_fp16_enable"] is False and trt["trt_engine_cache_enable"]
    assert trt["trt_engine_cache_path"] == str(export / "trt_cache") and (export / "trt_cache").is_dir()
    # shape profiles cover every window the runner feeds: T from 1 to window_size
    assert trt["trt_profile_min_shapes"].startswith("images:1x3x32x32")
    assert trt["trt_profile_max_shapes"].startswith("images:4x3x")
    # fp16 through TensorRT only; bf16 never
    fp16 = dvis_sdk.VideoSegmenter.from_pretrained(export, device="cuda:0", dtype="fp16",
                                                   providers=["TensorrtExecutionProvider"])
    assert fp16.dtype == "fp16" and _options(fake_ort.created[-1], "TensorrtExecutionProvider")["trt_fp16_enable"]
    with pytest.raises(ValueError, match="TensorRT provider"):
        dvis_sdk.VideoSegmenter.from_pretrained(export, device="cuda:0", dtype="bf16")
    with pytest.raises(ValueError, match="put a GPU provider first"):
        dvis_sdk.VideoSegmenter.from_pretrained(export, device="cuda:0", providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="runs on 'cpu', not 'cuda:1'"):
        dvis_sdk.VideoSegmenter(OnnxDVIS(export), device="cuda:1")
    cpu = dvis_sdk.VideoSegmenter.from_pretrained(export)  # the default: CPU, no binding
    assert cpu.device.type == "cpu" and not cpu.model.io_binding and cpu.model.providers == ["CPUExecutionProvider"]


def test_ort_export_in_a_two_gpu_batch(monkeypatch, tiny_model_dir, src, tmp_path, fake_ort, fake_workers):
    from dvis_sdk.cli import main

    export = _fake_export(tmp_path / "export", tiny_model_dir)
    fake_gpus(monkeypatch, n=2)
    out = tmp_path / "out"
    rc = main(["batch", str(src), str(out), "--model", str(export), "--devices", "cuda:0,cuda:1", "--dtype", "fp16",
               "--providers", "tensorrt,cuda,cpu", "--pattern", "*.avi", "--quiet", "--no-overlap"])
    assert rc == 0
    workers = sorted(fake_workers.built, key=lambda b: b["device"])
    assert [(b["device"], b["dtype"]) for b in workers] == [("cuda:0", "fp16"), ("cuda:1", "fp16")]
    for i, b in enumerate(workers):
        sessions = list(b["model"].sessions.values())
        assert sessions and all(isinstance(s, FakeSession) for s in sessions)
        ids = {_options(s, p)["device_id"] for s in sessions for p in ("CUDAExecutionProvider",
                                                                        "TensorrtExecutionProvider")}
        assert ids == {i}, (b["device"], ids)
        assert b["model"].io_binding


# ---- item 10 (Ray): actors that cannot be placed -------------------------------------------------------------------
def _fake_ray(monkeypatch, placeable):
    """A ``ray`` module whose GPU actors are never placed when ``placeable`` is False."""
    ray = types.ModuleType("ray")
    exc = types.ModuleType("ray.exceptions")

    class GetTimeoutError(Exception):
        pass
    exc.GetTimeoutError = GetTimeoutError
    exc.RayActorError = type("RayActorError", (Exception,), {})
    exc.RayTaskError = type("RayTaskError", (Exception,), {})
    ray.exceptions = exc
    ray.actors = []
    ray.is_initialized = lambda: True
    ray.put = lambda x: x
    ray.kill = lambda a, no_restart=True: None
    ray.cluster_resources = lambda: {"CPU": 4.0, "GPU": 0.0}

    class Ref:
        def __init__(self, placed):
            self.placed = placed

    class Method:
        def __init__(self, actor):
            self.actor = actor

        def remote(self, *a):
            return Ref(self.actor.placed)

    class Actor:
        def __init__(self, spec, num_gpus):
            self.spec, self.placed = spec, placeable or not num_gpus
            self.ping = Method(self)

    def get(refs, timeout=None):
        if not all(r.placed for r in refs):
            raise GetTimeoutError("timed out")
        return [True for _ in refs]
    ray.get = get

    def remote(cls):
        class Options:
            def options(self, num_gpus=0, **kw):
                def make(spec, *rest):
                    a = Actor(spec, num_gpus)
                    ray.actors.append(a)
                    return a
                return SimpleNamespace(remote=make)
        return Options()
    ray.remote = remote
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setitem(sys.modules, "ray.exceptions", exc)
    return ray


def test_ray_gpu_actors_that_cannot_be_placed_fail_fast(monkeypatch, tiny_model_dir, tmp_path):
    import time

    from dvis_sdk.batch.discover import VideoTask
    from dvis_sdk.batch.local import Events
    from dvis_sdk.batch.ray_backend import run_ray
    from dvis_sdk.batch.worker import BatchOptions

    ray = _fake_ray(monkeypatch, placeable=False)
    with pytest.warns(UserWarning, match="fp16 is not supported on CPU"):
        seg = dvis_sdk.VideoSegmenter.from_pretrained(tiny_model_dir, dtype="fp16", optimize=False)
    tasks = [VideoTask(1, str(tmp_path / "a.mp4"), "a", "file")]
    opts = BatchOptions(out_dir=str(tmp_path), fingerprint="x")
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"Ray did not start 2 worker\(s\) within 5 s: 2 need a GPU each and the "
                                           r"cluster has 0 GPU"):
        run_ray(seg, tasks, opts, Events(), ["cuda:0", "cuda:1"], placement_timeout=5)
    assert time.perf_counter() - t0 < 60
    # the actors were asked for the GPU inside them ("cuda") with the request, not the driver's fp32
    assert [(a.spec["device"], a.spec["dtype"]) for a in ray.actors] == [("cuda", "fp16")] * 2
    # an actor whose constructor fails: one line, not a traceback from deep inside Ray
    monkeypatch.setattr(ray, "get", lambda refs, timeout=None: (_ for _ in ()).throw(
        ray.exceptions.RayActorError("The actor died because of an error raised in its creation task: CUDA error")))
    with pytest.raises(RuntimeError, match="a Ray worker could not start: The actor died"):
        run_ray(seg, tasks, opts, Events(), ["cuda:0"], placement_timeout=5)


def test_tensorrt_shape_profiles_cover_the_runner(tiny_model_dir, tmp_path):
    from dvis_sdk.export.providers import provider_options, shape_profiles

    meta = json.loads((_fake_export(tmp_path / "export", tiny_model_dir) / "config.json").read_text())
    assert shape_profiles(meta, "tracker_step", 5, 300) is None  # static per-frame graph
    heads = shape_profiles(meta, "tracker_heads", 5, 300)
    assert heads["trt_profile_min_shapes"].startswith("outputs:1x") and ",mask_features:1x" in heads[
        "trt_profile_min_shapes"]
    assert heads["trt_profile_max_shapes"].startswith("outputs:5x")
    meta["graphs"]["segmenter"]["fixed_size"] = [96, 160]  # a frozen-size export: its one size
    seg = shape_profiles(meta, "segmenter", 3, 300)
    assert seg == {f"trt_profile_{k}_shapes": f"images:{t}x3x96x160" for k, t in (("min", 1), ("opt", 3), ("max", 3))}
    assert provider_options(["CPUExecutionProvider"], meta, "segmenter", 1) == ["CPUExecutionProvider"]
