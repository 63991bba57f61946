"""Official video panoptic / semantic cases with MANY segments, MERGED stuff and PADDING, produced by the
OFFICIAL DVIS++ code (zhang-tao-whu/DVIS_Plus, sub-folder DVIS_Plus), for tests/test_panoptic_cases.py.

Run in the environment of the official code (torch + detectron2; the compiled deformable-attention op is
absent, so the official pure-PyTorch fallback runs, as for the shared fixtures):

    /work/official/venv/bin/python scripts/make_panoptic_cases.py --official /work/official/DVIS_Plus/DVIS_Plus \\
        --fixtures tests/fixtures --out tests/fixtures/panoptic_cases

Method (as the shared fixtures 18-21, see tests/fixtures/18_e2e_online_vps_r50/meta.json): the tiny official
VIPSeg / VSPW DVIS++ model of fixtures 18 + 19 (official key names, 124 classes) is built by
``detectron2.modeling.build_model`` from the official cfg (defaults + config.json + this case's overrides), its
weights are those of the fixtures with a few deterministic changes per case (``case_weights``; only the
changed tensors are stored, ``delta.safetensors``), and ``model([{"image": frames, "height": H, "width": W}])``
in eval mode gives the official output. The changes make the official decisions non-trivial:

* more queries (``NUM_OBJECT_QUERIES`` 24-32: new rows of ``query_feat`` / ``query_embed``, N(0, 1) and x0.1
  for half of them, image-dependent);
* a few classes favoured in the tracker's class head (``class_bias``: things and stuff), so that many queries
  are kept and several kept queries share a stuff class (merged into one segment) or a thing class (not merged);
* sparser masks (``mask_shift``: a constant channel of the projected mask features with a negative weight in
  the tracker's / refiner's mask head), so that many segments survive the overlap test;
* frame sizes that are not multiples of 32 (padding to crop) and a window that does not divide the video.

Cases are written as ``<out>/<name>/{config.json, delta.safetensors, io.safetensors, meta.json}``;
``io.safetensors``: ``in.video_uint8`` (T, H, W, 3), VPS ``out.ids`` (T, H, W) int32 + ``out.segments`` (S, 4)
int64 rows [id, category_id, isthing, query]; VSS ``out.semantic`` (T, H, W) int32.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import types
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

CASES = [
    # official thresholds (0.8 / 0.8; offline at these thresholds: the shared fixture 19)
    dict(name="vps_online_official_thr", mode="online", task="vps", T=8, H=50, W=78, seed=1, queries=32, window=3,
         class_bias={3: 6.0, 12: 6.0, 70: 6.5, 95: 6.5}, mask_gain=4.0, mask_shift=1.0),
    # lower overlap threshold: more segments survive (stuff merges, repeated thing classes)
    dict(name="vps_online_many", mode="online", task="vps", T=8, H=50, W=78, seed=1, queries=32, window=3,
         class_bias={42: 3.0, 39: 3.0, 70: 6.5, 76: 3.0}, mask_gain=4.0, mask_shift=0.7, overlap_threshold=0.3),
    dict(name="vps_offline_many", mode="offline", task="vps", T=9, H=45, W=100, seed=1, queries=32, window=4,
         class_bias={42: 3.0, 39: 3.0, 70: 6.5, 76: 3.0}, mask_gain=4.0, mask_shift=0.7, overlap_threshold=0.3,
         refiner_gain=4.0),
    dict(name="vps_online_low_thr", mode="online", task="vps", T=7, H=70, W=60, seed=3, queries=24, window=2,
         class_bias={42: 4.0, 39: 4.0, 70: 5.0, 61: 4.0}, mask_gain=4.0, mask_shift=0.5,
         object_mask_threshold=0.6, overlap_threshold=0.4),
    dict(name="vss_online", mode="online", task="vss", T=8, H=50, W=78, seed=5, queries=32, window=3,
         class_bias={3: 3.0, 12: 3.0, 70: 3.0, 95: 3.0, 110: 3.0}, mask_gain=2.0, mask_shift=0.3),
    dict(name="vss_offline", mode="offline", task="vss", T=7, H=45, W=100, seed=6, queries=28, window=3,
         class_bias={3: 3.0, 30: 3.0, 70: 3.0, 80: 3.0}, mask_gain=2.0, mask_shift=0.3),
]


def case_config(base: Dict[str, Any], case: Dict[str, Any]) -> Dict[str, Any]:
    """The official cfg subset of a case: fixture 18's, with the case's mode, task, dataset, queries, window."""
    cfg = copy.deepcopy(base)
    m = cfg["MODEL"]
    m["META_ARCHITECTURE"] = "DVIS_Plus_online" if case["mode"] == "online" else "DVIS_Plus_offline"
    m["MASK_FORMER"]["NUM_OBJECT_QUERIES"] = case["queries"]
    t = m["MASK_FORMER"]["TEST"]
    t["TASK"], t["WINDOW_SIZE"] = case["task"], case["window"]
    t["OBJECT_MASK_THRESHOLD"] = case.get("object_mask_threshold", 0.8)
    t["OVERLAP_THRESHOLD"] = case.get("overlap_threshold", 0.8)
    if case["task"] == "vss":
        cfg["DATASETS"] = {"TRAIN": ["VSPW_vss_video_train"], "TEST": ["VSPW_vss_video_val"]}
    return cfg


def case_weights(base: Dict[str, torch.Tensor], case: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    """The tensors a case changes (official key names), deterministic in the case's seed."""
    g = torch.Generator().manual_seed(1000 + case["seed"])
    out: Dict[str, torch.Tensor] = {}
    q = case["queries"]
    for key in ("sem_seg_head.predictor.query_feat.weight", "sem_seg_head.predictor.query_embed.weight"):
        old = base[key]
        new = torch.randn((q, old.shape[1]), generator=g)
        new[: q // 2] *= 0.1  # image-dependent queries
        out[key] = new
    b = base["tracker.class_embed.bias"].clone()
    for cls, v in case["class_bias"].items():
        b[cls] += v
    out["tracker.class_embed.bias"] = b
    # sparser masks: channel 0 of the projected mask features is the constant 1, and the mask heads give it a
    # negative weight (logit -= shift * mean |logit| scale)
    w = base["tracker.mask_feature_proj.weight"].clone()
    pb = base["tracker.mask_feature_proj.bias"].clone()
    if case.get("feature_noise"):  # a random mixing on top: more diverse masks across queries
        w = w + case["feature_noise"] * torch.randn(w.shape, generator=g) * w.std()
    w[0] = 0.0
    pb[0] = 1.0
    out["tracker.mask_feature_proj.weight"], out["tracker.mask_feature_proj.bias"] = w, pb
    for head in ("tracker", "refiner"):
        for layer in (0, 1):  # more contrast between the queries' mask embeddings
            key = f"{head}.mask_embed.layers.{layer}.weight"
            if key in base and case.get("embed_gain", 1.0) != 1.0:
                out[key] = base[key] * case["embed_gain"]
        key_w, key_b = f"{head}.mask_embed.layers.2.weight", f"{head}.mask_embed.layers.2.bias"
        if key_w not in base:
            continue
        lw, lb = base[key_w].clone(), base[key_b].clone()
        gain = case.get("mask_gain", 1.0) if head == "tracker" else case.get("refiner_gain", 1.0)
        lw, lb = lw * gain, lb * gain  # sharper masks
        if head == "tracker":  # the refiner's mask features have no constant channel
            lw[0] = 0.0
            lb[0] = -case["mask_shift"] * 10.0
        out[key_w], out[key_b] = lw, lb
    return out


def case_video(case: Dict[str, Any]) -> np.ndarray:
    """(T, H, W, 3) uint8: a smooth background and moving ellipses / bars of several colours."""
    rng = np.random.RandomState(case["seed"])
    t_, h, w = case["T"], case["H"], case["W"]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = (np.stack([xx / w, yy / h, 1 - xx / w], -1) * 120 + 40).astype(np.float32)
    shapes = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, w / 3), rng.uniform(4, h / 3),
               rng.uniform(-3, 3), rng.uniform(-2, 2), rng.randint(0, 256, 3)) for _ in range(7)]
    frames = []
    for t in range(t_):
        f = base.copy()
        for cx, cy, ax, ay, vx, vy, col in shapes:
            m = ((xx - cx - vx * t) / ax) ** 2 + ((yy - cy - vy * t) / ay) ** 2 <= 1
            f[m] = col
        f += rng.normal(0, 6, f.shape)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(frames)


