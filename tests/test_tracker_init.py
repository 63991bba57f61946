"""Fresh trackers and transformer layers initialise as the official DVIS++ / Mask2Former constructors do:
xavier-uniform on the attention / FFN matrices (their ``_reset_parameters``), c2_xavier_fill on ``ref_proj``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from dvis_sdk.layers.attention import CrossAttentionLayer, FFNLayer, ReferringCrossAttentionLayer, SelfAttentionLayer
from dvis_sdk.models.tracker import DVISPlusTracker, ReferringTracker

FIX = Path(__file__).parent / "fixtures" / "tracker_init_official"


def _bounds(w: torch.Tensor):
    fan_out, fan_in = w.shape[:2]
    return math.sqrt(6.0 / (fan_in + fan_out)), 1.0 / math.sqrt(fan_in)  # xavier, PyTorch's default Linear


def _check_xavier(name: str, w: torch.Tensor) -> None:
    xavier, default = _bounds(w)
    amax = w.abs().max().item()
    assert amax <= xavier + 1e-6, f"{name}: max |w| {amax} above the xavier bound {xavier}"
    if xavier > default * 1.2:  # with this many draws a default (kaiming) init cannot reach past its bound
        assert amax > default, f"{name}: max |w| {amax} within the default bound {default}: not xavier"


def test_fresh_dvisplus_tracker_matches_official_constructor_bit_exact():
    meta = json.loads((FIX / "meta.json").read_text())
    ref = load_file(str(FIX / "weights.safetensors"))
    torch.manual_seed(meta["seed"])
    sd = DVISPlusTracker(**meta["hyper_parameters"], noise_mode=meta["noise_mode"]).state_dict()
    assert set(sd) == set(ref)
    mismatched = [k for k in ref if not torch.equal(sd[k], ref[k])]
    assert not mismatched, f"differ from the official fresh tracker: {mismatched}"


def test_fresh_tracker_layers_are_xavier_and_ref_proj_c2_xavier():
    torch.manual_seed(0)
    t = DVISPlusTracker(hidden_channel=64, feedforward_channel=256, num_head=4, decoder_layer_num=2, mask_dim=64,
                        class_num=5)
    for group in ("transformer_self_attention_layers", "transformer_cross_attention_layers",
                  "transformer_ffn_layers"):
        for name, p in getattr(t, group).named_parameters():
            if p.dim() > 1:
                _check_xavier(f"{group}.{name}", p.detach())
    for i, layer in enumerate(t.ref_proj.layers):
        assert torch.count_nonzero(layer.bias) == 0, f"ref_proj.layers.{i}.bias not zero"
        bound = math.sqrt(3.0 / layer.weight.shape[1])  # kaiming-uniform a=1
        assert layer.weight.abs().max().item() <= bound + 1e-6
    # the heads keep PyTorch's default initialisation (non-zero biases), as in the official tracker
    assert torch.count_nonzero(t.class_embed.bias) > 0


def test_shared_layers_and_dvis_tracker_initialise_officially():
    torch.manual_seed(1)
    layers = {"self": SelfAttentionLayer(64, 4), "cross": CrossAttentionLayer(64, 4),
              "ref": ReferringCrossAttentionLayer(64, 4), "ffn": FFNLayer(64, 256),
              "dvis": ReferringTracker(hidden_channel=64, feedforward_channel=256, num_head=4, decoder_layer_num=1,
                                       mask_dim=64, class_num=5).transformer_ffn_layers}
    for key, mod in layers.items():
        mats = [(n, p) for n, p in mod.named_parameters() if p.dim() > 1]
        assert mats
        for n, p in mats:
            _check_xavier(f"{key}.{n}", p.detach())

