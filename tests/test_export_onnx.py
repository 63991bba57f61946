"""ONNX export + ONNX Runtime model: graphs are valid and dynamic, raw outputs and end-to-end results match PyTorch.

Tolerances: raw outputs |ort - torch| <= 1e-4 * max|torch| + 1e-4 (float32 graph vs eager, different kernels);
end to end (official post-processing on both): the same instances (query, label), mask IoU >= 0.99, scores
within 1e-3 and identical tracker indices.
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
from dvis_sdk.export import OnnxDVIS, export_onnx, is_onnx_export  # noqa: E402
from dvis_sdk.inference.postprocess import postprocess_vis  # noqa: E402
from dvis_sdk.perf import compare_results  # noqa: E402


def _video(t, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(t, 3, h, w), dtype=np.uint8)).float()


def _assert_raw_close(ref: dict, out: dict, keys):
    for k in keys:
        r = ref[k].detach().float().numpy()
        assert out[k].shape == r.shape, f"{k}: {out[k].shape} != {r.shape}"
        tol = 1e-4 * np.abs(r).max() + 1e-4
        err = np.abs(out[k] - r).max()
        assert err <= tol, f"{k}: max error {err:.3g} > {tol:.3g}"


def _assert_same_result(model, onnx_model, frames, window_size=None):
    """Official post-processing on both backends' raw outputs: same instances, IoU >= 0.99, scores within 1e-3."""
    with torch.no_grad():
        x = model.preprocess(frames)
        ref = model(x, window_size)
    xo = onnx_model.preprocess(frames)
    np.testing.assert_array_equal(xo, x.numpy())
    out = onnx_model.forward(xo, window_size)
    size = tuple(frames.shape[-2:])
    post = []
    for raw in (ref, {k: torch.from_numpy(v) for k, v in out.items()}):
        post.append(postprocess_vis(raw["pred_cls"], raw["pred_masks"][0], tuple(x.shape[-2:]), size, size,
                                    model.cfg.test.max_num, aux_pred_cls=raw.get("aux_pred_cls")))
    agreement = compare_results(post[0], post[1])
    assert agreement.matched == agreement.total == len(post[1].ids)
    assert agreement.min_iou >= 0.99 and agreement.max_score_diff <= 1e-3 and agreement.same_top
    return ref, out


def _check_dir(d, names):
    import onnx

    meta = json.loads((d / "config.json").read_text())
    assert meta["format"] == "dvis-onnx" and meta["opset"] >= 17
    assert sorted(meta["graphs"]) == sorted(names)
    for g in meta["graphs"].values():
        onnx.checker.check_model(str(d / g["file"]))
    assert not list(d.glob("*.safetensors")) and not list(d.glob("*.pth"))
    return meta


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    seg = dvis_sdk.VideoSegmenter.from_pretrained("dvis-tiny-shapes")
    d = export_onnx(seg, tmp_path_factory.mktemp("tiny_onnx"))
    return seg.model, d


def test_export_folder_and_dynamic_axes(tiny):
    model, d = tiny
    meta = _check_dir(d, ["segmenter", "tracker_start", "tracker_step", "tracker_heads"])
    assert meta["mode"] == "online" and meta["variant"] == "dvis++"
    assert is_onnx_export(d) and not is_onnx_export(d / "missing")
    assert dvis_sdk.DVISConfig.from_dict(meta["model_config"]).to_dict() == model.cfg.to_dict()
    import onnx

    images = onnx.load(str(d / "segmenter.onnx"), load_external_data=False).graph.input[0]
    dims = [x.dim_param or x.dim_value for x in images.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(v, str) for v in (dims[0], dims[2], dims[3]))


@pytest.mark.parametrize("shape", [(3, 64, 96), (2, 96, 160)])
def test_segmenter_parity_at_other_sizes(tiny, shape):
    """Sizes the graph was not traced at (dynamic T, H, W)."""
    model, d = tiny
    ort_model = OnnxDVIS(d)
    x = torch.randn(shape[0], 3, shape[1], shape[2])
    with torch.no_grad():
        ref = model.segment(x)
    _assert_raw_close(ref, ort_model.segment(x.numpy()), ["pred_logits", "pred_masks", "pred_embds",
                                                          "pred_embds_without_norm", "mask_features"])