# ---- the official side (only main() needs the official code) ------------------------------------------------------
def _import_official(root: str) -> Any:
    """Import the official packages with CPU stubs: no compiled deformable attention (the official code falls
    back to ms_deform_attn_core_pytorch) and no panopticapi (only its names are imported by the data code)."""
    sys.modules.setdefault("MultiScaleDeformableAttention", types.ModuleType("MultiScaleDeformableAttention"))
    pa, pu = types.ModuleType("panopticapi"), types.ModuleType("panopticapi.utils")
    pu.rgb2id = lambda c: int(c[0] + 256 * c[1] + 65536 * c[2])
    pu.IdGenerator = object
    pa.utils = pu
    sys.modules.setdefault("panopticapi", pa)
    sys.modules.setdefault("panopticapi.utils", pu)
    sys.path.insert(0, root)
    from detectron2.config import get_cfg
    from detectron2.projects.deeplab import add_deeplab_config
    from dvis_Plus import add_ctvis_config, add_dvis_config, add_minvis_config
    from mask2former import add_maskformer2_config
    from mask2former_video import add_maskformer2_video_config

    def make_cfg(tree: Dict[str, Any]):
        cfg = get_cfg()
        for add in (add_deeplab_config, add_maskformer2_config, add_maskformer2_video_config, add_minvis_config,
                    add_dvis_config, add_ctvis_config):
            add(cfg)
        _merge(cfg, tree)
        cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
        return cfg
    return make_cfg


