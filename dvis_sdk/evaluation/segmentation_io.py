"""Reading the VIPSeg (video panoptic) and VSPW (video semantic) evaluation inputs: JSON files, PNG frames, folders.

Only IO lives here; the metrics (:mod:`.vpq`, :mod:`.stq`, :mod:`.vss`) work on the arrays it returns. Frames are
read exactly as the official scripts read them (``np.array(PIL.Image.open(path))``): a panoptic PNG's id is
``R + 256 G + 65536 B`` of its first three channels, a semantic PNG's value is its stored value (a palette PNG
gives its indices, not colours).
"""
from __future__ import annotations

import io
import json
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from .ytvis import EvaluationInputError

PathOrData = Union[str, Path, Mapping[str, Any]]
T = TypeVar("T")


def load_json(obj: PathOrData, what: str) -> Any:
    """A JSON file's content, or ``obj`` itself when it is already loaded."""
    if isinstance(obj, Mapping):
        return obj
    path = Path(obj)
    if path.is_dir() and (path / "pred.json").is_file():
        path = path / "pred.json"
    if not path.is_file():
        raise EvaluationInputError(f"{what}: {path} is not a file (give the path of the JSON file)")
    try:
        with open(path, "r") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise EvaluationInputError(f"{what}: {path} is not valid JSON ({e})") from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EvaluationInputError(f"missing frame {path} (every ground-truth frame needs a prediction PNG of "
                                   f"the same name)") from None
    except OSError as e:
        raise EvaluationInputError(f"cannot read {path} ({e})") from None


def _png_format(data: bytes) -> Tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR chunk, or (0, -1) when ``data`` is not a PNG."""
    if len(data) < 26 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return 0, -1
    return data[24], data[25]


def _pil_array(data: bytes, path: Path) -> np.ndarray:
    """``np.array(PIL.Image.open(path))``: what the official scripts read (palette PNGs give their indices)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.array(im)
    except OSError as e:
        raise EvaluationInputError(f"cannot read {path} as an image ({e})") from None


def _cv2_decode(data: bytes, path: Path) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise EvaluationInputError(f"cannot decode {path} as a PNG")
    return img


def read_panoptic_png(path: Union[str, Path]) -> np.ndarray:
    """Segment ids ``R + 256 G + 65536 B`` of an RGB(A) panoptic PNG, (H, W) uint32."""
    path = Path(path)
    data = _read_bytes(path)
    depth, ctype = _png_format(data)
    if depth == 8 and ctype in (2, 6):   # 8-bit RGB / RGBA: OpenCV decodes to BGR(A), a little faster than PIL
        import cv2

        bgr = _cv2_decode(data, path)
        rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA if bgr.shape[2] == 3 else cv2.COLOR_BGRA2RGBA)
        ids = rgba.view("<u4")[..., 0]     # R + 256 G + 65536 B + 2^24 A, little-endian
        ids &= 0xFFFFFF
        return ids
    img = _pil_array(data, path)
    if img.ndim != 3 or img.shape[2] < 3:
        raise EvaluationInputError(f"{path}: a panoptic PNG must be RGB (id = R + 256 G + 65536 B), got shape "
                                   f"{img.shape}")
    if img.dtype != np.uint8:
        raise EvaluationInputError(f"{path}: a panoptic PNG must have 8-bit channels, got {img.dtype}")
    buf = np.zeros(img.shape[:2] + (4,), np.uint8)
    buf[..., :3] = img[..., :3]
    return buf.view("<u4")[..., 0]


def read_label_png(path: Union[str, Path]) -> np.ndarray:
    """The stored values of a single-channel label PNG (class indices; a palette PNG's indices), (H, W)."""
    path = Path(path)
    data = _read_bytes(path)
    depth, ctype = _png_format(data)
    img = _cv2_decode(data, path) if ctype == 0 and depth in (8, 16) else None
    if img is None or img.ndim != 2:     # palette, low bit depth, or a transparency chunk OpenCV expands: PIL
        img = _pil_array(data, path)
    if img.ndim != 2:
        raise EvaluationInputError(f"{path}: a semantic label PNG must have one channel (class indices), got "
                                   f"shape {img.shape}")
    return img


def prefetch(fn: Callable[[Any], T], items: Sequence[Any], workers: int) -> Iterator[T]:
    """``map(fn, items)`` in order; with ``workers > 1`` a thread pool reads up to ``2 * workers`` items ahead
    (PNG decoding releases the GIL), so memory stays bounded on long videos."""
    if workers <= 1 or len(items) < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: Deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# ---- VIPSeg ------------------------------------------------------------------------------------------------------
