"""Make the segmenter-only (official MinVIS / CTMinVIS) parity fixtures with the OFFICIAL code (not run by CI).

Run with the official code's environment (torch + detectron2), one process per repository (both repositories
name their packages ``mask2former`` / ``mask2former_video``)::

    /work/official/venv/bin/python scripts/gen_minvis_fixtures.py --repo /work/official/DVIS_Plus/DVIS_Plus \
        --case minvis_dvisplus --out tests/fixtures
    /work/official/venv/bin/python scripts/gen_minvis_fixtures.py --repo /work/official/DVIS \
        --case minvis_dvis --out tests/fixtures

Method (as ``tests/fixtures/README.md`` describes for fixtures 01-21): the official model is built by
``detectron2.modeling.build_model`` from the official yaml + tiny overrides on the CPU, with the official
pure-PyTorch deformable attention (the compiled op is stubbed out, so ``MSDeformAttn`` falls back to
``ms_deform_attn_core_pytorch``); every floating tensor of its state dict is replaced by seeded random values per
key (the README's gains), the FrozenBN statistics are calibrated on the fixture's own video and the first half of
``query_feat`` is scaled by 0.1 (image-dependent queries, so that the frame-to-frame matching permutes them on a
video with a scene cut). The official ``model([{"image": frames, "height": H, "width": W}])`` gives the result;
hooks record the segmenter outputs, the matching and the post-processing input. The run is repeated with 1 and 2
threads (the discrete decisions must not change) and the Hungarian / top-k margins are recorded.
"""
from __future__ import annotations

import argparse
import json
import sys
import types
import zlib
from pathlib import Path

import numpy as np

# which official yaml and tiny overrides make each case; ``yaml`` is relative to the repository's configs/
CASES = {
    # DVIS++ repository, stage 1 MinVIS (decoder "_minvis"), OVIS yaml (TEST.MAX_NUM 20 there: MinVIS keeps 10)
    "minvis_dvisplus": dict(yaml="dvis_Plus/ovis/MinVIS_R50.yaml", seed=2201, video_seed=3100, shape=(8, 61, 93)),
    # DVIS++ repository, CTMinVIS (decoder "_dvisPlus", matched by the re-id head; REID_HIDDEN_DIM default 256)
    "ctminvis_dvisplus": dict(yaml="dvis_Plus/ytvis19/CTVIS_R50.yaml", seed=2301, video_seed=3200, shape=(9, 75, 53)),
    # original DVIS repository, MinVIS, YouTube-VIS 2021 yaml
    "minvis_dvis": dict(yaml="youtubevis_2021/MinVIS_R50.yaml", seed=2402, video_seed=3300, shape=(7, 45, 83)),
    # DVIS++ repository, MinVIS for VIPSeg (TEST.TASK 'vps' there, which MinVIS does not read: instances out)
    "minvis_vipseg_dvisplus": dict(yaml="dvis_Plus/VIPSeg/MinVIS_R50.yaml", seed=2501, video_seed=3400,
                                   shape=(8, 49, 71)),
}

TINY = {
    "MODEL": {
        "DEVICE": "cpu",
        "RESNETS": {"WIDTH_PER_GROUP": 4, "RES2_OUT_CHANNELS": 16, "STEM_OUT_CHANNELS": 8},
        "SEM_SEG_HEAD": {"NUM_CLASSES": 5, "CONVS_DIM": 32, "MASK_DIM": 32, "TRANSFORMER_ENC_LAYERS": 1},
        "MASK_FORMER": {"HIDDEN_DIM": 32, "NHEADS": 4, "DIM_FEEDFORWARD": 64, "DEC_LAYERS": 4,
                        "NUM_OBJECT_QUERIES": 12},
    },
}


