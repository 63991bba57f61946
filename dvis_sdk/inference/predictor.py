"""``VideoSegmenter``: the user-facing predictor (load weights, preprocess, run, post-process)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..config import DVISConfig
from ..models.dvis import OnlineDVIS, build_model
from ..results import Instance, VideoResult

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: Union[str, torch.device]) -> torch.device:
    """"auto" -> cuda if available else cpu; a CUDA request without CUDA is a clear error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} requested but CUDA is not available on this machine; "
                           "use device='cpu' or 'auto'")
    return dev


def frames_to_tensor(frames: Any) -> torch.Tensor:
    """Accept (T, H, W, 3) uint8 RGB numpy, a list of (H, W, 3) uint8 arrays, or a (T, 3, H, W) tensor;
    return a (T, 3, H, W) float32 tensor in 0..255. Grayscale / RGBA / empty input is a clear error."""
    if isinstance(frames, torch.Tensor):
        x = frames
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"a frame tensor must be (T, 3, H, W) RGB, got shape {tuple(x.shape)}")
        return x.to(torch.float32)
    from .video_io import open_video

    src = open_video(frames)  # validates shape, channels, dtype and equal sizes (VideoReadError is a ValueError)
    arr = np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else np.stack([f for _, f in src])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).to(torch.float32)


class VideoSegmenter:
    """Video instance segmentation with a DVIS / DVIS++ model.

    >>> seg = VideoSegmenter.from_official("DVIS_Plus_Online_R50.yaml", "model_final.pth")  # doctest: +SKIP
    >>> result = seg.predict(frames)                                                        # doctest: +SKIP
    """

    def __init__(self, model: OnlineDVIS, device: Union[str, torch.device] = "cpu", dtype: str = "fp32",
                 window_size: Optional[int] = None):
        self.device = resolve_device(device)
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}")
        if dtype == "fp16" and self.device.type == "cpu":
            warnings.warn("fp16 is not supported on CPU; falling back to fp32", stacklevel=2)
            dtype = "fp32"
        self.dtype = dtype
        self.model = model.to(self.device).eval()
        self.window_size = window_size or model.cfg.test.window_size

    @property
    def cfg(self) -> DVISConfig:
        return self.model.cfg

    @classmethod
    def from_config(cls, cfg: DVISConfig, state_dict: Optional[Mapping[str, torch.Tensor]] = None,
                    **kwargs: Any) -> "VideoSegmenter":
        """Build from a :class:`DVISConfig` and a state dict with our key names (strict)."""
        model = build_model(cfg)
        if state_dict is not None:
            load_state_dict_strict(model, state_dict)
        return cls(model, **kwargs)

    @classmethod
    def from_official(cls, cfg: Union[str, Path, Mapping, DVISConfig], checkpoint: Union[str, Path, Mapping],
                      mode: Optional[str] = None, **kwargs: Any) -> "VideoSegmenter":
        """Official yaml (or cfg dict, or DVISConfig) + official checkpoint (path to .pth / .safetensors, or a
        state dict / detectron2 ``{"model": ...}`` dict)."""
        from ..convert import convert_official_state_dict, load_official_checkpoint, load_official_config

        config = cfg if isinstance(cfg, DVISConfig) else load_official_config(cfg, mode=mode)
        sd = load_official_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
        return cls.from_config(config, convert_official_state_dict(sd, config), **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path: Optional[Union[str, Path]] = None, mode: Optional[str] = None,
                        cache_dir: Optional[Union[str, Path]] = None, revision: Optional[str] = None,
                        token: Union[str, bool, None] = None, **kwargs: Any) -> "VideoSegmenter":
        """A manifest name (``dvis_sdk.hub.list_models()``; default: the manifest's default model), a directory
        written by :meth:`save_pretrained`, or a Hub repo id holding one. ``mode`` overrides online/offline
        (an offline model runs online without its refiner)."""
        from ..hub import default_model_name, resolve_weights

        resolved = resolve_weights(name_or_path or default_model_name(), cache_dir=cache_dir, revision=revision,
                                   token=token)
        cfg, sd = resolved.config, resolved.state_dict
        if mode is not None and mode != cfg.mode:
            cfg = _with_mode(cfg, mode)
            if mode == "online":
                sd = {k: v for k, v in sd.items() if not k.startswith("refiner.")}
        return cls.from_config(cfg, sd, **kwargs)

    def save_pretrained(self, directory: Union[str, Path]) -> Path:
        """Write ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` reads them back."""
        from ..hub import save_pretrained

        return save_pretrained(self.model, directory, config=self.cfg)

    @torch.no_grad()
    def predict(self, frames: Any, resize: bool = True, max_frames: Optional[int] = None, stride: int = 1,
                progress: bool = False) -> VideoResult:
        """Segment and track the instances of one video.

        Args:
            frames: a video file or a folder of frames (path), a (T, H, W, 3) uint8 RGB array, a list of
                (H, W, 3) arrays, or a (T, 3, H, W) tensor.
            resize: resize the shortest edge to the model's test size (official pipeline). ``False`` for frames
                already at model size.
            max_frames, stride: for paths, read at most ``max_frames`` frames, every ``stride``-th.
        """
        if isinstance(frames, (str, Path)):
            from .video_io import open_video

            src = open_video(frames, stride=stride, max_frames=max_frames)
            it = src
            if progress:
                from tqdm import tqdm
                it = tqdm(src, total=len(src), desc=src.name, unit="frame", leave=False)
            frames = [f for _, f in it]
        x = frames_to_tensor(frames)
        t, _, h, w = x.shape
        if resize:
            from ..inference.preprocess import resize_frame, resized_shape
            size = resized_shape(h, w, self.cfg.input.min_size_test, self.cfg.input.max_size_test)
            if size != (h, w):
                np_frames = x.permute(0, 2, 3, 1).to(torch.uint8).numpy()
                x = torch.from_numpy(np.stack([resize_frame(f, size) for f in np_frames])).permute(0, 3, 1, 2).float()
        with self._autocast():
            out = self.model.inference(x.to(self.device), output_size=(h, w), window_size=self.window_size)
        names = self.cfg.class_names
        instances = [
            Instance(track_id=int(i), label=int(l), score=float(s), masks=m.cpu().numpy(),
                     label_name=names[int(l)] if names else None)
            for s, l, i, m in zip(out.scores.tolist(), out.labels.tolist(), out.ids.tolist(), out.masks)
        ]
        instances.sort(key=lambda inst: -inst.score)
        return VideoResult(instances=instances, num_frames=t, height=h, width=w, class_names=names)

    def _autocast(self):
        if self.dtype == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=_DTYPES[self.dtype])


def _with_mode(cfg: DVISConfig, mode: str) -> DVISConfig:
    d = cfg.to_dict()
    d["mode"] = mode
    if mode == "online":
        d["refiner"] = None
    return DVISConfig.from_dict(d)


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing missing / unexpected keys and bad shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state_dict) if tuple(own[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or shapes:
        def fmt(keys: Sequence[str]) -> str:
            return f"{keys[:10]}{' ...' if len(keys) > 10 else ''}"
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {fmt(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {fmt(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {fmt(shapes)}")
        raise ValueError("weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
