"""``OnnxDVIS``: a DVIS model exported by :func:`~dvis_sdk.export.export_onnx`, run with ONNX Runtime.

It implements the model's steps over ONNX Runtime sessions with numpy / scipy glue: :meth:`OnnxDVIS.segment`
(one window), :meth:`OnnxDVIS.track` (the tracker's frame loop: Hungarian matching in scipy between graph calls,
explicit :class:`OnnxTrackerState`), :meth:`OnnxDVIS.refine` (offline), and :meth:`OnnxDVIS.forward`, the whole
window loop returning the same raw outputs as ``OnlineDVIS.forward`` / ``OfflineDVIS.forward`` (as numpy arrays).
Nothing here needs PyTorch weights; only numpy, scipy and onnxruntime are used at run time.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..config import DVISConfig

Arrays = Dict[str, np.ndarray]


@dataclass(frozen=True)
class OnnxTrackerState:
    """The tracker memory between windows of one video (numpy twin of ``models.tracker.TrackerState``).

    ``last_output`` (Q, 1, C): the last frame's last tracker layer output (the next frame's query comes from
    it); ``last_frame_embeds`` (Q, 1, C): the last frame's segmenter embeds in tracked order (the next frame is
    matched against it); ``num_frames``: frames tracked so far."""

    last_output: np.ndarray
    last_frame_embeds: np.ndarray
    num_frames: int


def cosine_cost(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """``1 - cos`` between (..., Q, C) sets in float32 (as the PyTorch tracker), NaN -> 0, returned as float64."""
    ref = ref.astype(np.float32)
    cur = cur.astype(np.float32)
    ref = ref / (np.linalg.norm(ref, axis=-1, keepdims=True) + np.float32(1e-6))
    cur = cur / (np.linalg.norm(cur, axis=-1, keepdims=True) + np.float32(1e-6))
    cost = np.float32(1) - ref @ np.swapaxes(cur, -1, -2)
    return np.nan_to_num(cost, nan=0.0).astype(np.float64)


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):  # a torch tensor, accepted for convenience
        return x.detach().cpu().float().numpy()
    return np.asarray(x)


class OnnxDVIS:
    """Run an exported DVIS folder with ONNX Runtime.

    Args:
        path: the folder written by ``export_onnx`` / ``dvis export``.
        providers: ONNX Runtime execution providers (default: CPU; e.g. ``["CUDAExecutionProvider",
            "CPUExecutionProvider"]``).
        threads: intra-op threads per session (None: ONNX Runtime's default).
    """

    backend = "onnxruntime"

    def __init__(self, path: Union[str, Path], providers: Optional[Sequence[str]] = None,
                 threads: Optional[int] = None):
        from .onnx_export import FORMAT, require_onnx

        require_onnx()
        import onnxruntime as ort

        self.path = Path(path)
        meta_path = self.path / "config.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found: export a model first (dvis export MODEL --format onnx "
                                    f"--out {self.path})")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a DVIS ONNX export (config.json has no \"format\": \"{FORMAT}\"); "
                             "export one with `dvis export MODEL --format onnx --out DIR`")
        self.cfg = DVISConfig.from_dict(self.meta["model_config"])
        self.plus = self.meta["variant"] == "dvis++"
        self.offline = "refiner" in self.meta["graphs"]
        self._inverse = bool(self.meta["tracker"]["inverse_matching"])
        self._permute_first = bool(self.meta["tracker"]["permute_first_reference"])
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.sessions = {name: ort.InferenceSession(str(self.path / g["file"]), opts, providers=self.providers)
                         for name, g in self.meta["graphs"].items()}

    @property
    def num_classes(self) -> int:
        return self.cfg.segmenter.num_classes

    def _run(self, name: str, **inputs: np.ndarray) -> Arrays:
        g = self.meta["graphs"][name]
        feed = {k: np.ascontiguousarray(inputs[k], dtype=np.float32) for k in g["inputs"]}
        return dict(zip(g["outputs"], self.sessions[name].run(None, feed)))

    # --- steps ------------------------------------------------------------------------------------------------
    def preprocess(self, frames) -> np.ndarray:
        """(T, 3, H, W) RGB 0..255 -> (x - mean) / std, zero-padded bottom/right to the graph's size multiple."""
        x = _as_numpy(frames).astype(np.float32)
        mean = np.asarray(self.meta["input"]["pixel_mean"], np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.meta["input"]["pixel_std"], np.float32).reshape(1, 3, 1, 1)
        x = (x - mean) / std
        d = int(self.meta["input"]["size_divisibility"])
        h, w = x.shape[-2:]
        hp, wp = int(math.ceil(h / d) * d), int(math.ceil(w / d) * d)
        if (hp, wp) != (h, w):
            x = np.pad(x, ((0, 0), (0, 0), (0, hp - h), (0, wp - w)))
        return x

    def segment(self, images) -> Arrays:
        """(t, 3, Hp, Wp) normalised padded frames -> ``pred_logits``, ``pred_masks``, ``pred_embds``,
        ``pred_embds_without_norm`` and ``mask_features`` (layouts as ``OnlineDVIS.segment``)."""
        images = _as_numpy(images)
        fixed = self.meta["graphs"]["segmenter"].get("fixed_size")
        if fixed and list(images.shape[-2:]) != list(fixed):
            raise ValueError(f"this export only runs at {fixed[0]}x{fixed[1]} (padded) frames, got "
                             f"{images.shape[-2]}x{images.shape[-1]}: export again with --size "
                             f"{images.shape[-2]}x{images.shape[-1]}")
        return self._run("segmenter", images=images)

    def track(self, seg: Arrays, state: Optional[OnnxTrackerState]) -> Tuple[Arrays, OnnxTrackerState, np.ndarray]:
        """The tracker on one window (as ``OnlineDVIS.track``): returns (``pred_logits`` (1, t, Q, K+1),
        ``pred_masks`` (1, Q, t, h, w), ``pred_embds`` (1, C, t, Q)), the new state and the (t, Q) indices."""
        embeds = np.transpose(_as_numpy(seg["pred_embds"]), (2, 3, 0, 1))  # (t, Q, 1, C)
        no_norm = np.transpose(_as_numpy(seg["pred_embds_without_norm"]), (2, 3, 0, 1))
        n_frame, n_q = embeds.shape[:2]
        if state is not None and state.last_frame_embeds.shape[0] != n_q:
            raise ValueError(f"state was built for Q={state.last_frame_embeds.shape[0]} queries, got Q={n_q}")
        first_ref = embeds[0] if state is None else state.last_frame_embeds
        refs = np.concatenate([first_ref[None], embeds[:-1]], 0)
        raw_cost = cosine_cost(refs[:, :, 0], embeds[:, :, 0])  # (t, Q, Q)
        ref_rows = np.arange(n_q)
        prev = None if state is None else state.last_output
        last_frame_embeds = first_ref
        outputs, references, applied = [], [], []
        for i in range(n_frame):
            cost = raw_cost[i][ref_rows]
            matched = linear_sum_assignment(cost.T if self._inverse else cost)[1].astype(np.int64)
            identity = no_norm[i][matched]
            applied.append(matched)
            if i == 0 and state is None and not self._permute_first:
                ref_rows, last_frame_embeds = np.arange(n_q), embeds[i]
            else:
                ref_rows, last_frame_embeds = matched, embeds[i][matched]
            if prev is None:
                out = (self._run("tracker_start", key=no_norm[i], identity=identity) if self.plus
                       else self._run("tracker_start", embeds=embeds[i]))
            else:
                out = self._run("tracker_step", key=no_norm[i], identity=identity, prev_output=prev)
            prev = out["output"]
            outputs.append(prev)
            if self.plus:
                references.append(out["reference"])
        heads_in = {"outputs": np.stack(outputs, 0), "mask_features": _as_numpy(seg["mask_features"])}
        if self.plus:
            heads_in["references"] = np.stack(references, 0)
        result = self._run("tracker_heads", **heads_in)
        new_state = OnnxTrackerState(last_output=prev, last_frame_embeds=last_frame_embeds,
                                     num_frames=n_frame + (0 if state is None else state.num_frames))
        return result, new_state, np.stack(applied, 0)

    def refiner_inputs(self, segs: List[Arrays], tracks: List[Arrays]) -> Arrays:
        """What the refiner receives, gathered over windows (as ``OfflineDVIS.refiner_inputs``)."""
        if not self.offline:
            raise ValueError(f"{self.path} holds an online model: it has no refiner")
        instance = np.concatenate([_as_numpy(t["pred_embds"]) for t in tracks], 2)
        mask_features = np.concatenate([_as_numpy(s["mask_features"]) for s in segs], 0)
        if self.plus:
            frame = np.concatenate([_as_numpy(s["pred_embds_without_norm"]) for s in segs], 2)
        else:
            frame = self._run("frame_forward", frame_embeds=np.concatenate([_as_numpy(s["pred_embds"]) for s in segs],
                                                                           2))["frame_embeds_out"]
        return {"instance_embeds": instance, "frame_embeds": frame, "mask_features": mask_features}

    def refine(self, instance_embeds, frame_embeds, mask_features) -> Arrays:
        """Offline refiner over a clip: (1, C, T, Q), (1, C, T, Q), (T, M, h, w) -> ``pred_logits`` (1, T, Q, K+1),
        ``pred_masks`` (1, Q, T, h, w), ``pred_embds`` (1, C, T, Q)."""
        return self._run("refiner", instance_embeds=_as_numpy(instance_embeds), frame_embeds=_as_numpy(frame_embeds),
                         mask_features=_as_numpy(mask_features))

    # --- whole video --------------------------------------------------------------------------------------------
    def forward(self, images, window_size: Optional[int] = None, use_refiner: bool = True) -> Arrays:
        """Raw outputs of the whole (t, 3, Hp, Wp) video, as ``OnlineDVIS.forward`` / ``OfflineDVIS.forward``."""
        images = _as_numpy(images)
        window_size = window_size or self.cfg.test.window_size
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        state = None
        segs, tracks = [], []
        for s in range(0, images.shape[0], window_size):
            seg = self.segment(images[s:s + window_size])
            trk, state, _ = self.track(seg, state)
            segs.append(seg)
            tracks.append(trk)
        online_logits = np.concatenate([t["pred_logits"] for t in tracks], 1)
        if not (self.offline and use_refiner):
            return {"pred_logits": online_logits, "pred_masks": np.concatenate([t["pred_masks"] for t in tracks], 2),
                    "pred_cls": online_logits[0].mean(0)}
        refined = self.refine(**self.refiner_inputs(segs, tracks))
        return {"pred_logits": refined["pred_logits"], "pred_masks": refined["pred_masks"],
                "pred_embds": refined["pred_embds"], "online_pred_logits": online_logits,
                "pred_cls": refined["pred_logits"][0].mean(0), "aux_pred_cls": online_logits[0].mean(0)}

    __call__ = forward