@dataclass
class VPSVideo:
    """One video of a VIPSeg evaluation: frame paths and the per-frame ``segments_info`` lists, in GT order."""
    video_id: str
    gt_paths: List[Path]
    pred_paths: List[Path]
    gt_segments: List[List[Mapping[str, Any]]]
    pred_segments: List[List[Mapping[str, Any]]]
    gt_all_segments: List[List[Mapping[str, Any]]]     # every GT annotation of the video (STQ numbers ids on them)
    pred_all_segments: List[List[Mapping[str, Any]]]


def _segments(ann: Any, where: str) -> List[Mapping[str, Any]]:
    if not isinstance(ann, Mapping) or not isinstance(ann.get("segments_info"), list):
        raise EvaluationInputError(f"{where}: a frame annotation needs a 'segments_info' list")
    for i, el in enumerate(ann["segments_info"]):
        if not isinstance(el, Mapping) or "id" not in el or "category_id" not in el:
            raise EvaluationInputError(f"{where}, segments_info[{i}]: a segment needs 'id' and 'category_id'")
    return ann["segments_info"]


def _by_video(data: Any, what: str) -> dict:
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise EvaluationInputError(f"{what}: expected a JSON object with an 'annotations' list (VIPSeg layout)")
    out = {}
    for i, entry in enumerate(data["annotations"]):
        if not isinstance(entry, Mapping) or "video_id" not in entry or not isinstance(entry.get("annotations"),
                                                                                        list):
            raise EvaluationInputError(f"{what}: annotations[{i}] needs 'video_id' and an 'annotations' list")
        out[entry["video_id"]] = entry["annotations"]   # a repeated video: the last entry wins, as officially
    return out


def vipseg_videos(gt: Any, pred: Any, gt_dir: Union[str, Path], pred_dir: Union[str, Path]) -> List[VPSVideo]:
    """Pair the GT and prediction JSONs video by video, as ``eval_vpq_vspw.py`` / ``eval_stq_vspw.py`` do.

    Videos follow the GT ``videos`` list; frame ``i`` of a video is GT ``images[i]`` (its ``file_name`` names both
    PNGs), GT ``annotations[i]`` and prediction ``annotations[i]``: the prediction's own ``file_name`` is not read
    (position decides). The official ``zip`` keeps the shortest of the three lists.
    """
    if not isinstance(gt, Mapping) or not isinstance(gt.get("videos"), list) or not isinstance(
            gt.get("categories"), list):
        raise EvaluationInputError("ground truth: expected the VIPSeg layout (videos, annotations, categories)")
    gt_by, pred_by = _by_video(gt, "ground truth"), _by_video(pred, "predictions")
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    out = []
    for v, video in enumerate(gt["videos"]):
        if not isinstance(video, Mapping) or "video_id" not in video or not isinstance(video.get("images"), list):
            raise EvaluationInputError(f"ground truth: videos[{v}] needs 'video_id' and an 'images' list")
        vid = video["video_id"]
        if vid not in gt_by:
            raise EvaluationInputError(f"ground truth: video {vid!r} has no entry in 'annotations'")
        if vid not in pred_by:
            raise EvaluationInputError(f"predictions: video {vid!r} is missing (pred.json needs every ground-truth "
                                       f"video)")
        g_anns, p_anns = gt_by[vid], pred_by[vid]
        if len(g_anns) != len(p_anns):
            raise EvaluationInputError(f"predictions: video {vid!r} has {len(p_anns)} frame annotations, the ground "
                                       f"truth {len(g_anns)}")
        n = min(len(g_anns), len(video["images"]))
        names = []
        for i in range(n):
            img = video["images"][i]
            if not isinstance(img, Mapping) or "file_name" not in img:
                raise EvaluationInputError(f"ground truth: video {vid!r}, images[{i}] needs a 'file_name'")
            names.append(str(img["file_name"]))
        g_all = [_segments(a, f"ground truth, video {vid!r}, frame {i}") for i, a in enumerate(g_anns)]
        p_all = [_segments(a, f"predictions, video {vid!r}, frame {i}") for i, a in enumerate(p_anns)]
        out.append(VPSVideo(str(vid), [gt_dir / str(vid) / nm for nm in names],
                            [pred_dir / str(vid) / nm for nm in names], g_all[:n], p_all[:n], g_all, p_all))
    return out


