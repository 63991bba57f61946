"""ONNX export + the ONNX Runtime backend: graphs are valid and dynamic, raw outputs and end-to-end results match
PyTorch, and ``VideoSegmenter.from_pretrained(EXPORT_DIR)`` runs through the same runner, streaming and batch code.

Each embedded model is exported ONCE, with the CLI (``dvis export NAME --format onnx --out DIR``), every PyTorch
weight file is then deleted from DIR, and the folder is shared by the tests of this module.

Tolerances: raw outputs |ort - torch| <= 1e-4 * max|torch| + 1e-4 (float32 graph vs eager, different kernels);
end to end: the same number of instances with the same track ids, each matched with mask IoU >= 0.99 and score
within 1e-3.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import dvis_sdk  # noqa: E402
from conftest import load_fixture  # noqa: E402
from dvis_sdk.evaluation.agreement import compare_results  # noqa: E402
from dvis_sdk.export import OnnxDVIS, OnnxOfflineDVIS, export_onnx, is_onnx_export  # noqa: E402
from dvis_sdk.inference.runner import forward_video, video_inference  # noqa: E402
from dvis_sdk.training.synthetic import SyntheticConfig, render_video  # noqa: E402

ONLINE, OFFLINE = "dvis-tiny-shapes", "dvis-tiny-shapes-offline"
ONLINE_GRAPHS = ["segmenter", "tracker_start", "tracker_step", "tracker_heads"]
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".pkl", ".ckpt")
# synthetic videos with seeds no training / evaluation split uses
VIDEOS = SyntheticConfig(width=200, height=120, num_frames=7)
SEEDS = {ONLINE: (97101, 97102), OFFLINE: (97201, 97202)}


def _video(t, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(t, 3, h, w), dtype=np.uint8)).float()


def _cli_export(name, out):
    from dvis_sdk.cli import main

    assert main(["export", name, "--format", "onnx", "--out", str(out)]) == 0
    removed = [p for p in out.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    for p in removed:  # the export writes none; delete any anyway: the backend must not need them
        p.unlink()
    assert not [p for p in out.rglob("*") if p.suffix in WEIGHT_SUFFIXES]
    return out


@pytest.fixture(scope="module")
def online_dir(tmp_path_factory):
    return _cli_export(ONLINE, tmp_path_factory.mktemp("online_onnx"))


@pytest.fixture(scope="module")
def offline_dir(tmp_path_factory):
    return _cli_export(OFFLINE, tmp_path_factory.mktemp("offline_onnx"))


@pytest.fixture(scope="module")
def torch_segs():
    return {n: dvis_sdk.VideoSegmenter.from_pretrained(n) for n in (ONLINE, OFFLINE)}


def _assert_raw_close(ref: dict, out: dict, keys):
    for k in keys:
        r, o = ref[k].detach().float().numpy(), out[k].detach().float().numpy()
        assert o.shape == r.shape, f"{k}: {o.shape} != {r.shape}"
        tol = 1e-4 * np.abs(r).max() + 1e-4
        err = np.abs(o - r).max()
        assert err <= tol, f"{k}: max error {err:.3g} > {tol:.3g}"


def _assert_same_video_result(ref, out):
    """Same instance count and track ids; every instance matched (track id, label) with IoU >= 0.99 and score
    within 1e-3. Returns (min IoU, max score difference)."""
    assert len(out.instances) == len(ref.instances) > 0
    assert [i.track_id for i in out.instances] == [i.track_id for i in ref.instances]
    by_key = {(i.track_id, i.label): i for i in out.instances}
    min_iou, max_diff = 1.0, 0.0
    for r in ref.instances:
        o = by_key[(r.track_id, r.label)]
        a, b = r.masks, o.masks
        union = np.logical_or(a, b).sum()
        iou = 1.0 if union == 0 else np.logical_and(a, b).sum() / union
        min_iou, max_diff = min(min_iou, iou), max(max_diff, abs(r.score - o.score))
    assert min_iou >= 0.99 and max_diff <= 1e-3, (min_iou, max_diff)
    return min_iou, max_diff


# ---- the folder ----------------------------------------------------------------------------------------------------
def test_export_folder_and_dynamic_axes(online_dir, offline_dir, torch_segs):
    import onnx

    for d, name, graphs, mode in ((online_dir, ONLINE, ONLINE_GRAPHS, "online"),
                                  (offline_dir, OFFLINE, ONLINE_GRAPHS + ["refiner"], "offline")):
        meta = json.loads((d / "config.json").read_text())
        assert meta["format"] == "dvis-onnx" and meta["opset"] >= 17 and is_onnx_export(d)
        assert sorted(meta["graphs"]) == sorted(graphs) and meta["mode"] == mode and meta["variant"] == "dvis++"
        assert meta["model_config"] == torch_segs[name].cfg.to_dict()
        for g in meta["graphs"].values():
            onnx.checker.check_model(str(d / g["file"]))
        assert sorted(p.name for p in d.iterdir()) == sorted(["config.json"] + [f"{g}.onnx" for g in graphs])
    images = onnx.load(str(online_dir / "segmenter.onnx"), load_external_data=False).graph.input[0]
    dims = [x.dim_param or x.dim_value for x in images.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(v, str) for v in (dims[0], dims[2], dims[3]))
    assert not is_onnx_export(online_dir / "missing")


def test_segmenter_and_tracker_steps_match_pytorch(online_dir, torch_segs):
    """Sizes the graph was not traced at (dynamic T, H, W); the tracker state across uneven windows."""
    model = torch_segs[ONLINE].model
    ort_model = OnnxDVIS(online_dir)
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        ref = model.segment(x)
    _assert_raw_close(ref, ort_model.segment(x.numpy()), ["pred_logits", "pred_masks", "pred_embds",
                                                          "pred_embds_without_norm", "mask_features"])
    x = model.preprocess(_video(6, 120, 200, seed=3))
    assert torch.equal(ort_model.preprocess(_video(6, 120, 200, seed=3)), x)
    state, ostate = None, None
    for s, e in ((0, 2), (2, 5), (5, 6)):
        with torch.no_grad():
            seg = model.segment(x[s:e])
            trk, state, idx = model.track(seg, state)
        otrk, ostate, oidx = ort_model.track(ort_model.segment(x[s:e]), ostate)
        assert torch.equal(oidx, idx)
        _assert_raw_close(trk, otrk, ["pred_logits", "pred_masks", "pred_embds"])
        _assert_raw_close({"o": state.last_output}, {"o": torch.from_numpy(ostate.last_output)}, ["o"])
    assert ostate.num_frames == state.num_frames == 6


@pytest.mark.parametrize("name", [ONLINE, OFFLINE])
def test_raw_outputs_through_the_runner(online_dir, offline_dir, torch_segs, name):
    """forward_video (the one window loop) on both backends: the same raw outputs, windows of 2."""
    d = online_dir if name == ONLINE else offline_dir
    ort_model = OnnxDVIS(d)
    assert isinstance(ort_model, OnnxOfflineDVIS) == (name == OFFLINE)
    x = torch_segs[name].model.preprocess(_video(5, 120, 200, seed=1))
    with torch.no_grad():
        ref = forward_video(torch_segs[name].model, x, 2)
    out = forward_video(ort_model, x, 2)
    keys = ["pred_logits", "pred_masks", "pred_cls"] + (["online_pred_logits", "aux_pred_cls"] if name == OFFLINE
                                                        else [])
    _assert_raw_close(ref, out, keys)
    agreement = compare_results(video_inference(torch_segs[name].model, _video(5, 120, 200, seed=1), window_size=2),
                                video_inference(ort_model, _video(5, 120, 200, seed=1), window_size=2))
    assert agreement.matched == agreement.total and agreement.min_iou >= 0.99 and agreement.max_score_diff <= 1e-3


# ---- the must-show check: VideoSegmenter on the export folder vs PyTorch, unseen synthetic videos --------------------
@pytest.mark.parametrize("name", [ONLINE, OFFLINE])
def test_videosegmenter_on_export_matches_pytorch(online_dir, offline_dir, torch_segs, name):
    d = online_dir if name == ONLINE else offline_dir
    seg = dvis_sdk.VideoSegmenter.from_pretrained(d)
    assert seg.backend == "onnxruntime" and torch_segs[name].backend == "pytorch"
    assert seg.mode == torch_segs[name].mode and seg.cfg.to_dict() == torch_segs[name].cfg.to_dict()
    for seed in SEEDS[name]:
        frames = render_video(seed, VIDEOS)[0]
        ref, out = torch_segs[name].predict(frames), seg.predict(frames)
        _assert_same_video_result(ref, out)
        assert out.meta["mode"] == ("offline" if name == OFFLINE else "online")
    # windows of 2 (the tracker state crosses windows) and offline chunks of 4 (two refiner passes)
    frames = render_video(SEEDS[name][0], VIDEOS)[0]
    _assert_same_video_result(torch_segs[name].predict(frames, window_size=2, chunk_size=4),
                              seg.predict(frames, window_size=2, chunk_size=4))


def test_stream_matches_pytorch(online_dir, torch_segs):
    frames = render_video(SEEDS[ONLINE][1], VIDEOS)[0]
    seg = dvis_sdk.VideoSegmenter.from_pretrained(online_dir)
    ref = list(torch_segs[ONLINE].stream(frames, window_size=3))
    out = list(seg.stream(frames, window_size=3))
    assert len(out) == len(ref) == VIDEOS.num_frames
    for r, o in zip(ref, out):
        assert [i.track_id for i in o.instances] == [i.track_id for i in r.instances]
        for a, b in zip(r.instances, o.instances):
            assert a.label == b.label and abs(a.score - b.score) <= 1e-3
            union = np.logical_or(a.mask, b.mask).sum()
            assert union == 0 or np.logical_and(a.mask, b.mask).sum() / union >= 0.99


@pytest.mark.parametrize("name", [ONLINE, OFFLINE])
def test_io_binding_gives_the_same_results(online_dir, offline_dir, name):
    """The I/O-bound path (tensors stay where the provider computes: on a GPU, device memory between graphs), run on
    the CPU provider: the same results as host numpy feeds, graph outputs handed over as tensors (DLPack)."""
    d = online_dir if name == ONLINE else offline_dir
    plain, bound = OnnxDVIS(d), OnnxDVIS(d, io_binding=True)
    assert not plain.io_binding and bound.io_binding
    frames = render_video(SEEDS[name][0], VIDEOS)[0]
    ref = dvis_sdk.VideoSegmenter(plain).predict(frames, window_size=3, chunk_size=4)
    out = dvis_sdk.VideoSegmenter(bound).predict(frames, window_size=3, chunk_size=4)
    assert [(i.track_id, i.label, i.score) for i in out.instances] == [(i.track_id, i.label, i.score)
                                                                       for i in ref.instances]
    assert all(a.rles == b.rles for a, b in zip(ref.instances, out.instances))


# ---- settings, spec, batch, errors -----------------------------------------------------------------------------------
def test_spec_round_trip_and_online_mode(offline_dir):
    seg = dvis_sdk.VideoSegmenter.from_pretrained(offline_dir, providers=["CPUExecutionProvider"], window_size=2)
    spec = seg.spec()
    assert spec["backend"] == "onnxruntime" and spec["providers"] == ["CPUExecutionProvider"]
    again = dvis_sdk.VideoSegmenter.from_spec(json.loads(json.dumps(spec)))
    assert again.backend == "onnxruntime" and again.spec() == spec and isinstance(again.model, OnnxOfflineDVIS)
    online = dvis_sdk.VideoSegmenter.from_pretrained(offline_dir, mode="online")
    assert online.mode == "online" and not hasattr(online.model, "refine") and "refiner" not in online.model.sessions
    assert dvis_sdk.VideoSegmenter.from_pretrained(ONLINE).spec()["backend"] == "pytorch"


def test_batch_runs_the_export(online_dir, tmp_path, torch_segs):
    from dvis_sdk.batch import predict_folder

    frames = render_video(SEEDS[ONLINE][0], SyntheticConfig(width=160, height=96, num_frames=4))[0]
    src = tmp_path / "videos" / "v0"
    src.mkdir(parents=True)
    from PIL import Image

    for i, f in enumerate(frames):
        Image.fromarray(f).save(src / f"{i:05d}.png")
    seg = dvis_sdk.VideoSegmenter.from_pretrained(online_dir)
    predict_folder(seg, tmp_path / "videos", tmp_path / "out", pattern="*")
    assert list((tmp_path / "out").rglob("*.json"))


@pytest.mark.slow
def test_batch_worker_processes_rebuild_the_backend(tmp_path):
    """Two worker processes rebuilt from spec() (backend + providers): the same results as in-process."""
    from PIL import Image

    from dvis_sdk.batch import predict_folder

    d = _cli_export(ONLINE, tmp_path / "export")
    for k in range(2):
        src = tmp_path / "videos" / f"v{k}"
        src.mkdir(parents=True)
        for i, f in enumerate(render_video(SEEDS[ONLINE][k], SyntheticConfig(width=160, height=96, num_frames=4))[0]):
            Image.fromarray(f).save(src / f"{i:05d}.png")
    seg = dvis_sdk.VideoSegmenter.from_pretrained(d)
    one = predict_folder(seg, tmp_path / "videos", tmp_path / "one", pattern="*", progress=False)
    two = predict_folder(seg, tmp_path / "videos", tmp_path / "two", pattern="*", workers=2, progress=False)
    assert [r["status"] for r in one.records] == [r["status"] for r in two.records] == ["ok", "ok"]
    merged = [sorted(json.loads((tmp_path / o / "results.json").read_text()),
                     key=lambda r: (r["video_id"], -r["score"])) for o in ("one", "two")]
    assert merged[0] == merged[1] and len(merged[0]) > 0


def test_cli_predict_with_backend(online_dir, tmp_path):
    from dvis_sdk.cli import main

    frames = render_video(SEEDS[ONLINE][0], SyntheticConfig(width=160, height=96, num_frames=3))[0]
    src = tmp_path / "clip"
    src.mkdir()
    from PIL import Image

    for i, f in enumerate(frames):
        Image.fromarray(f).save(src / f"{i:05d}.png")
    assert main(["predict", str(src), "--model", str(online_dir), "--backend", "onnxruntime", "--providers", "cpu",
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert list((tmp_path / "out").rglob("*.json"))


def test_clear_errors(online_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError, match="dvis export"):
        OnnxDVIS(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a DVIS ONNX export"):
        OnnxDVIS(tmp_path)
    with pytest.raises(ValueError, match="dvis export MODEL --format onnx"):
        dvis_sdk.VideoSegmenter.from_pretrained(tmp_path, backend="onnxruntime")
    with pytest.raises(ValueError, match="runs with backend='onnxruntime'"):
        dvis_sdk.VideoSegmenter.from_pretrained(online_dir, backend="pytorch")
    with pytest.raises(ValueError, match="not available in this onnxruntime build"):
        dvis_sdk.VideoSegmenter.from_pretrained(online_dir, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="online model"):
        OnnxDVIS(online_dir, mode="offline")
    with pytest.raises(ValueError, match="opset must be >= 17"):
        export_onnx(ONLINE, tmp_path / "x", opset=16)
    with pytest.raises(ValueError, match="already runs on onnxruntime"):
        export_onnx(dvis_sdk.VideoSegmenter.from_pretrained(online_dir), tmp_path / "x")
    with pytest.raises(ValueError, match="already an ONNX export"):
        export_onnx(str(online_dir), tmp_path / "x")
    with pytest.raises(ValueError, match="device='cpu'"):
        dvis_sdk.VideoSegmenter.from_pretrained(online_dir, dtype="bf16")
    from dvis_sdk.cli import main

    assert main(["export", "--config", "a.yaml", "--out", str(tmp_path)]) == 2
    assert "--config and --checkpoint go together" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'dvis_sdk\[onnx\]'"):
        dvis_sdk.VideoSegmenter.from_pretrained(online_dir)
    assert main(["export", ONLINE, "--out", str(tmp_path / "y")]) == 2
    assert main(["predict", str(tmp_path), "--model", str(online_dir), "--out", str(tmp_path / "o")]) == 2
    assert "dvis_sdk[onnx]" in capsys.readouterr().err


# ---- random-weight official-format models (slow) --------------------------------------------------------------------
def _fixture_model(name):
    fx = load_fixture(name)
    weights = fx.weights
    if name == "10_e2e_offline_vit_adapter":  # stores only the refiner; the rest is fixture 09's
        weights = {**load_fixture("09_e2e_online_vit_adapter").weights, **weights}
    return dvis_sdk.VideoSegmenter.from_official(fx.config, weights).model


def _assert_same_raw(model, d, frames, window_size):
    x = model.preprocess(frames)
    with torch.no_grad():
        ref = forward_video(model, x, window_size)
    out = forward_video(OnnxDVIS(d), x, window_size)
    _assert_raw_close(ref, out, ["pred_logits", "pred_masks", "pred_cls"])
    agreement = compare_results(video_inference(model, frames, window_size=window_size),
                                video_inference(OnnxDVIS(d), frames, window_size=window_size))
    assert agreement.matched == agreement.total and agreement.min_iou >= 0.99 and agreement.max_score_diff <= 1e-3
    return ref, out


@pytest.mark.slow
def test_offline_dvis_r50_parity(tmp_path):
    """Original-DVIS offline (refiner + frame_forward graphs), random official-format weights."""
    model = _fixture_model("13_e2e_offline_dvis_r50")
    d = export_onnx(model, tmp_path)
    assert sorted(json.loads((d / "config.json").read_text())["graphs"]) == sorted(
        ONLINE_GRAPHS + ["refiner", "frame_forward"])
    ref, out = _assert_same_raw(model, d, _video(5, 64, 96, seed=2), 2)
    _assert_raw_close(ref, out, ["online_pred_logits", "aux_pred_cls"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["10_e2e_offline_vit_adapter", "11_e2e_online_r50"])
def test_fixture_models_parity(tmp_path, name):
    """DVIS++ offline ViT-adapter and online R50 (random official-format weights, small sizes). The exporter
    freezes the ViT-Adapter's frame size: that export is made at the size it runs and refuses other sizes."""
    model = _fixture_model(name)
    vit = name.startswith("10_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = export_onnx(model, tmp_path, size=(64, 96))
    fixed = json.loads((d / "config.json").read_text())["graphs"]["segmenter"].get("fixed_size")
    assert fixed == ([64, 96] if vit else None)
    if vit:
        with pytest.raises(ValueError, match="--size 96x96"):
            OnnxDVIS(d).segment(np.zeros((1, 3, 96, 96), np.float32))
    _assert_same_raw(model, d, _video(4, 64, 96, seed=4), 2)


def test_export_works_on_a_copy():
    """The exportable implementations are chosen on a copy; the caller's model keeps its fast paths."""
    from dvis_sdk.export.onnx_export import _export_model
    from dvis_sdk.models.optimize import impl_choices

    model = dvis_sdk.VideoSegmenter.from_pretrained(ONLINE).model
    before = impl_choices(model)
    copy = _export_model(model)
    assert impl_choices(model) == before and {"fast"} <= {c.get("deform_attn") for c in before.values()}
    assert {c.get("deform_attn") for c in impl_choices(copy).values()} <= {None, "reference"}
    assert all(p is not q for p, q in zip(copy.parameters(), model.parameters()))
