"""Writers of video panoptic / semantic results in the official submission layouts, frame by frame.

* VIPSeg (what DVIS++'s ``vps_eval.py`` writes and ``utils/eval_vpq_vspw.py`` / ``eval_stq_vspw.py`` read):
  ``<out>/pan_pred/<video>/<frame stem>.png``, RGB-encoded segment ids (id = R + 256 G + 65536 B), and
  ``<out>/pred.json`` = ``{"annotations": [{"video_id": <video>, "annotations": [{"segments_info": [...],
  "file_name": <frame name>} per frame]}]}`` with, per segment present in the frame, ``id`` (= its RGB id),
  ``category_id`` (the DATASET id), ``iscrowd`` 0, ``area`` and ``bbox`` [x, y, w, h] where w / h are max - min
  (the official writer's quirk: no +1).
  Colours as the official ``panopticapi.IdGenerator``: a stuff segment takes its category colour, a thing segment
  its category colour when still free, else a colour jittered by up to +-30 per channel; the official jitter
  uses numpy's global random state, here a generator seeded per video (deterministic, ids unique per video).
* VSPW (what ``vss_eval.py`` writes and ``eval_miou_vspw.py`` / ``eval_vc_vspw.py`` read):
  ``<out>/<video>/<frame stem>.png``, one 8-bit channel of DATASET class ids.

The models predict class indices (things first, then stuff); VIPSeg / VSPW models map them to dataset ids with
:func:`dvis_sdk.configs.vipseg.category_of_class`; models of other datasets keep the class index.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..configs.vipseg import MODEL_ORDER
from ..runtime import atomic_write_text, jsonable

__all__ = ["rgb2id", "id2rgb", "segment_colors", "write_vipseg", "write_vspw", "save_dense_result",
           "dataset_category", "video_name"]

_VIPSEG_LIKE = ("vipseg", "vspw")


def rgb2id(color: Union[np.ndarray, Sequence[int]]) -> Union[np.ndarray, int]:
    """RGB (..., 3) -> id = R + 256 G + 65536 B (panopticapi)."""
    c = np.asarray(color).astype(np.int64)
    out = c[..., 0] + 256 * c[..., 1] + 65536 * c[..., 2]
    return int(out) if out.ndim == 0 else out


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8 RGB."""
    ids = np.asarray(ids).astype(np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def _palette(i: int) -> Tuple[int, int, int]:
    """A fixed, well-spread colour for index ``i`` (models of datasets without a colour table)."""
    rng = np.random.RandomState(int(i) * 7919 + 17)
    return tuple(int(x) for x in rng.randint(32, 256, size=3))


def dataset_category(label: int, dataset: Optional[str]) -> Tuple[int, Tuple[int, int, int], bool]:
    """(dataset category id, colour, isthing by the dataset) of a model class index."""
    if dataset in _VIPSEG_LIKE:
        did, _, thing, color = MODEL_ORDER[int(label)]
        return did, tuple(color), bool(thing)
    return int(label), _palette(label), True


def segment_colors(segments: Sequence[Dict[str, Any]], dataset: Optional[str], seed: int = 0) -> Dict[int, Tuple]:
    """Segment id -> RGB colour, as panopticapi's IdGenerator (see the module docstring)."""
    taken = {0}  # the official set([0, 0, 0]) is {0}
    if dataset in _VIPSEG_LIKE:
        taken |= {tuple(c[3]) for c in MODEL_ORDER if not c[2]}
    rng = np.random.RandomState(seed)
    out: Dict[int, Tuple] = {}
    for s in segments:
        _, base, _ = dataset_category(int(s["category_id"]), dataset)
        if not s["isthing"]:
            out[int(s["id"])] = tuple(int(x) for x in base)
            continue
        color = tuple(int(x) for x in base)
        while color in taken:
            color = tuple(int(x) for x in np.clip(np.asarray(base) + rng.randint(-30, 31, size=3), 0, 255))
        taken.add(color)
        out[int(s["id"])] = color
    return out


def _stem(name: str) -> str:
    return Path(name).stem


def video_name(meta: Dict[str, Any], default: str = "video") -> str:
    """The video id of a result in the layouts: the source folder's name, or the video file's stem. VSPW keeps
    a video's frames in ``data/<video>/origin/``: a folder named ``origin`` is named by its parent (the ids
    ``val.txt`` and the metrics use)."""
    src = meta.get("source")
    if not src:
        return default
    p = Path(str(src))
    if p.is_dir() or not p.suffix:
        return p.parent.name if p.name == "origin" and p.parent.name else p.name
    return p.stem


def write_vipseg(out_dir: Union[str, Path], video: str, ids: Any, segments: Sequence[Dict[str, Any]],
                 frame_names: Sequence[str], dataset: Optional[str]) -> Dict[str, Any]:
    """Write ``pan_pred/<video>/*.png`` frame by frame; returns this video's ``pred.json`` entry."""
    folder = Path(out_dir) / "pan_pred" / video
    folder.mkdir(parents=True, exist_ok=True)
    colors = segment_colors(segments, dataset)
    lut_ids = {int(s["id"]): rgb2id(colors[int(s["id"])]) for s in segments}
    cats = {int(s["id"]): dataset_category(int(s["category_id"]), dataset)[0] for s in segments}
    annotations = []
    for t, frame in enumerate(ids):
        rgb = np.zeros(frame.shape + (3,), np.uint8)
        infos = []
        for sid in np.unique(frame).tolist():
            if sid == 0 or sid not in colors:
                continue
            mask = frame == sid
            rgb[mask] = colors[sid]
            ys, xs = np.nonzero(mask)
            x, y = int(xs.min()), int(ys.min())
            infos.append({"bbox": [x, y, int(xs.max()) - x, int(ys.max()) - y], "area": int(mask.sum()),
                          "category_id": int(cats[sid]), "iscrowd": 0, "id": int(lut_ids[sid])})
        name = frame_names[t]
        if not cv2.imwrite(str(folder / f"{_stem(name)}.png"), rgb[..., ::-1]):
            raise OSError(f"cannot write {folder / (_stem(name) + '.png')}")
        annotations.append({"segments_info": infos, "file_name": Path(name).name})
    return {"annotations": annotations, "video_id": video}


def write_vspw(out_dir: Union[str, Path], video: str, classes: Any, frame_names: Sequence[str],
               dataset: Optional[str]) -> Path:
    """Write ``<video>/*.png`` (dataset class ids, 8 bit; 16 bit beyond 255) frame by frame."""
    folder = Path(out_dir) / video
    folder.mkdir(parents=True, exist_ok=True)
    lut = None
    if dataset in _VIPSEG_LIKE:
        lut = np.array([c[0] for c in MODEL_ORDER], dtype=np.int64)
    for t, frame in enumerate(classes):
        values = lut[frame] if lut is not None else np.asarray(frame)
        dtype = np.uint8 if values.max(initial=0) < 256 else np.uint16
        path = folder / f"{_stem(frame_names[t])}.png"
        if not cv2.imwrite(str(path), values.astype(dtype)):
            raise OSError(f"cannot write {path}")
    return folder


def _update_pred_json(out_dir: Path, entry: Dict[str, Any]) -> Path:
    """``pred.json`` holding this video's entry (replacing an earlier one of the same video)."""
    path = out_dir / "pred.json"
    doc = {"annotations": []}
    if path.exists():
        try:
            doc = json.loads(path.read_text())
        except ValueError:
            doc = {"annotations": []}
    doc["annotations"] = [a for a in doc.get("annotations", []) if a.get("video_id") != entry["video_id"]] + [entry]
    return atomic_write_text(path, json.dumps(doc))


def save_dense_result(result: Any, out_dir: Union[str, Path], video_id: int = 1,
                      name: Optional[str] = None) -> Path:
    """Write a VPS / VSS :class:`~dvis_sdk.results.VideoResult` into ``out_dir``: the submission layout (see the
    module docstring) frame by frame, and ``results.json`` (size, frame count, frame names, segments / classes,
    meta; no maps). Returns the path of ``results.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(result.meta)
    video = name or video_name(meta)
    names: List[str] = list(meta.get("frame_names") or [f"{t:05d}.jpg" for t in range(result.num_frames)])
    dataset = meta.get("dataset")
    doc: Dict[str, Any] = {"task": result.task, "video": video, "video_id": video_id, "num_frames": result.num_frames,
                           "height": result.height, "width": result.width,
                           "class_names": list(result.class_names) if result.class_names else None,
                           "meta": jsonable(meta), "instances": []}
    if result.task == "vps":
        ids, segments = result.panoptic
        entry = write_vipseg(out_dir, video, ids, segments, names, dataset)
        _update_pred_json(out_dir, entry)
        doc["segments"] = jsonable(segments)
        doc["layout"] = {"png": f"pan_pred/{video}", "json": "pred.json"}
    elif result.task == "vss":
        write_vspw(out_dir, video, result.semantic, names, dataset)
        doc["layout"] = {"png": video}
    else:
        raise ValueError(f"save_dense_result writes 'vps' / 'vss' results, not {result.task!r}")
    return atomic_write_text(out_dir / "results.json", json.dumps(doc))


def collect_submission(out_dir: Union[str, Path], result_files: Sequence[Union[str, Path]],
                       fingerprint: Optional[str] = None) -> Dict[str, int]:
    """One submission folder ``<out_dir>/submission`` over per-video outputs (``dvis batch``): VIPSeg
    ``pan_pred/<video>`` (links to each video's PNG folder) + one ``pred.json``; VSPW ``<video>`` links. Only
    panoptic / semantic results (with ``fingerprint`` when given) are collected; returns their counts."""
    sub = Path(out_dir) / "submission"
    entries: List[Dict[str, Any]] = []
    counts = {"vps_videos": 0, "vss_videos": 0}
    for rf in result_files:
        rf = Path(rf)
        try:
            doc = json.loads(rf.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("task") not in ("vps", "vss"):
            continue
        if fingerprint is not None and (doc.get("meta") or {}).get("fingerprint") != fingerprint:
            continue
        video, task = doc["video"], doc["task"]
        src = rf.parent / doc["layout"]["png"]
        dst = sub / ("pan_pred" if task == "vps" else "") / video
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            if dst.is_symlink():
                dst.unlink()
            else:
                import shutil

                shutil.rmtree(dst)
        dst.symlink_to(Path(*([".."] * (2 if task == "vps" else 1))) / src.relative_to(Path(out_dir)),
                       target_is_directory=True)
        if task == "vps":
            pred = json.loads((rf.parent / doc["layout"]["json"]).read_text())
            entries += [a for a in pred["annotations"] if a.get("video_id") == video]
        counts[f"{task}_videos"] += 1
    if counts["vps_videos"]:
        atomic_write_text(sub / "pred.json", json.dumps({"annotations": entries}))
    return counts


def read_dense_maps(results_json: Union[str, Path], doc: Dict[str, Any]) -> Any:
    """The maps a :func:`save_dense_result` wrote beside ``results_json`` (``doc``: its content), read back frame by
    frame: VPS -> (FrameMaps of segment ids, segments), VSS -> FrameMaps of class indices."""
    from ..segmaps import FrameMaps

    folder = Path(results_json).parent / doc["layout"]["png"]
    names = doc["meta"].get("frame_names") or [f"{t:05d}.jpg" for t in range(doc["num_frames"])]
    maps = FrameMaps(doc["height"], doc["width"], np.int32)
    dataset = doc["meta"].get("dataset")
    if doc["task"] == "vps":
        segments = doc["segments"]
        colors = segment_colors(segments, dataset)
        back = {rgb2id(c): sid for sid, c in colors.items()}
        for name in names:
            rgb = cv2.imread(str(folder / f"{_stem(name)}.png"), cv2.IMREAD_COLOR)
            if rgb is None:
                raise FileNotFoundError(f"{folder / (_stem(name) + '.png')}: missing or unreadable")
            pan = rgb2id(rgb[..., ::-1])
            ids = np.zeros(pan.shape, np.int32)
            for value in np.unique(pan).tolist():
                if value:
                    ids[pan == value] = back[value]
            maps.append(ids)
        return maps, segments
    to_class = None
    if dataset in _VIPSEG_LIKE:
        to_class = np.zeros(256, np.int64)
        for i, c in enumerate(MODEL_ORDER):
            to_class[c[0]] = i
    for name in names:
        img = cv2.imread(str(folder / f"{_stem(name)}.png"), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise FileNotFoundError(f"{folder / (_stem(name) + '.png')}: missing or unreadable")
        maps.append(to_class[img] if to_class is not None else img)
    return maps
