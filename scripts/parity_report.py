"""Print the max abs error (and the allowed tolerance) of every end-to-end output against the official
fixtures in tests/fixtures (run from the repository root): python scripts/parity_report.py"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import dvis_sdk  # noqa: E402
from conftest import load_fixture  # noqa: E402
from dvis_sdk.inference.runner import forward_video, video_inference  # noqa: E402
from dvis_sdk.official import convert_official_state_dict, load_official_config  # noqa: E402

E2E = ["09_e2e_online_vit_adapter", "10_e2e_offline_vit_adapter", "11_e2e_online_r50",
       "12_e2e_online_dvis_swin", "13_e2e_offline_dvis_r50"]


def main() -> None:
    torch.set_num_threads(2)
    print(f"{'fixture':28s} {'output':45s} {'max |err|':>10s} {'tolerance':>10s}")
    for name in E2E:
        fx = load_fixture(name)
        weights = fx.weights if name != E2E[1] else {**load_fixture(E2E[0]).weights, **fx.weights}
        cfg = load_official_config(fx.config)
        model = dvis_sdk.build_model(cfg)
        model.load_state_dict(convert_official_state_dict(weights, cfg), strict=True)
        video = fx.io["in.video_uint8"].permute(0, 3, 1, 2).float()
        got = {}
        with torch.no_grad():
            images = model.preprocess(video)
            ws, windows, state = cfg.test.window_size, [], None
            for start in range(0, images.shape[0], ws):
                windows.append(model.track_clip(images[start:start + ws], state, start))
                state = windows[-1].state
            for i, w in enumerate(windows):
                got.update({f"out.segmenter.window{i}.{k}": v for k, v in w.segmenter.items()})
                got.update({f"out.tracker.window{i}.{k}": v for k, v in w.tracker.items()})
            raw = forward_video(model, images)
            got["out.postprocess_input.pred_cls"] = raw["pred_cls"]
            got["out.postprocess_input.pred_masks"] = raw["pred_masks"][0]
            if cfg.mode == "offline":
                got["out.postprocess_input.aux_pred_cls"] = raw["aux_pred_cls"]
                got.update({f"out.refiner.{k}": raw[k] for k in ("pred_logits", "pred_masks", "pred_embds")})
                got.update({f"out.refiner_input.{k}": v for k, v in model.refiner_inputs(windows).items()})
        worst = 0.0
        for key, exp in fx.io.items():
            if key not in got or exp.dtype != torch.float32:
                continue
            err = (got[key].float() - exp).abs().max().item()
            tol = 1e-4 * exp.abs().max().item() + 1e-5
            worst = max(worst, err / tol)
            print(f"{name:28s} {key[4:]:45s} {err:10.2e} {tol:10.2e}")
        res = video_inference(model, video)
        print(f"{name:28s} {'result: instances (ours / official)':45s} {len(res.scores):>10d} "
              f"{len(fx.io['out.result.scores']):>10d}   worst err/tol {worst:.3f}")


if __name__ == "__main__":
    main()
