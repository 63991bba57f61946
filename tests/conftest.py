"""Shared helpers: load the vendored official-code fixtures and compare at the stated tolerance."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).parent / "fixtures"


class Fixture:
    """One reference fixture: ``weights`` (official key names), ``io`` (in.* / out.*), ``meta``, ``config``."""

    def __init__(self, name: str):
        self.dir = FIXTURES / name
        if not self.dir.is_dir():
            raise FileNotFoundError(f"fixture {name!r} not found in {FIXTURES}")
        self.weights = load_file(str(self.dir / "weights.safetensors"))
        self.io = load_file(str(self.dir / "io.safetensors"))
        self.meta = json.loads((self.dir / "meta.json").read_text())
        cfg = self.dir / "config.json"
        self.config = json.loads(cfg.read_text()) if cfg.exists() else None

    def prefixed(self, prefix: str) -> dict:
        """Weights whose keys start with ``prefix``, with the prefix stripped."""
        return {k[len(prefix):]: v for k, v in self.weights.items() if k.startswith(prefix)}


def load_fixture(name: str) -> Fixture:
    return Fixture(name)


# offline end-to-end fixtures store only the refiner; the rest is their online fixture's (bit-identical)
_ONLINE_BASE = {"10_e2e_offline_vit_adapter": "09_e2e_online_vit_adapter",
                "17_e2e_offline_daq_r50": "16_e2e_online_daq_r50"}


def official_weights(name: str) -> dict:
    """The whole official state dict of an end-to-end fixture (offline ones completed from their online base)."""
    fx = load_fixture(name)
    base = _ONLINE_BASE.get(name)
    return {**load_fixture(base).weights, **fx.weights} if base else fx.weights


def build_fixture_model(name: str):
    """(fixture, cfg, model) of an end-to-end fixture: its official config and weights through the converter."""
    import dvis_sdk
    from dvis_sdk.official import convert_official_state_dict, load_official_config

    fx = load_fixture(name)
    cfg = load_official_config(fx.config)
    model = dvis_sdk.build_model(cfg)
    model.load_state_dict(convert_official_state_dict(official_weights(name), cfg), strict=True)
    return fx, cfg, model


def assert_close_ref(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> float:
    """The fixture README's component tolerance: |a - e| <= 1e-4 * max|e| + 1e-5. Returns the max error."""
    actual = actual.detach().to(torch.float32).cpu()
    expected = expected.to(torch.float32)
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    atol = 1e-4 * expected.abs().max().item() + 1e-5
    torch.testing.assert_close(actual, expected, rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")
    return (actual - expected).abs().max().item()


def raise_oom_when(seg, step: str, predicate) -> None:
    """Make ``seg.model.<step>`` raise a CUDA out-of-memory error whenever ``predicate(argument)`` is true."""
    real = getattr(seg.model, step)

    def wrapped(arg):
        if predicate(arg):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(arg)
    setattr(seg.model, step, wrapped)


@pytest.fixture
def fixture_loader():
    return load_fixture


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A save_pretrained folder of the fixture-11 model (official-format random weights) at a small test size."""
    import dvis_sdk

    fx = load_fixture("11_e2e_online_r50")
    seg = dvis_sdk.VideoSegmenter.from_official(fx.config, fx.weights)
    seg.model.cfg.input.min_size_test, seg.model.cfg.input.max_size_test = 64, 128  # keep the tests fast
    d = tmp_path_factory.mktemp("model")
    seg.save_pretrained(d)
    return d


def write_avi_folder(folder: Path, videos: int = 2, frames: int = 5, size=(64, 48)) -> Path:
    """``videos`` random-noise MJPG AVIs ``v0.avi``, ``v1.avi``, ... of ``frames`` frames in ``folder`` (made)."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(videos):
        wr = cv2.VideoWriter(str(folder / f"v{i}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
        for _ in range(frames):
            wr.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        wr.release()
    return folder


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    """A save_pretrained folder of the micro DVIS++ model the training tests fine-tune (seeded random weights)."""
    from dvis_sdk import VideoSegmenter
    from dvis_sdk.models.dvis import build_model
    from test_training_trainers import micro_config

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("saved")
    VideoSegmenter(build_model(micro_config())).save_pretrained(d)
    return d


def ytvis_split(root: Path, videos: int = 2, seed: int = 0, num_frames: int = 6, max_objects: int = 3):
    """(annotations.json path, frames root) of a small synthetic YouTube-VIS split (64x48 PNG frames) in ``root``."""
    from dvis_sdk.training.synthetic import SyntheticConfig, generate_ytvis

    cfg = SyntheticConfig(width=64, height=48, num_frames=num_frames, max_objects=max_objects)
    return generate_ytvis(root, videos, seed=seed, config=cfg, image_ext=".png"), root / "JPEGImages"