def stub_modules() -> None:
    """The compiled deformable-attention op is absent (pure-PyTorch fallback); panopticapi is only imported by
    the VPS dataset code."""
    sys.modules["MultiScaleDeformableAttention"] = types.ModuleType("MultiScaleDeformableAttention")

    class _Any(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return lambda *a, **k: None

    pan = _Any("panopticapi")
    pan.utils = _Any("panopticapi.utils")
    sys.modules["panopticapi"] = pan
    sys.modules["panopticapi.utils"] = pan.utils


def make_video(seed: int, t: int, h: int, w: int, cut: int) -> np.ndarray:
    """(T, H, W, 3) uint8: textured background and moving coloured ellipses / boxes; a new scene from ``cut``."""
    out = np.zeros((t, h, w, 3), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for scene, (s0, s1) in enumerate(((0, cut), (cut, t))):
        rng = np.random.default_rng(seed + scene)
        bg = rng.uniform(20, 235, 3)
        grad = rng.uniform(-60, 60, 3)
        objs = []
        for _ in range(rng.integers(3, 6)):
            objs.append(dict(c=rng.uniform(0, 255, 3), x=rng.uniform(0.15, 0.85) * w, y=rng.uniform(0.15, 0.85) * h,
                             rx=rng.uniform(0.08, 0.25) * w, ry=rng.uniform(0.08, 0.25) * h,
                             vx=rng.uniform(-3, 3), vy=rng.uniform(-2, 2), box=bool(rng.integers(0, 2))))
        for i in range(s0, s1):
            img = bg[None, None] + grad[None, None] * (xx / w)[..., None] + rng.normal(0, 6, (h, w, 3))
            k = i - s0
            for o in objs:
                cx, cy = o["x"] + o["vx"] * k, o["y"] + o["vy"] * k
                if o["box"]:
                    m = (np.abs(xx - cx) < o["rx"]) & (np.abs(yy - cy) < o["ry"])
                else:
                    m = ((xx - cx) / o["rx"]) ** 2 + ((yy - cy) / o["ry"]) ** 2 < 1
                img[m] = o["c"] + rng.normal(0, 4, (int(m.sum()), 3))
            out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def randomise(model, seed: int) -> None:
    """Every floating parameter / buffer -> seeded random values per key (the fixture README's rules)."""
    import torch
    from detectron2.layers import FrozenBatchNorm2d
    from torch import nn

    kinds = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, FrozenBatchNorm2d)):
            kinds[name] = "norm"
        elif isinstance(mod, nn.Embedding):
            kinds[name] = "embed"
    sd = model.state_dict()
    new = {}
    for key, value in sd.items():
        if not value.is_floating_point() or key in ("pixel_mean", "pixel_std") or key.startswith("criterion."):
            new[key] = value
            continue
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        owner, leaf = key.rsplit(".", 1)
        shape = value.shape

        def normal(std, shape=shape, g=g):
            return torch.randn(shape, generator=g) * std

        def uniform(lo, hi, shape=shape, g=g):
            return lo + (hi - lo) * torch.rand(shape, generator=g)

        if kinds.get(owner) == "norm":
            if leaf == "weight":
                v = uniform(0.1, 0.3) if owner.endswith("conv3.norm") else uniform(0.6, 1.4)
            elif leaf == "bias":
                v = normal(0.1)
            else:  # running statistics: calibrated below
                v = value.clone()
        elif kinds.get(owner) == "embed":
            v = normal(0.3 if "level_embed" in owner else 1.0)
        elif leaf == "in_proj_weight":
            v = normal(1.0 / np.sqrt(shape[1])) * 2
        elif leaf.endswith("bias"):
            v = normal(1.5) if "sampling_offsets" in owner else normal(0.1)
        elif value.dim() >= 2:
            fan_in = int(np.prod(shape[1:]))
            gain = 0.1 if owner.split(".")[-1] in ("out_proj", "linear2", "output_proj") else 1.0
            gain *= 0.5 if "sampling_offsets" in owner else 1.0
            v = normal(gain / np.sqrt(fan_in))
        else:
            v = normal(0.1)
        new[key] = v.to(value.dtype)
    q = new["sem_seg_head.predictor.query_feat.weight"]
    q[: q.shape[0] // 2] *= 0.1  # image-dependent queries: the matching must permute them
    model.load_state_dict(new, strict=True)


def calibrate_frozen_bn(model, images, seed: int) -> None:
    """FrozenBN running statistics from the statistics of their own input on this video (one pass, in order)."""
    import torch
    from detectron2.layers import FrozenBatchNorm2d

    hooks = []
    for name, mod in model.backbone.named_modules():
        if isinstance(mod, FrozenBatchNorm2d):
            def pre(m, inp, name=name):
                x = inp[0].detach()
                g = torch.Generator().manual_seed(seed + zlib.crc32(name.encode()))
                mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
                m.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(mean.shape, generator=g))
                scale = 0.8 + 0.45 * torch.rand(var.shape, generator=g)
                m.running_var.copy_((var + 0.05 * var.mean() + 1e-4) * scale)
            hooks.append(mod.register_forward_pre_hook(pre))
    with torch.no_grad():
        model.backbone(images)
    for h in hooks:
        h.remove()