def _merge(node: Any, tree: Dict[str, Any]) -> None:
    for k, v in tree.items():
        if isinstance(v, dict):
            _merge(getattr(node, k), v)
        else:
            old = getattr(node, k, None)
            setattr(node, k, tuple(v) if isinstance(old, tuple) and isinstance(v, list) else v)


def main() -> None:
    from safetensors.torch import load_file, save_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", default="/work/official/DVIS_Plus/DVIS_Plus")
    ap.add_argument("--fixtures", default="tests/fixtures")
    ap.add_argument("--out", default="tests/fixtures/panoptic_cases")
    ap.add_argument("--only", default=None, help="comma-separated case names")
    args = ap.parse_args()
    torch.set_num_threads(1)
    make_cfg = _import_official(args.official)
    from detectron2.modeling import build_model

    fx = Path(args.fixtures)
    base = load_file(str(fx / "18_e2e_online_vps_r50" / "weights.safetensors"))
    base.update(load_file(str(fx / "19_e2e_offline_vps_r50" / "weights.safetensors")))
    cfg0 = json.loads((fx / "18_e2e_online_vps_r50" / "config.json").read_text())
    for case in CASES:
        if args.only and case["name"] not in args.only.split(","):
            continue
        tree = case_config(cfg0, case)
        delta = case_weights(base, case)
        model = build_model(make_cfg(tree)).eval()
        own = model.state_dict()
        weights = {k: v for k, v in {**base, **delta}.items() if k in own}
        missing = sorted(set(own) - set(weights) - {"criterion.empty_weight"})
        assert not missing, missing
        weights["criterion.empty_weight"] = own["criterion.empty_weight"]
        model.load_state_dict(weights, strict=True)
        video = case_video(case)
        frames = [torch.from_numpy(f).permute(2, 0, 1).contiguous() for f in video]
        with torch.no_grad():
            out = model([{"image": frames, "height": case["H"], "width": case["W"]}])
        io = {"in.video_uint8": torch.from_numpy(video)}
        meta: Dict[str, Any] = {"case": case, "official": "dvis_Plus/meta_architecture.py::"
                                f"{tree['MODEL']['META_ARCHITECTURE']} (eval, window inference, TASK {case['task']})",
                                "torch": torch.__version__}
        if case["task"] == "vps":
            ids = out["pred_masks"].to(torch.int32)
            segs = [[s["id"], s["category_id"], int(s["isthing"]), int(q)]
                    for s, q in zip(out["segments_infos"], out["pred_ids"])]
            io["out.ids"] = ids.contiguous()
            io["out.segments"] = torch.tensor(segs, dtype=torch.int64).reshape(-1, 4)
            cats = [s[1] for s in segs]
            meta["result"] = {"segments": len(segs), "things": sum(s[2] for s in segs),
                              "stuff": sum(1 - s[2] for s in segs),
                              "void_fraction": round(float((ids == 0).float().mean()), 4),
                              "thing_classes_repeated": sorted({c for c in cats if cats.count(c) > 1})}
        else:
            sem = out["pred_masks"].to(torch.int32)
            io["out.semantic"] = sem.contiguous()
            u, c = torch.unique(sem, return_counts=True)
            meta["result"] = {"classes_present": {int(a): int(b) for a, b in zip(u, c)}}
        d = Path(args.out) / case["name"]
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(tree, indent=1))
        save_file({k: v.contiguous() for k, v in delta.items()}, str(d / "delta.safetensors"))
        save_file(io, str(d / "io.safetensors"))
        (d / "meta.json").write_text(json.dumps(meta, indent=1))
        print(case["name"], meta["result"])


if __name__ == "__main__":
    main()
