"""Helpers shared by the benchmark scripts (imported by them; it imports none of them): model presets and
configs, resolutions, synthetic videos, device synchronisation, timers, memory figures and result files."""
from __future__ import annotations

import contextlib
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if (ROOT / "dvis_sdk").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dvis_sdk.config import DVISConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

RESOLUTIONS = {"240p": (240, 426), "360p": (360, 640), "480p": (480, 854), "720p": (720, 1280)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _tiny(variant: str = "dvis++", mode: str = "online", backbone: str = "resnet") -> DVISConfig:
    """A few-MFLOP model of the same architecture (the sizes of the test fixtures)."""
    bb: Dict[str, Any] = {"type": backbone}
    if backbone == "resnet":
        bb["resnet"] = {"depth": 50, "stem_out_channels": 16, "res2_out_channels": 32, "width_per_group": 8}
    else:
        bb["vit_adapter"] = {"embed_dim": 64, "depth": 4, "num_heads": 4, "conv_inplane": 16, "deform_num_heads": 4,
                             "interaction_indexes": [[0, 0], [1, 1], [2, 2], [3, 3]]}
    return DVISConfig.from_dict({
        "variant": variant, "mode": mode, "backbone": bb,
        "segmenter": {"num_classes": 5, "convs_dim": 64, "mask_dim": 32, "transformer_enc_layers": 1,
                      "transformer_enc_nheads": 4, "hidden_dim": 32, "num_queries": 10, "nheads": 4,
                      "dim_feedforward": 64, "dec_layers": 4, "reid_hidden_dim": 32},
        "tracker": {"decoder_layers": 2}, "refiner": {"decoder_layers": 2} if mode == "offline" else None,
        "test": {"window_size": 3, "max_num": 10},
    })


PRESETS = {"tiny": lambda mode: _tiny(mode=mode), "tiny-vit": lambda mode: _tiny(mode=mode, backbone="vit_adapter"),
           "tiny-dvis": lambda mode: _tiny(variant="dvis", mode=mode)}


def load_config(name: str, mode: Optional[str]) -> DVISConfig:
    if name in PRESETS:
        return PRESETS[name](mode or "online")
    if name.endswith(".json"):
        cfg = DVISConfig.from_json(name)
        if mode and mode != cfg.mode:
            d = cfg.to_dict()
            d["mode"], d["refiner"] = mode, ({"decoder_layers": 6} if mode == "offline" else None)
            cfg = DVISConfig.from_dict(d)
        return cfg
    from dvis_sdk.official import load_official_config

    return load_official_config(name, mode=mode)


def parse_resolution(text: str) -> Tuple[int, int]:
    if text in RESOLUTIONS:
        return RESOLUTIONS[text]
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(
            f"--resolution: expected one of {sorted(RESOLUTIONS)} or HxW (e.g. 360x640), got {text!r}"
        ) from None
    if h < 32 or w < 32:
        raise SystemExit(f"--resolution {text}: both sides must be at least 32")
    return h, w


class Timer:
    """Accumulates wall time per stage; synchronises the device around every stage."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: Dict[str, float] = {}
        self.cpu_seconds: Dict[str, float] = {}  # process CPU time: robust to other processes on a shared CPU

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.sync()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.sync()
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0
            self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + time.process_time() - c0


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2 ** 20


def synthetic_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Moving rectangles on a textured background (what the decoder sees hardly matters for speed)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    bg = np.repeat(np.repeat(base, 8, 0), 8, 1)[:h, :w]
    frames = np.empty((n, h, w, 3), dtype=np.uint8)
    for t in range(n):
        f = bg.copy()
        for k in range(3):
            y = int((0.2 + 0.25 * k) * h)
            x = int((0.1 + 0.02 * t * (k + 1)) * w) % max(1, w - w // 6)
            f[y:y + h // 5, x:x + w // 6] = (80 * k + 60, 200 - 50 * k, 40 * (k + 1))
        frames[t] = f
    return frames


def write_test_video(path: Path, frames: np.ndarray) -> Optional[Path]:
    from dvis_sdk.io import write_video

    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return write_video(path, iter(frames), fps=24.0)
    except Exception as e:  # no encoder: fall back to in-memory frames (decode is then not measured)
        print(f"[speed] could not encode a test video ({type(e).__name__}: {e}); decode not measured", file=sys.stderr)
        return None


# the official R50 OVIS DVIS++ config, narrowed to a CPU-sized model with the official 100 queries
TINY_CFG = {
    "MODEL": {
        "META_ARCHITECTURE": "DVIS_Plus_online",
        "BACKBONE": {"NAME": "build_resnet_backbone"},
        "RESNETS": {"DEPTH": 50, "WIDTH_PER_GROUP": 8, "RES2_OUT_CHANNELS": 32, "STEM_OUT_CHANNELS": 16},
        "SEM_SEG_HEAD": {"NUM_CLASSES": 25, "CONVS_DIM": 64, "MASK_DIM": 64, "TRANSFORMER_ENC_LAYERS": 1},
        "MASK_FORMER": {"NHEADS": 4, "DIM_FEEDFORWARD": 128, "DEC_LAYERS": 4, "HIDDEN_DIM": 64,
                        "NUM_OBJECT_QUERIES": 100, "REID_HIDDEN_DIM": 64,
                        "TEST": {"WINDOW_SIZE": 5, "MAX_NUM": 20}},
        "TRACKER": {"DECODER_LAYERS": 2},
        "REFINER": {"DECODER_LAYERS": 2},
    },
    "INPUT": {"MIN_SIZE_TEST": 240, "MAX_SIZE_TEST": 1333},
}


def build_segmenter(config: str, mode: str, device: str, dtype: str, chunk_size: int, min_size: int = 0,
                    **kwargs: Any):
    """A ``VideoSegmenter`` with random weights: ``config`` 'tiny' (TINY_CFG) or a shipped official yaml."""
    from dvis_sdk import VideoSegmenter
    from dvis_sdk.official import load_official_config, official_cfg_tree
    from dvis_sdk.official.merge import deep_merge

    if config == "tiny":  # the official R50 OVIS config, narrowed
        tree = deep_merge(official_cfg_tree("ovis/DVIS_Plus_Offline_R50.yaml"), TINY_CFG)
        cfg = load_official_config(tree, mode=mode)
    else:
        cfg = load_official_config(config, mode=mode)
    if min_size:
        cfg.input.min_size_test = min_size
    torch.manual_seed(0)
    from dvis_sdk.models.dvis import build_model
    return VideoSegmenter(build_model(cfg), device=device, dtype=dtype, chunk_size=chunk_size, **kwargs)


def sync(device: Any = None) -> None:
    """Wait for the queued work of ``device`` (the one in use, not just the current one); no-op on CPU."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is None and torch.cuda.is_available():
        torch.cuda.synchronize()


def best_of(fn: Any, repeat: int, device: Any = None) -> float:
    """Least wall time of ``repeat`` calls of ``fn`` (each synchronised on ``device``): other processes on a
    shared machine only ever make a run slower."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def environment(device: Any = None) -> Dict[str, Any]:
    """Where a figure was measured: torch version, CPU threads, device name."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"}


def write_json(data: Any, path: Any) -> Path:
    """Write ``data`` as indented JSON (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