def hungarian_margin(cost: np.ndarray) -> float:
    """How much worse the best assignment that avoids any one chosen pair is (the decision's distance to a tie)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    best = cost[rows, cols].sum()
    margin = np.inf
    for r, c in zip(rows, cols):
        alt = cost.copy()
        alt[r, c] = 1e6
        r2, c2 = linear_sum_assignment(alt)
        margin = min(margin, alt[r2, c2].sum() - best)
    return float(margin)


def run_official(model, video, threads: int):
    """The official forward on ``video`` with hooks: result + recorded intermediates."""
    import torch

    torch.set_num_threads(threads)
    rec = {"indices": [], "costs": []}
    orig_window, orig_match, orig_infer = model.run_window_inference, model.match_from_embds, model.inference_video
    ct = type(model).__name__ == "CTMinVIS"

    def window(images_tensor, window_size=30):
        out = orig_window(images_tensor, window_size=window_size)
        rec["window_size"] = window_size
        rec["pred_logits"] = out["pred_logits"].clone()
        rec["match_embeds"] = (out["pred_reid_embed"] if ct else out["pred_embds"]).clone()
        return out

    def match(tgt, cur):
        idx = orig_match(tgt, cur)
        c = cur / cur.norm(dim=1)[:, None]
        t = tgt / tgt.norm(dim=1)[:, None]
        rec["costs"].append((1 - torch.mm(c, t.t())).t().numpy().astype(np.float64))
        rec["indices"].append(np.asarray(idx, np.int64))
        return idx

    def infer(pred_cls, pred_masks, img_size, h, w, first_resize_size):
        rec["pred_cls"] = pred_cls.clone()
        scores = torch.softmax(pred_cls, -1)[:, :-1]
        top, idx = scores.flatten(0, 1).topk(10, sorted=False)  # the official call, for the query ids
        rec["ids"] = (idx // model.sem_seg_head.num_classes).clone()
        srt = scores.flatten().sort(descending=True).values
        rec["topk_gap"] = float(srt[9] - srt[10]) if srt.numel() > 10 else None
        return orig_infer(pred_cls, pred_masks, img_size, h, w, first_resize_size)

    model.run_window_inference, model.match_from_embds, model.inference_video = window, match, infer
    try:
        frames = [torch.from_numpy(f).permute(2, 0, 1).contiguous() for f in video]
        with torch.no_grad():
            out = model([{"image": frames, "height": video.shape[1], "width": video.shape[2]}])
    finally:
        del model.run_window_inference, model.match_from_embds, model.inference_video
    return out, rec


def to_plain(node):
    from detectron2.config import CfgNode

    if isinstance(node, CfgNode):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return [to_plain(v) for v in node]
    return node


# detectron2 blocks no DVIS model reads (the fixtures' config.json leaves them out, as fixtures 01-21 do)
_UNUSED_MODEL_BLOCKS = ("ANCHOR_GENERATOR", "FPN", "PANOPTIC_FPN", "PROPOSAL_GENERATOR", "RETINANET",
                        "ROI_BOX_CASCADE_HEAD", "ROI_BOX_HEAD", "ROI_HEADS", "ROI_KEYPOINT_HEAD", "ROI_MASK_HEAD",
                        "RPN")


def cfg_subset(tree: dict) -> dict:
    """The merged official cfg as a nested dict: MODEL (without the unused detectron2 blocks), INPUT, DATASETS."""
    model = {k: v for k, v in tree["MODEL"].items() if k not in _UNUSED_MODEL_BLOCKS}
    return {"MODEL": model, "INPUT": tree["INPUT"], "DATASETS": tree["DATASETS"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, help="official repository root (holding configs/ and the packages)")
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    ap.add_argument("--out", required=True, help="fixtures folder; writes OUT/<NN>_<case>/")
    ap.add_argument("--name", help="fixture folder name (default: the case)")
    args = ap.parse_args()
    case = CASES[args.case]
    repo = Path(args.repo).resolve()
    sys.path.insert(0, str(repo))
    stub_modules()

    import torch
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.projects.deeplab import add_deeplab_config
    from mask2former import add_maskformer2_config
    from mask2former_video import add_maskformer2_video_config
    from safetensors.torch import save_file

    plus = (repo / "dvis_Plus").is_dir()
    if plus:
        from dvis_Plus import add_ctvis_config, add_dvis_config, add_minvis_config
    else:
        from dvis import add_dvis_config, add_minvis_config
    cfg = get_cfg()
    for add in (add_deeplab_config, add_maskformer2_config, add_maskformer2_video_config, add_minvis_config,
                add_dvis_config) + ((add_ctvis_config,) if plus else ()):
        add(cfg)
    cfg.merge_from_file(str(repo / "configs" / case["yaml"]))
    from detectron2.config import CfgNode
    cfg.merge_from_other_cfg(CfgNode(TINY))
    cfg.freeze()

    torch.manual_seed(0)
    model = build_model(cfg).eval()
    t, h, w = case["shape"]
    video = make_video(case["video_seed"], t, h, w, cut=t - 3)
    randomise(model, case["seed"])
    frames = torch.from_numpy(video).permute(0, 3, 1, 2).float()
    x = (frames - model.pixel_mean) / model.pixel_std
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    padded = torch.nn.functional.pad(x, (0, wp - w, 0, hp - h))
    calibrate_frozen_bn(model, padded, case["seed"])

    out2, rec = run_official(model, video, threads=2)
    out1, rec1 = run_official(model, video, threads=1)
    same = (out1["pred_labels"] == out2["pred_labels"] and all(np.array_equal(a, b) for a, b in
            zip(rec["indices"], rec1["indices"])) and torch.equal(rec["ids"], rec1["ids"]))
    assert same, "the discrete decisions differ between 1 and 2 threads: choose another seed"
    non_identity = [i + 1 for i, p in enumerate(rec["indices"]) if not np.array_equal(p, np.arange(len(p)))]
    not_involution = [i + 1 for i, p in enumerate(rec["indices"]) if not np.array_equal(p[p], np.arange(len(p)))]
    assert non_identity, "the matching is the identity on every frame: choose another seed"
    margins = [hungarian_margin(c) for c in rec["costs"]]

    name = args.name or args.case
    d = Path(args.out) / name
    d.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous() for k, v in model.state_dict().items()
               if k not in ("pixel_mean", "pixel_std")}
    save_file(weights, str(d / "weights.safetensors"))
    t_frames = video.shape[0]
    perms = np.stack([np.arange(cfg.MODEL.MASK_FORMER.NUM_OBJECT_QUERIES)] + rec["indices"])
    io = {
        "in.video_uint8": torch.from_numpy(video),
        "out.result.scores": torch.tensor(out2["pred_scores"], dtype=torch.float32),
        "out.result.labels": torch.tensor(out2["pred_labels"], dtype=torch.int64),
        "out.result.ids": rec["ids"].to(torch.int64),
        "out.result.masks": torch.stack(out2["pred_masks"]).bool() if out2["pred_masks"] else
        torch.zeros((0, t_frames, h, w), dtype=torch.bool),
        "out.segmenter.pred_logits": rec["pred_logits"].float(),
        "out.segmenter.match_embeds": rec["match_embeds"].float(),
        "out.match.indices": torch.from_numpy(perms),
        "out.postprocess_input.pred_cls": rec["pred_cls"].float(),
    }
    save_file({k: v.contiguous() for k, v in io.items()}, str(d / "io.safetensors"))
    (d / "config.json").write_text(json.dumps(cfg_subset(to_plain(cfg)), indent=1, default=str))
    (d / "overrides.json").write_text(json.dumps(TINY, indent=1))
    meta = {
        "official_class": f"{type(model).__module__}.{type(model).__name__} (eval, window inference)",
        "repository": "zhang-tao-whu/DVIS_Plus (DVIS_Plus/)" if plus else "zhang-tao-whu/DVIS",
        "yaml": case["yaml"], "overrides": "overrides.json (merged after the yaml; config.json is the merged cfg)",
        "built_by": "detectron2.modeling.build_model(cfg), CPU, compiled deformable attention absent "
                    "(ms_deform_attn_core_pytorch fallback)",
        "torch": torch.__version__, "seed": case["seed"],
        "video": {"T": t, "H": h, "W": w, "made_by": f"make_video({case['video_seed']}, cut={t - 3})",
                  "official_window_size": rec["window_size"]},
        "weights_tuning": "query_feat rows 0..Q/2-1 x0.1 (image-dependent queries, non-trivial matching)",
        "matching": {"frames_with_non_identity_permutation": non_identity,
                     "frames_with_permutation_not_its_own_inverse": not_involution,
                     "min_hungarian_margin": min(margins)},
        "topk_gap_10th_minus_11th": rec["topk_gap"],
        "threads_1_vs_2": {"same_decisions": True,
                           "max_abs_score_diff": float(np.max(np.abs(np.array(out1["pred_scores"]) -
                                                                     np.array(out2["pred_scores"]))))},
        "layouts": {
            "in.video_uint8": "(T, H, W, 3) uint8 RGB, given as [{'image': T x (3,H,W) uint8, 'height': H, "
                              "'width': W}]",
            "out.result.*": "the official output: pred_scores (K,), pred_labels (K,), pred_masks (K, T, H, W) bool; "
                            "ids (K,): query index (frame-0 order) of each, from the same topk(10, sorted=False) call",
            "out.segmenter.pred_logits": "(1, T, Q, C+1) segmenter logits, un-matched (all windows)",
            "out.segmenter.match_embeds": "(1, E, T, Q) what MinVIS matches (pred_embds) / CTMinVIS (pred_reid_embed)",
            "out.match.indices": "(T, Q): frame 0 arange, then match_from_embds(prev matched, cur) per frame",
            "out.postprocess_input.pred_cls": "(Q, C+1) matched logits averaged over frames (inference_video input)",
        },
    }
    (d / "meta.json").write_text(json.dumps(meta, indent=1))
    print(name, "ok:", json.dumps(meta["matching"]), "topk gap", rec["topk_gap"],
          "sizes", {p.name: p.stat().st_size for p in d.iterdir()})


if __name__ == "__main__":
    main()