def test_tracker_state_carries_across_windows(tiny):
    model, d = tiny
    ort_model = OnnxDVIS(d)
    x = model.preprocess(_video(6, 120, 200, seed=3))
    state, ostate = None, None
    for s in (0, 2, 5):  # uneven windows: 2, 3, 1 frames
        win = x[s:{0: 2, 2: 5, 5: 6}[s]]
        with torch.no_grad():
            seg = model.segment(win)
            trk, state, idx = model.track(seg, state)
        otrk, ostate, oidx = ort_model.track(ort_model.segment(win.numpy()), ostate)
        np.testing.assert_array_equal(oidx, idx.numpy())
        _assert_raw_close(trk, otrk, ["pred_logits", "pred_masks", "pred_embds"])
        _assert_raw_close({"o": state.last_output}, {"o": ostate.last_output}, ["o"])
    assert ostate.num_frames == state.num_frames == 6


@pytest.mark.parametrize("window_size", [None, 2])
def test_end_to_end_same_instances(tiny, window_size):
    model, d = tiny
    ref, out = _assert_same_result(model, OnnxDVIS(d), _video(7, 120, 200, seed=1), window_size)
    _assert_raw_close(ref, out, ["pred_logits", "pred_masks", "pred_cls"])


def test_not_an_export_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvis export"):
        OnnxDVIS(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="not a DVIS ONNX export"):
        OnnxDVIS(tmp_path)


def test_low_opset_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="opset"):
        export_onnx("dvis-tiny-shapes", tmp_path, opset=16)


def _fixture_model(name):
    fx = load_fixture(name)
    weights = fx.weights
    if name == "10_e2e_offline_vit_adapter":  # stores only the refiner; the rest is fixture 09's
        weights = {**load_fixture("09_e2e_online_vit_adapter").weights, **weights}
    return dvis_sdk.VideoSegmenter.from_official(fx.config, weights).model


@pytest.mark.slow
def test_offline_dvis_r50_parity(tmp_path):
    """Original-DVIS offline (refiner + frame_forward graphs), random official-format weights."""
    model = _fixture_model("13_e2e_offline_dvis_r50")
    d = export_onnx(model, tmp_path)
    _check_dir(d, ["segmenter", "tracker_start", "tracker_step", "tracker_heads", "refiner", "frame_forward"])
    ref, out = _assert_same_result(model, OnnxDVIS(d), _video(5, 64, 96, seed=2), window_size=2)
    _assert_raw_close(ref, out, ["pred_logits", "pred_masks", "online_pred_logits", "aux_pred_cls"])


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
    ref, out = _assert_same_result(model, OnnxDVIS(d), _video(4, 64, 96, seed=4), window_size=2)
    _assert_raw_close(ref, out, ["pred_logits", "pred_masks"])


def test_missing_onnxruntime_is_a_one_line_error(monkeypatch, tmp_path):
    import sys

    from dvis_sdk.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'dvis_sdk\[onnx\]'"):
        OnnxDVIS(tmp_path)
    assert main(["export", "dvis-tiny-shapes", "--out", str(tmp_path / "x")]) == 2


def test_cli_export_argument_errors(tmp_path, capsys):
    from dvis_sdk.cli import main

    assert main(["export", "--config", "a.yaml", "--out", str(tmp_path)]) == 2
    assert "--config and --checkpoint go together" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_export_then_run_without_weights(tmp_path, capsys):
    from dvis_sdk.cli import main

    assert main(["export", "dvis-tiny-shapes", "--format", "onnx", "--out", str(tmp_path), "--no-simplify"]) == 0
    assert "exported to" in capsys.readouterr().out
    meta = _check_dir(tmp_path, ["segmenter", "tracker_start", "tracker_step", "tracker_heads"])
    assert not any(g["simplified"] for g in meta["graphs"].values())
    model = dvis_sdk.VideoSegmenter.from_pretrained("dvis-tiny-shapes").model
    _assert_same_result(model, OnnxDVIS(tmp_path), _video(4, 120, 200, seed=5))
