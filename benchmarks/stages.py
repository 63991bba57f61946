"""The DVIS pipeline stage by stage, for ``speed.py``: every stage timed on its own (:class:`Timer` synchronises
the device around each) or FLOP-counted. Imports only ``common``."""
from __future__ import annotations

import contextlib
import re
import time
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import torch

from common import DTYPES, Timer  # noqa: F401
from dvis_sdk.ops.postprocess import postprocess_vis
from dvis_sdk.runtime import frames_to_device

STAGES = ("decode", "preprocess", "backbone", "adapter", "pixel_decoder", "decoder", "tracker", "refiner",
          "postprocess")


class _ViTHooks:
    """Times the ViT blocks (+ patch embedding) inside a ViT-Adapter so ``adapter`` = backbone - ViT."""

    def __init__(self, backbone: torch.nn.Module, timer: Timer):
        self.handles = []
        self.timer = timer
        self.seconds = 0.0
        self._t0 = self._c0 = 0.0
        self.cpu_seconds = 0.0
        vit = getattr(backbone, "vit_module", None)
        if vit is None:
            return
        for m in [vit.patch_embed, *vit.blocks]:
            self.handles.append(m.register_forward_pre_hook(self._pre))
            self.handles.append(m.register_forward_hook(self._post))

    @property
    def active(self) -> bool:
        return bool(self.handles)

    def _pre(self, *_: Any) -> None:
        self.timer.sync()
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def _post(self, *_: Any) -> None:
        self.timer.sync()
        self.seconds += time.perf_counter() - self._t0
        self.cpu_seconds += time.process_time() - self._c0

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []





# --------------------------------------------------------------------------------------------------------------
# the pipeline, stage by stage
# --------------------------------------------------------------------------------------------------------------
def _to_device(chunk: np.ndarray, device: torch.device) -> torch.Tensor:
    # uint8 over the bus (4x less than float), pinned + non-blocking on CUDA
    return frames_to_device(torch.from_numpy(chunk).permute(0, 3, 1, 2), device).float()


def _chunks(source: Any, frames: np.ndarray, window: int) -> Iterator[Tuple[int, np.ndarray]]:
    if source is not None:
        yield from source.iter_chunks(window)
    else:
        for s in range(0, len(frames), window):
            yield s, frames[s:s + window]


def run_pipeline(model: Any, source: Any, frames: np.ndarray, window: int, device: torch.device, dtype: str,
                 timer: Optional[Timer] = None, max_windows: Optional[int] = None,
                 flops: Optional[Dict[str, int]] = None, prefetch: bool = False) -> Tuple[int, Any]:
    """Decode -> results over the video. With ``timer``: per-stage times; with ``flops``: FLOPs per stage.
    Returns (frames processed, VISOutput)."""
    from dvis_sdk.io import prefetch as prefetch_iter

    offline = getattr(model, "refiner", None) is not None
    tm = timer or (lambda stage: contextlib.nullcontext())
    autocast = (torch.autocast(device.type, enabled=False) if dtype == "fp32"
                else torch.autocast(device.type, dtype=DTYPES[dtype]))

    def counted(stage: str):
        if flops is None:
            return contextlib.nullcontext()
        return _FlopStage(flops, stage)

    it = _chunks(source, frames, window)
    if prefetch:
        it = prefetch_iter(it, depth=2)
    state, windows, logits, masks = None, [], [], []
    n_frames, image_size, padded = 0, None, None
    with torch.no_grad(), autocast:
        while True:
            with tm("decode"):
                item = next(it, None)
            if item is None or (max_windows is not None and len(logits) + len(windows) >= max_windows):
                break
            _, chunk = item
            with tm("preprocess"):
                x = _to_device(chunk, device)
                image_size = tuple(x.shape[-2:])
                images = model.preprocess(x)
                padded = tuple(images.shape[-2:])
            with tm("backbone"), counted("backbone"):
                features = model.backbone(images)
            with tm("pixel_decoder"), counted("pixel_decoder"):
                mask_features, _, multi_scale = model.pixel_decoder.forward_features(features)
            with tm("decoder"), counted("decoder"):
                seg = model.decoder(multi_scale, mask_features)
                seg.pop("aux_outputs", None)
                seg["mask_features"] = mask_features
            with tm("tracker"), counted("tracker"):
                trk, state, _ = model.track(seg, state)
            n_frames += chunk.shape[0]
            if offline:
                trk.pop("pred_masks", None)
                windows.append((seg, trk))
            else:
                logits.append(trk["pred_logits"])
                masks.append(trk["pred_masks"])
            del features, multi_scale
        if offline:
            from dvis_sdk.models.dvis import WindowOutput

            wos = [WindowOutput(start=0, segmenter=s, tracker=t, indices=torch.empty(0), state=state)
                   for s, t in windows]
            with tm("refiner"), counted("refiner"):
                refined = model.refiner(**model.refiner_inputs(wos))
            online_logits = torch.cat([t["pred_logits"] for _, t in windows], dim=1)
            pred_cls, aux_cls = refined["pred_logits"][0].float().mean(0), online_logits[0].float().mean(0)
            pred_masks = refined["pred_masks"][0]
        else:
            pred_cls, aux_cls = torch.cat(logits, dim=1)[0].float().mean(0), None
            pred_masks = torch.cat(masks, dim=2)[0]
        with tm("postprocess"):
            out = postprocess_vis(pred_cls, pred_masks, padded, image_size, image_size, model.cfg.test.max_num,
                                  aux_pred_cls=aux_cls)
            out.masks = out.masks.cpu().numpy()
    return n_frames, out


class _FlopStage:
    def __init__(self, flops: Dict[str, int], stage: str):
        from torch.utils.flop_counter import FlopCounterMode

        self.flops, self.stage = flops, stage
        self.mode = FlopCounterMode(display=False)

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        total = self.mode.get_total_flops()
        if self.stage == "backbone":
            # ViT-Adapter: the ViT's own FLOPs are "backbone", the rest "adapter" (as for the times)
            vit = sum(sum(ops.values()) for name, ops in self.mode.get_flop_counts().items()
                      if re.search(r"\.vit_module\.(patch_embed|blocks\.\d+)$", name))
            if vit:
                self.flops["adapter"] = self.flops.get("adapter", 0) + total - vit
                total = vit
        self.flops[self.stage] = self.flops.get(self.stage, 0) + total
        return False
