"""Random-but-structured VIPSeg (VPS) and VSPW (VSS) evaluation cases, and their scores by the official scripts.

    python scripts/seg_eval_cases.py make OUT_DIR             # the suite of cases (tests/fixtures/seg_eval)
    python scripts/seg_eval_cases.py score OUT_DIR --official DIR --python PY [--scratch DIR]

`make` writes one folder per case: VPS cases ``gt.json``, ``gt/<video>/<frame>.png``, ``pred.json``,
``pan_pred/<video>/<frame>.png`` (the official submission layout); VSS cases a VSPW root (``val.txt``,
``data/<video>/mask/<frame>.png``) and ``pred/<video>/<frame>.png``. Each case has a ``case.json`` with its
generator settings.

`score` runs the official scripts (``eval_vpq_vspw.py``, ``eval_stq_vspw.py`` with
``segmentation_and_tracking_quality.py``,
``eval_miou_vspw.py``, ``eval_vc_vspw.py`` from ``DIR``, e.g. ``DVIS_Plus/DVIS_Plus/utils``) with the
interpreter ``PY`` on every case and writes the printed numbers to ``OUT_DIR/expected.json``. The scripts run
unmodified, from a copy in the scratch folder (VPQ with ``--num_processes 1``; its submission folder is a scratch
folder of links, since it writes ``vpq-*.txt`` files next to ``pred.json``).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

NUM_CLASSES = 124


# ---- drawing ---------------------------------------------------------------------------------------------------
def _box(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)


def _ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2 <= 1.0


def _id_to_rgb(ids: np.ndarray) -> np.ndarray:
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


# ---- VPS -------------------------------------------------------------------------------------------------------
VPS_CASES = {
    # name: (seed, settings)
    "vps_basic": (1, {}),
    "vps_long": (2, {"lengths": [12, 14, 9]}),
    "vps_short_videos": (3, {"lengths": [3, 9, 5, 2]}),
    "vps_crowd": (4, {"crowd": True}),
    "vps_unlisted_gt": (5, {"unlisted_gt": True, "absent_gt": True}),
    "vps_empty_pred_frames": (6, {"empty_frames": 2}),
    "vps_id_switch": (7, {"id_switch": 0.6}),
    "vps_dup_entries": (8, {"dup_entries": True}),
    "vps_area_noise": (9, {"area_noise": True}),
    "vps_wrong_classes": (10, {"class_noise": 0.35, "fp_blobs": 3}),
    "vps_big_shift": (11, {"shift": 5}),
    "vps_many_things": (12, {"things": (5, 9), "lengths": [10, 8]}),
    "vps_perfect": (13, {"perfect": True}),
    "vps_void_heavy": (14, {"void": 0.25, "pred_void": 0.2}),
    "vps_first_is_thing": (15, {"first_thing": True}),
    "vps_mixed": (16, {"crowd": True, "unlisted_gt": True, "empty_frames": 1, "id_switch": 0.3,
                       "dup_entries": True, "class_noise": 0.2, "fp_blobs": 2}),
}


def make_vps_case(out: Path, seed: int, lengths=None, h=36, w=48, things=(1, 5), crowd=False, unlisted_gt=False,
                  absent_gt=False, empty_frames=0, id_switch=0.0, dup_entries=False, area_noise=False,
                  class_noise=0.1, fp_blobs=1, shift=2, perfect=False, void=0.08, pred_void=0.05,
                  first_thing=False, scale=1) -> None:
    """One VPS case in ``out`` (``scale`` multiplies object sizes, speeds and void blocks: for big frames)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    isthing = rng.random(NUM_CLASSES) < 0.45
    cats = [{"id": i, "name": f"class{i}", "isthing": int(isthing[i])} for i in range(NUM_CLASSES)]
    things_c, stuff_c = np.nonzero(isthing)[0], np.nonzero(~isthing)[0]
    lengths = lengths or [int(rng.integers(2, 12)) for _ in range(3)] + [9]
    gt_json = {"videos": [], "annotations": [], "categories": cats}
    pred_json = {"annotations": []}
    stuff_pred_id = {int(c): int(rng.integers(1, 1 << 24)) for c in stuff_c}   # like IdGenerator: one per class
    for v, T in enumerate(lengths):
        vid = f"{v * 7 + 3}_video{v}"
        used = {0} | set(stuff_pred_id.values())

        def new_id(used=used):
            while True:
                x = int(rng.integers(1, 1 << 24))
                if x not in used:
                    used.add(x)
                    return x

        n_stuff = int(rng.integers(2, 5))
        s_cats = rng.choice(stuff_c, n_stuff, replace=False)
        s_ids = [new_id() for _ in s_cats]
        bounds = np.sort(rng.uniform(0, w, n_stuff - 1))
        drift = rng.normal(0, 1.0, n_stuff - 1)
        objs = []
        for _ in range(int(rng.integers(*things))):
            t0 = int(rng.integers(0, max(1, T - 1)))
            t1 = int(rng.integers(t0 + 1, T + 1))
            objs.append({"cat": int(rng.choice(things_c)), "id": new_id(), "t": (t0, t1),
                         "c": rng.uniform([6, 6], [h - 6, w - 6]), "v": rng.normal(0, 1.5, 2) * scale,
                         "r": rng.uniform(3, 9, 2) * scale, "crowd": False})
        if first_thing and objs:
            objs[0]["t"] = (0, T)
        if crowd and objs and rng.random() < 0.8:
            objs[-1]["crowd"] = True
        unlisted_id = new_id() if unlisted_gt else None
        absent_id = new_id() if absent_gt else None
        # predictions: tracks for each object (id switch halfway for some), stuff with shared class ids
        p_obj = []
        for o in objs:
            pid = new_id()
            sw = int(rng.integers(o["t"][0], o["t"][1])) if rng.random() < id_switch else None
            cat = o["cat"] if rng.random() >= class_noise else int(rng.choice(things_c))
            p_obj.append({"id": pid, "id2": new_id(), "switch": sw, "cat": cat, "drop": rng.random() < 0.15,
                          "off": rng.integers(-shift, shift + 1, 2)})
        blobs = [{"cat": int(rng.integers(0, NUM_CLASSES)), "id": new_id(), "c": rng.uniform([0, 0], [h, w]),
                  "r": rng.uniform(2, 6, 2), "t": (int(rng.integers(0, T)), T)} for _ in range(fp_blobs)]
        s_pred_cat = [int(c) if rng.random() >= class_noise else int(rng.choice(stuff_c)) for c in s_cats]
        empty = set(rng.choice(T, min(empty_frames, T), replace=False).tolist()) if empty_frames else set()
        images, g_anns, p_anns = [], [], []
        for t in range(T):
            name = f"{5 * t:05d}.png"
            gt = np.zeros((h, w), np.int64)
            xs = np.arange(w)[None, :].repeat(h, 0)
            b = bounds + drift * t
            band = np.searchsorted(np.sort(b), xs)
            segs = {}
            for k, (c, sid) in enumerate(zip(s_cats, s_ids)):
                gt[band == k] = sid
                segs[sid] = {"id": sid, "category_id": int(c), "iscrowd": 0}
            for o in objs:
                if o["t"][0] <= t < o["t"][1]:
                    cy, cx = o["c"] + o["v"] * t
                    m = _ellipse(h, w, cy, cx, *o["r"])
                    gt[m] = o["id"]
                    segs[o["id"]] = {"id": o["id"], "category_id": o["cat"], "iscrowd": int(o["crowd"])}
            if unlisted_id is not None and t % 2 == 0:
                gt[_box(h, w, h // 2, 3, 3, 2)] = unlisted_id
            vm = rng.random((h // (4 * scale) + 1, w // (4 * scale) + 1)) < void
            gt[np.kron(vm, np.ones((4 * scale, 4 * scale), bool))[:h, :w]] = 0
            ids, cnt = np.unique(gt, return_counts=True)
            info = []
            for i, c in zip(ids.tolist(), cnt.tolist()):
                if i == 0 or i == unlisted_id:
                    continue
                e = dict(segs[i])
                e["area"] = int(c) + (int(rng.integers(0, 4)) if area_noise else 0)
                info.append(e)
            if absent_id is not None and t == 0:
                info.append({"id": absent_id, "category_id": int(s_cats[0]), "iscrowd": 0, "area": 0})
            if first_thing:
                info.sort(key=lambda e: -int(isthing[e["category_id"]]))
            else:
                rng.shuffle(info)
            Image.fromarray(_id_to_rgb(gt)).save(_mk(out / "gt" / vid / name))
            images.append({"id": name[:-4], "width": w, "height": h, "file_name": name})
            g_anns.append({"image_id": name[:-4], "file_name": name, "segments_info": info})

            # prediction
            pred = np.zeros((h, w), np.int64)
            p_info = {}
            if perfect:
                pred = gt.copy()
                p_info = {e["id"]: {"id": e["id"], "category_id": e["category_id"]} for e in info
                          if e["area"] > 0 and e["id"] != absent_id}
            elif t not in empty:
                pb = np.searchsorted(np.sort(b + rng.normal(0, 0.7, len(b))), xs)
                for k, c in enumerate(s_pred_cat):
                    pid = stuff_pred_id[c]
                    pred[pb == k] = pid
                    p_info[pid] = {"id": pid, "category_id": c}
                for o, po in zip(objs, p_obj):
                    if po["drop"] or not (o["t"][0] <= t < o["t"][1]):
                        continue
                    cy, cx = o["c"] + o["v"] * t + po["off"]
                    pid = po["id2"] if po["switch"] is not None and t >= po["switch"] else po["id"]
                    pred[_ellipse(h, w, cy, cx, *(o["r"] * rng.uniform(0.8, 1.2, 2)))] = pid
                    p_info[pid] = {"id": pid, "category_id": po["cat"]}
                for bl in blobs:
                    if bl["t"][0] <= t < bl["t"][1]:
                        pred[_ellipse(h, w, *bl["c"], *bl["r"])] = bl["id"]
                        p_info[bl["id"]] = {"id": bl["id"], "category_id": bl["cat"]}
                pm = rng.random((h // (3 * scale) + 1, w // (3 * scale) + 1)) < pred_void
                pred[np.kron(pm, np.ones((3 * scale, 3 * scale), bool))[:h, :w]] = 0
            present = set(np.unique(pred).tolist())
            p_list = []
            for pid, e in p_info.items():
                if pid in present and pid != 0:
                    e = dict(e, iscrowd=0, area=int(rng.integers(1, 500)))   # wrong areas: the PNG decides
                    p_list.append(e)
                    if dup_entries and rng.random() < 0.2:
                        p_list.append(dict(e))
            Image.fromarray(_id_to_rgb(pred)).save(_mk(out / "pan_pred" / vid / name))
            p_anns.append({"segments_info": p_list, "file_name": name})
        gt_json["videos"].append({"video_id": vid, "images": images})
        gt_json["annotations"].append({"video_id": vid, "annotations": g_anns})
        pred_json["annotations"].append({"video_id": vid, "annotations": p_anns})
    (out / "gt.json").write_text(json.dumps(gt_json))
    (out / "pred.json").write_text(json.dumps(pred_json))


# ---- VSS -------------------------------------------------------------------------------------------------------
VSS_CASES = {
    "vss_basic": (101, {}),
    "vss_long": (102, {"lengths": [20, 18, 25]}),
    "vss_short": (103, {"lengths": [3, 8, 9, 16, 17]}),
    "vss_flicker": (104, {"flicker": True}),
    "vss_spill": (105, {"spill": True}),
    "vss_void_heavy": (106, {"void": 0.3}),
    "vss_perfect": (107, {"perfect": True}),
    "vss_palette": (108, {"palette": True, "extra_pred_frames": True}),
    "vss_mixed": (109, {"flicker": True, "spill": True, "void": 0.15, "lengths": [17, 10, 4, 22]}),
}


def make_vss_case(out: Path, seed: int, lengths=None, h=24, w=32, flicker=False, spill=False, void=0.1,
                  perfect=False, palette=False, extra_pred_frames=False, scale=1) -> None:
    """One VSS case (a VSPW root) in ``out`` (``scale``: as :func:`make_vps_case`)."""
    rng = np.random.default_rng(seed)
    lengths = lengths or [int(rng.integers(5, 21)) for _ in range(4)]
    names = []
    for v, T in enumerate(lengths):
        vid = f"{v * 11 + 1}_vspw{v}"
        names.append(vid)
        k = int(rng.integers(2, 6))
        classes = rng.integers(1, NUM_CLASSES + 1, k)
        bounds = np.sort(rng.uniform(0, w, k - 1))
        drift = rng.normal(0, 0.6, k - 1)
        obj_c = int(rng.integers(1, NUM_CLASSES + 1))
        oc, ov = rng.uniform([4, 4], [h - 4, w - 4]), rng.normal(0, 1.0, 2)
        wrong = rng.integers(0, NUM_CLASSES, 4)
        for t in range(T):
            name = f"{t:06d}.png"
            xs = np.arange(w)[None, :].repeat(h, 0)
            gt = classes[np.searchsorted(bounds + drift * t, xs)].astype(np.uint8)
            gt[_ellipse(h, w, *(oc + ov * t * scale), 4 * scale, 5 * scale)] = obj_c
            if flicker and v == 0:
                gt = np.where((np.indices((h, w)).sum(0) + t) % 2 == 0, gt, 1 + (gt % NUM_CLASSES)).astype(np.uint8)
            vm = rng.random((h // (4 * scale) + 1, w // (4 * scale) + 1)) < void
            vmask = np.kron(vm, np.ones((4 * scale, 4 * scale), bool))[:h, :w]
            gt[vmask] = rng.choice([0, 255], int(vmask.sum()))
            pred = gt.astype(np.int64) - 1
            if not perfect:
                pb = np.searchsorted(bounds + drift * t + rng.normal(0, 1.0, k - 1), xs)
                pred = (classes[pb] - 1).astype(np.int64)
                pred[_ellipse(h, w, *(oc + ov * t * scale + rng.normal(0, 1, 2) * scale), 4 * scale,
                              5 * scale)] = obj_c - 1
                noise = rng.random((h, w)) < 0.05
                pred[noise] = rng.choice(wrong, int(noise.sum()))
                if flicker:
                    fl = rng.random((h, w)) < 0.1
                    pred[fl] = rng.integers(0, NUM_CLASSES, int(fl.sum()))
            pred[pred < 0] = rng.integers(0, NUM_CLASSES)       # GT void: any class
            if spill:   # values >= 124 on low GT classes: they land in a later row officially
                sp = (rng.random((h, w)) < 0.05) & (gt >= 1) & (gt <= 60)
                pred[sp] = rng.choice([124, 130, 200, 255], int(sp.sum()))
            g_img = Image.fromarray(gt)
            if palette:     # VSPW's masks are palette PNGs: the values are the indices
                g_img = Image.frombytes("P", (w, h), gt.tobytes())
                g_img.putpalette([int(x) for x in rng.integers(0, 256, 768)])
            g_img.save(_mk(out / "data" / vid / "mask" / name))
            Image.fromarray(pred.astype(np.uint8)).save(_mk(out / "pred" / vid / name))
        if extra_pred_frames:
            Image.fromarray(np.zeros((h, w), np.uint8)).save(_mk(out / "pred" / vid / "999999.png"))
    (out / "val.txt").write_text("".join(n + "\n" for n in names))


def make_edge_case(src: Path, out: Path, seed: int) -> None:
    """A copy of a VPS case whose JSONs list id 0 as a segment (GT and prediction), repeat GT ids with another
    category, and mark random GT segments (stuff too) as crowd: the official scripts accept all of it."""
    import random

    shutil.copytree(src, out)
    r = random.Random(seed)
    gt, pred = (json.loads((out / f).read_text()) for f in ("gt.json", "pred.json"))
    for v in gt["annotations"]:
        for f in v["annotations"]:
            si = f["segments_info"]
            if r.random() < 0.3:
                si.append({"id": 0, "category_id": r.randrange(NUM_CLASSES), "iscrowd": r.choice([0, 1]), "area": 7})
            if si and r.random() < 0.3:
                e = dict(r.choice(si))
                e["category_id"], e["area"] = r.randrange(NUM_CLASSES), 3
                si.append(e)
            if si and r.random() < 0.3:
                r.choice(si)["iscrowd"] = 1
    for v in pred["annotations"]:
        for f in v["annotations"]:
            if r.random() < 0.3:   # id 0 listed: every frame of these cases has predicted void pixels
                f["segments_info"].insert(r.randrange(len(f["segments_info"]) + 1),
                                          {"id": 0, "category_id": r.randrange(NUM_CLASSES)})
    (out / "gt.json").write_text(json.dumps(gt))
    (out / "pred.json").write_text(json.dumps(pred))


EDGE_CASES = {"vps_edge_ids": ("vps_mixed", 0), "vps_edge_crowd": ("vps_crowd", 0)}


def _mk(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def make_all(root: Path) -> None:
    for name, (seed, kw) in VPS_CASES.items():
        make_vps_case(root / name, seed, **kw)
        (root / name / "case.json").write_text(json.dumps({"task": "vps", "seed": seed, "settings": kw}))
    for name, (seed, kw) in VSS_CASES.items():
        make_vss_case(root / name, seed, **kw)
        (root / name / "case.json").write_text(json.dumps({"task": "vss", "seed": seed, "settings": kw}))
    for name, (src, seed) in EDGE_CASES.items():
        make_edge_case(root / src, root / name, seed)
        (root / name / "case.json").write_text(json.dumps({"task": "vps", "seed": seed, "edge_of": src}))


# ---- official scores -------------------------------------------------------------------------------------------
_FLOAT = r"[-+]?(?:nan|inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def _run(py: str, script: Path, args, cwd: Path) -> str:
    r = subprocess.run([py, str(script)] + [str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{script.name} failed on {args}:\n{r.stderr[-2000:]}")
    return r.stdout


def score_vps(case: Path, py: str, scripts: Path, scratch: Path) -> dict:
    sub = Path(tempfile.mkdtemp(dir=scratch))
    (sub / "pred.json").symlink_to((case / "pred.json").resolve())
    (sub / "pan_pred").symlink_to((case / "pan_pred").resolve())
    args = ["--submit_dir", sub, "--truth_dir", (case / "gt").resolve(), "--pan_gt_json_file",
            (case / "gt.json").resolve()]
    out = _run(py, scripts / "eval_vpq_vspw.py", args + ["--num_processes", "1"], scripts)
    rows = [ln.split() for ln in out.splitlines() if re.fullmatch(rf"{_FLOAT} {_FLOAT} {_FLOAT}", ln.strip())]
    assert len(rows) == 5, out
    res = {}
    for k, (a, t, s) in zip((0, 5, 15, 25, 35), rows):
        res[f"VPQ@{k}"], res[f"VPQ_thing@{k}"], res[f"VPQ_stuff@{k}"] = float(a), float(t), float(s)
    for key in ("VPQ", "VPQ_thing", "VPQ_stuff"):
        vals = [res[f"{key}@{k}"] for k in (0, 5, 15, 25, 35)]
        res[key] = sum(vals) / len(vals)      # the vpq-final.txt mean, unrounded
    final = (sub / "vpq-final.txt").read_text()
    res["vpq_final_txt"] = final
    out = _run(py, scripts / "eval_stq_vspw.py", args, scripts)
    res["STQ"] = float(re.search(rf"STQ : ({_FLOAT})", out).group(1))
    res["AQ"] = float(re.search(rf"AQ :({_FLOAT})", out).group(1))
    res["SQ"] = float(re.search(rf"IoU:({_FLOAT})", out).group(1))
    shutil.rmtree(sub)
    return res


def score_vss(case: Path, py: str, scripts: Path) -> dict:
    out = _run(py, scripts / "eval_miou_vspw.py", [case.resolve(), (case / "pred").resolve()], scripts)
    m = re.search(rf"Acc:({_FLOAT}), Acc_class:({_FLOAT}), mIoU:({_FLOAT}), fwIoU: ({_FLOAT})", out)
    res = {"Acc": float(m.group(1)), "Acc_class": float(m.group(2)), "mIoU": float(m.group(3)),
           "fwIoU": float(m.group(4))}
    out = _run(py, scripts / "eval_vc_vspw.py", [case.resolve(), (case / "pred").resolve()], scripts)
    for c in (8, 16):
        res[f"VC{c}"] = float(re.search(rf"VC{c} score: ({_FLOAT}) on", out).group(1))
    return res


def score_all(root: Path, official: Path, py: str, scratch: Path) -> None:
    scratch.mkdir(parents=True, exist_ok=True)
    scripts = scratch / "official_utils"
    scripts.mkdir(exist_ok=True)
    for f in ("eval_vpq_vspw.py", "eval_stq_vspw.py", "segmentation_and_tracking_quality.py", "eval_miou_vspw.py",
              "eval_vc_vspw.py"):
        shutil.copy(official / f, scripts / f)
    expected = {}
    for case in sorted(p for p in root.iterdir() if (p / "case.json").is_file()):
        task = json.loads((case / "case.json").read_text())["task"]
        expected[case.name] = score_vps(case, py, scripts, scratch) if task == "vps" else score_vss(case, py, scripts)
        print(case.name, {k: v for k, v in expected[case.name].items() if k != "vpq_final_txt"}, flush=True)
    (root / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("out", type=Path)
    sc = sub.add_parser("score")
    sc.add_argument("out", type=Path)
    sc.add_argument("--official", type=Path, required=True)
    sc.add_argument("--python", default=sys.executable)
    sc.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "seg_eval_official")
    a = ap.parse_args()
    if a.cmd == "make":
        make_all(a.out)
    else:
        score_all(a.out, a.official, a.python, a.scratch)


if __name__ == "__main__":
    main()