# ---- VSPW --------------------------------------------------------------------------------------------------------
def vspw_videos(root: Union[str, Path], split: str = "val.txt") -> List[Tuple[str, List[str]]]:
    """``(video, sorted frame file names)`` for each line of ``<root>/<split>``, in file order (repeats kept)."""
    root = Path(root)
    lst = root / split
    if not lst.is_file():
        raise EvaluationInputError(f"{lst} not found (give the VSPW root: it holds {split} and data/)")
    # the official `line[:-1]` drops the last character of every line; here the line ending only (a last line
    # without a newline would lose a real character there and fail)
    names = [ln.rstrip("\r\n") for ln in lst.read_text().splitlines()]
    out = []
    for name in names:
        if not name.strip():
            continue
        mask_dir = root / "data" / name / "mask"
        if not mask_dir.is_dir():
            raise EvaluationInputError(f"{mask_dir} not found (video {name!r} of {split})")
        out.append((name, sorted(p.name for p in mask_dir.iterdir() if p.is_file())))
    return out


def frame_pairs(root: Union[str, Path], pred_dir: Union[str, Path], video: str, frames: Iterable[str]
                ) -> List[Tuple[Path, Path]]:
    """(GT mask path, prediction path) of each frame of a VSPW video."""
    root, pred_dir = Path(root), Path(pred_dir)
    return [(root / "data" / video / "mask" / f, pred_dir / video / f) for f in frames]


def default_pred_dir(pred_json: Any, pred_dir: Optional[Union[str, Path]]) -> Path:
    """The prediction PNG folder: ``pred_dir``, else next to ``pred.json`` (its ``pan_pred/`` when there is one,
    the official submission layout)."""
    if pred_dir is not None:
        return Path(pred_dir)
    if isinstance(pred_json, Mapping):
        raise EvaluationInputError("pred_dir is required when the predictions are given as a loaded dict")
    base = Path(pred_json)
    base = base if base.is_dir() else base.parent
    return base / "pan_pred" if (base / "pan_pred").is_dir() else base


# ---- predictions used as ground truth (round trips) ---------------------------------------------------------------
def vipseg_gt_from_predictions(pred_json: PathOrData, categories: Sequence[Mapping[str, Any]]) -> dict:
    """A VIPSeg GT JSON (``videos``, ``annotations``, ``categories``) describing a ``pred.json``: scoring the
    predictions against it (GT PNG folder = their PNG folder) gives VPQ 100. A frame's PNG name is its
    ``file_name`` stem + ``.png``, as the writers (official and ``dvis predict``) save them; segments carry no
    ``area`` (the GT PNGs' pixel counts are used)."""
    pred = load_json(pred_json, "predictions")
    by_video = _by_video(pred, "predictions")
    videos, annotations = [], []
    for vid, anns in by_video.items():
        images, frames = [], []
        for i, ann in enumerate(anns):
            name = Path(str(ann.get("file_name", f"{i:05d}.png"))).stem + ".png"
            images.append({"id": Path(name).stem, "file_name": name})
            frames.append({"image_id": Path(name).stem, "file_name": name,
                           # no 'area': a prediction's JSON areas need not be its pixels; the PNG's are used
                           "segments_info": [{"id": s["id"], "category_id": s["category_id"], "iscrowd": 0} for s in
                                             _segments(ann, f"predictions, video {vid!r}, frame {i}")]})
        videos.append({"video_id": vid, "images": images})
        annotations.append({"video_id": vid, "annotations": frames})
    return {"videos": videos, "annotations": annotations, "categories": [dict(c) for c in categories]}


def vspw_gt_from_predictions(pred_dir: Union[str, Path], out_root: Union[str, Path],
                             videos: Optional[Sequence[str]] = None) -> Path:
    """Write a VSPW root (``val.txt``, ``data/<video>/mask/*.png`` = prediction + 1) from a prediction folder:
    scoring the predictions against it gives mIoU 1.0. ``videos``: default every sub-folder."""
    from PIL import Image

    pred_dir, out_root = Path(pred_dir), Path(out_root)
    names = list(videos) if videos is not None else sorted(p.name for p in pred_dir.iterdir() if p.is_dir())
    for name in names:
        mask_dir = out_root / "data" / name / "mask"
        mask_dir.mkdir(parents=True, exist_ok=True)
        for png in sorted((pred_dir / name).glob("*.png")):
            values = read_label_png(png).astype(np.int64) + 1        # GT value c is class c - 1
            if values.max(initial=0) > 255:
                raise EvaluationInputError(f"{png}: class {values.max() - 1} does not fit a VSPW 8-bit label")
            Image.fromarray(values.astype(np.uint8)).save(mask_dir / png.name)
    (out_root / "val.txt").write_text("".join(n + "\n" for n in names))
    return out_root
