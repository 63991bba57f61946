"""Referring trackers of DVIS++ (``ReferringTracker_noiser``) and of the original DVIS (``ReferringTracker``).

Both trackers re-order every frame's segmenter queries by Hungarian matching against the previous
frame, then refine them with a stack of (referring cross-attention -> self-attention -> FFN) layers
whose query is the previous frame's tracked output.

Unlike the official modules, the per-video memory is NOT kept on the module: it is an explicit,
immutable :class:`TrackerState` that ``forward`` takes and returns, so one module can track several
videos at once (``state=None`` == the official ``resume=False``; passing the previous call's state ==
``resume=True``).

Matching conventions (the official quirk that matters):

* DVIS++ applies the ALIGNING permutation: ``indices[k]`` is the current query matched to reference k.
* The original DVIS returns ``linear_sum_assignment(C.T)[1]`` with ``C[ref, cur]``, i.e. for every
  CURRENT query the matched reference, and then takes ``cur[indices]`` anyway: it applies the INVERSE
  of the aligning permutation. Reproduced on purpose (official checkpoints were evaluated that way).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..layers.attention import MLP, FFNLayer, ReferringCrossAttentionLayer, SelfAttentionLayer, c2_xavier_fill

__all__ = ["TrackerState", "DVISPlusTracker", "ReferringTracker", "hungarian_match_costs", "cosine_cost"]

# (matched indices (B, Q), current no-norm embeds (Q, B, C)) -> (indices (B, Q), layer-0 residual (Q, B, C))
NoiserFn = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class TrackerState:
    """Memory carried from one call to the next for ONE batch of videos (all tensors detached).

    Attributes:
        last_output: (Q, B, C) last tracker layer's output of the last processed frame (before
            ``decoder_norm``), in tracked query order. The next frame's query comes from it.
        last_frame_embeds: (Q, B, C) the last frame's segmenter embeddings re-ordered by the matching
            applied to it: the reference the next frame is matched against.
        num_frames: number of frames processed so far in this video.
    """

    last_output: Tensor
    last_frame_embeds: Tensor
    num_frames: int

    @property
    def batch_size(self) -> int:
        return self.last_output.shape[1]


def cosine_cost(ref: Tensor, cur: Tensor) -> Tensor:
    """``1 - cos(ref_k, cur_j)`` for batched sets, as the official ``match_embds``.

    ref, cur: (..., Q, C). Returns (..., Q_ref, Q_cur). Norms get ``+ 1e-6`` and NaN costs become 0,
    exactly as in the official code. Half-precision inputs are matched in float32 (scipy needs a
    float array anyway).
    """
    ref, cur = ref.detach(), cur.detach()
    if ref.dtype in (torch.float16, torch.bfloat16):
        ref, cur = ref.float(), cur.float()
    ref = ref / (ref.norm(dim=-1, keepdim=True) + 1e-6)
    cur = cur / (cur.norm(dim=-1, keepdim=True) + 1e-6)
    cost = 1 - torch.matmul(ref, cur.transpose(-1, -2))
    return cost.masked_fill(cost.isnan(), 0.0)


def hungarian_match_costs(cost: np.ndarray, inverse: bool) -> np.ndarray:
    """Solve one (B, Q_ref, Q_cur) cost stack with scipy, one (Q, Q) problem per batch element.

    ``inverse=False`` (DVIS++ / MinVIS): row k of the result is the CURRENT query matched to
    reference k (the aligning permutation). ``inverse=True`` (original DVIS): the problem is solved on
    the transposed cost and row j is the REFERENCE matched to current query j.
    Returns int64 (B, Q).
    """
    out = []
    for c in cost:
        out.append(linear_sum_assignment(c.T if inverse else c)[1])
    return np.stack(out, 0).astype(np.int64)


def _host_to_device(a: np.ndarray, device: torch.device) -> Tensor:
    """A host array on ``device`` without waiting for the device: on CUDA through pinned memory (a copy from
    pageable memory first waits for the stream to drain, once per frame here)."""
    t = torch.from_numpy(a)
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


def _gather_queries(x: Tensor, idx: Tensor) -> Tensor:
    """x (Q, B, C), idx (B, Q') -> x re-ordered per batch element: out[k, b] = x[idx[b, k], b]."""
    index = idx.t().unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return torch.gather(x, 0, index)


class _TrackerBase(nn.Module):
    """Layers, heads, matching and the frame loop shared by both trackers.

    Sub-classes define ``_run_frame`` (the per-frame layer wiring), ``_predict`` (heads) and the
    matching orientation ``_inverse_matching``.
    """

    _inverse_matching: bool = False
    # The original DVIS keeps the un-permuted first frame as the reference of the second frame.
    _permute_first_reference: bool = True

    def __init__(self, hidden_channel: int, feedforward_channel: int, num_head: int, decoder_layer_num: int,
                 mask_dim: int, class_num: int, class_in_channels: int):
        super().__init__()
        self.num_heads = num_head
        self.num_layers = decoder_layer_num
        # Built layer by layer (self, cross, FFN), as the official constructor: each layer draws its (official,
        # xavier) initialisation from the RNG in the same order, so a seeded fresh tracker matches the official one.
        selfs, crosses, ffns = [], [], []
        for _ in range(decoder_layer_num):
            selfs.append(SelfAttentionLayer(hidden_channel, num_head))
            crosses.append(ReferringCrossAttentionLayer(hidden_channel, num_head))
            ffns.append(FFNLayer(hidden_channel, feedforward_channel))
        self.transformer_self_attention_layers = nn.ModuleList(selfs)
        self.transformer_cross_attention_layers = nn.ModuleList(crosses)
        self.transformer_ffn_layers = nn.ModuleList(ffns)
        self.decoder_norm = nn.LayerNorm(hidden_channel)
        self.class_embed = nn.Linear(class_in_channels, class_num + 1)
        self.mask_embed = MLP(hidden_channel, hidden_channel, mask_dim, 3)

    def _layer(self, j: int, identity: Tensor, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """Tracker layer j: referring cross-attention -> self-attention -> FFN (all post-norm)."""
        out = self.transformer_cross_attention_layers[j](identity, query, key, value)
        out = self.transformer_self_attention_layers[j](out)
        return self.transformer_ffn_layers[j](out)

    # -- hooks for the variants ---------------------------------------------------------------------
    def _run_frame(self, embeds: Tensor, embeds_no_norm: Tensor, identity0: Tensor,
                   prev_output: Optional[Tensor]) -> Tuple[List[Tensor], Optional[Tensor]]:
        """Returns the per-layer outputs (each (Q, B, C)) and the frame's reference (or None)."""
        raise NotImplementedError

    def _predict(self, outputs: Tensor, mask_features: Tensor,
                 references: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """outputs (T, L, Q, B, C) -> logits (L, B, T, Q, K+1), masks (L, B, Q, T, h, w), embeds (B, C, T, Q)."""
        raise NotImplementedError

    def _noise(self, matched: Tensor, embeds_no_norm: Tensor) -> Tuple[Tensor, Tensor]:
        """Training-time query noise of DVIS++ (not applied by default): identity here."""
        return matched, _gather_queries(embeds_no_norm, matched)

    # -- the frame loop -----------------------------------------------------------------------------
    def _track(self, frame_embeds: Tensor, frame_embeds_no_norm: Tensor, state: Optional[TrackerState]
               ) -> Tuple[Tensor, Optional[Tensor], TrackerState, Tensor]:
        """frame_embeds / no_norm: (T, Q, B, C). Returns outputs (T, L, Q, B, C), references
        (T, Q, B, C) or None, the new state and the applied indices (T, B, Q)."""
        n_frame, n_q, bs, _ = frame_embeds.shape
        if state is not None and (state.last_frame_embeds.shape[0] != n_q or state.batch_size != bs):
            raise ValueError(f"state was built for (Q={state.last_frame_embeds.shape[0]}, B={state.batch_size}), "
                             f"got (Q={n_q}, B={bs})")
        # Matching reference of frame t before re-ordering: frame t-1, the state's reference when
        # resuming, or the first frame itself (the official code matches a fresh frame with itself).
        first_ref = frame_embeds[0] if state is None else state.last_frame_embeds.to(frame_embeds)
        refs = torch.cat([first_ref[None], frame_embeds[:-1]], 0)
        # One batched cosine for all consecutive-frame pairs; the reference re-ordering chosen at
        # frame t-1 is then applied to the ROWS on the CPU (a row permutation of the cost).
        raw_cost = cosine_cost(refs.permute(0, 2, 1, 3), frame_embeds.permute(0, 2, 1, 3))  # (T, B, Q, Q)
        # the window's ONE device -> host read: everything after it (Hungarian matching, the reference row
        # re-ordering) runs on this host copy (from_dlpack: a view of the copy, no second conversion)
        raw_cost = np.from_dlpack(raw_cost.double().cpu())

        device = frame_embeds.device
        ref_rows = np.broadcast_to(np.arange(n_q), (bs, n_q))  # re-ordering of the reference rows
        prev_output = None if state is None else state.last_output.to(frame_embeds)
        outputs, references, applied = [], [], []
        last_frame_embeds = first_ref
        for i in range(n_frame):
            fresh = i == 0 and state is None
            cost = np.take_along_axis(raw_cost[i], ref_rows[:, :, None], axis=1)
            matched_np = hungarian_match_costs(cost, self._inverse_matching)
            matched = _host_to_device(matched_np, device)
            if self.training and not fresh:
                indices, identity0 = self._noise(matched, frame_embeds_no_norm[i])
                indices_np = None
            else:
                indices, identity0 = matched, _gather_queries(frame_embeds_no_norm[i], matched)
                indices_np = matched_np
            applied.append(indices)
            if fresh and not self._permute_first_reference:
                ref_rows = np.broadcast_to(np.arange(n_q), (bs, n_q))
                last_frame_embeds = frame_embeds[i]
            else:
                # the host copy of the matching when there is one: reading it back from the device would
                # wait for this frame's queued work on every frame
                ref_rows = indices_np if indices_np is not None else indices.cpu().numpy()
                last_frame_embeds = _gather_queries(frame_embeds[i], indices)
            layer_outputs, reference = self._run_frame(frame_embeds[i], frame_embeds_no_norm[i], identity0,
                                                       prev_output)
            prev_output = layer_outputs[-1]
            outputs.append(torch.stack(layer_outputs, 0))
            if reference is not None:
                references.append(reference)

        new_state = TrackerState(last_output=prev_output.detach(), last_frame_embeds=last_frame_embeds.detach(),
                                 num_frames=n_frame + (0 if state is None else state.num_frames))
        refs_out = torch.stack(references, 0) if references else None
        return torch.stack(outputs, 0), refs_out, new_state, torch.stack(applied, 0)

    def _finish(self, outputs: Tensor, references: Optional[Tensor], mask_features: Tensor,
                return_aux: Optional[bool]) -> Dict[str, object]:
        if return_aux is None:
            return_aux = self.training
        if not return_aux:
            outputs = outputs[:, -1:]  # eval: only the last layer's predictions are used
        logits, masks, embeds = self._predict(outputs, mask_features, references)
        out: Dict[str, object] = {
            "pred_logits": logits[-1],
            "pred_masks": masks[-1],
            "pred_embds": embeds,
            "aux_outputs": [{"pred_logits": a, "pred_masks": m} for a, m in zip(logits[:-1], masks[:-1])],
        }
        if references is not None:
            out["pred_references"] = references.permute(2, 3, 0, 1)  # (B, C, T, Q)
        return out

    @staticmethod
    def _indices_out(applied: Tensor) -> Tensor:
        # (T, B, Q) -> (T, Q) for the usual single video, as the official ``ret_indices``.
        return applied[:, 0] if applied.shape[1] == 1 else applied

    def forward(self, frame_embeds: Tensor, mask_features: Tensor, state: Optional[TrackerState] = None,
                frame_embeds_no_norm: Optional[Tensor] = None, return_aux: Optional[bool] = None
                ) -> Tuple[Dict[str, object], TrackerState, Tensor]:
        """Track one chunk of frames.

        Args:
            frame_embeds: (B, C, T, Q) segmenter ``pred_embds`` (matching uses these).
            mask_features: (B, T, mask_dim, h, w).
            state: ``None`` for the first chunk of a video, else the state returned for the previous chunk.
            frame_embeds_no_norm: (B, C, T, Q) segmenter ``pred_embds_without_norm`` (DVIS++ only;
                defaults to ``frame_embeds``).
            return_aux: also predict from the non-final layers (``aux_outputs``); default: ``self.training``.

        Returns:
            ``(outputs, new_state, indices)``. ``outputs``: ``pred_logits`` (B, T, Q, K+1), ``pred_masks``
            (B, Q, T, h, w), ``pred_embds`` (B, C, T, Q), ``aux_outputs`` (list of dicts, empty unless
            ``return_aux``) and, for DVIS++, ``pred_references`` (B, C, T, Q). ``indices``: int64 (T, Q)
            for B == 1 (per frame, the query order applied to the current frame), (T, B, Q) for B > 1
            (every video is matched on its own).
        """
        raise NotImplementedError


class DVISPlusTracker(_TrackerBase):
    """DVIS++ referring tracker (official ``dvis_Plus/tracker.py::ReferringTracker_noiser``).

    Works at ``hidden_channel`` = 2 * segmenter HIDDEN_DIM (the segmenter's embeds carry a re-id half).
    Extra modules: ``ref_proj`` (MLP producing the cross-attention query from the previous frame's
    output) and ``mask_feature_proj`` (1x1 conv on the mask features). The class head reads
    ``cat(reference, decoder_norm(output))``.

    ``noise_mode`` / ``noise_ratio`` configure the training-time noiser, which this module does not
    implement: assign ``self.noiser`` (a :data:`NoiserFn`) to enable it; it is only called in training
    mode on frames that are not the first of a video. Without it, training behaves like noise_mode
    'none'. Eval is never noised (as in the official code).
    """

    def __init__(self, hidden_channel: int = 256, feedforward_channel: int = 2048, num_head: int = 8,
                 decoder_layer_num: int = 6, mask_dim: int = 256, class_num: int = 25,
                 noise_mode: str = "wa", noise_ratio: float = 0.5):
        super().__init__(hidden_channel, feedforward_channel, num_head, decoder_layer_num, mask_dim, class_num,
                         class_in_channels=2 * hidden_channel)
        self.ref_proj = MLP(hidden_channel, hidden_channel, hidden_channel, 3)
        for layer in self.ref_proj.layers:  # official init of the reference projection
            c2_xavier_fill(layer)
        self.mask_feature_proj = nn.Conv2d(mask_dim, mask_dim, kernel_size=1)
        self.noise_mode = noise_mode
        self.noise_ratio = noise_ratio
        self.noiser: Optional[NoiserFn] = None

    def _noise(self, matched: Tensor, embeds_no_norm: Tensor) -> Tuple[Tensor, Tensor]:
        if self.noiser is None:
            return super()._noise(matched, embeds_no_norm)
        return self.noiser(matched, embeds_no_norm)

    def _run_frame(self, embeds: Tensor, embeds_no_norm: Tensor, identity0: Tensor,
                   prev_output: Optional[Tensor]) -> Tuple[List[Tensor], Optional[Tensor]]:
        key = value = embeds_no_norm  # un-permuted: attention over the frame's queries is order-free
        layer_outputs = []
        if prev_output is None:
            # First frame of a video: the query is ref_proj of the frame's own embeds in their
            # ORIGINAL order (official quirk), later layers project their own input.
            reference = self.ref_proj(key)
            out = self._layer(0, identity0, reference, key, value)
            layer_outputs.append(out)
            for j in range(1, self.num_layers):
                out = self._layer(j, out, self.ref_proj(out), key, value)
                layer_outputs.append(out)
        else:
            reference = self.ref_proj(prev_output)
            out = identity0
            for j in range(self.num_layers):
                out = self._layer(j, out, reference, key, value)
                layer_outputs.append(out)
        return layer_outputs, reference

    def _predict(self, outputs: Tensor, mask_features: Tensor,
                 references: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        normed = self.decoder_norm(outputs).permute(1, 3, 0, 2, 4)  # (L, B, T, Q, C)
        refs = references.permute(2, 0, 1, 3).unsqueeze(0).expand(normed.shape[0], -1, -1, -1, -1)
        logits = self.class_embed(torch.cat([refs, normed], -1))  # (L, B, T, Q, K+1)
        masks = torch.einsum("lbtqc,btchw->lbqthw", self.mask_embed(normed), mask_features)
        embeds = outputs[:, -1].permute(2, 3, 0, 1)  # before decoder_norm (DVIS++)
        return logits, masks, embeds

    def forward(self, frame_embeds: Tensor, mask_features: Tensor, state: Optional[TrackerState] = None,
                frame_embeds_no_norm: Optional[Tensor] = None, return_aux: Optional[bool] = None
                ) -> Tuple[Dict[str, object], TrackerState, Tensor]:
        b, t = mask_features.shape[:2]
        mask_features = self.mask_feature_proj(mask_features.flatten(0, 1)).unflatten(0, (b, t))
        embeds = frame_embeds.permute(2, 3, 0, 1)  # (T, Q, B, C)
        no_norm = embeds if frame_embeds_no_norm is None else frame_embeds_no_norm.permute(2, 3, 0, 1)
        outputs, references, new_state, applied = self._track(embeds, no_norm, state)
        return self._finish(outputs, references, mask_features, return_aux), new_state, self._indices_out(applied)


class ReferringTracker(_TrackerBase):
    """Original DVIS referring tracker (official ``dvis/video_dvis_modules.py::ReferringTracker``).

    Works at ``hidden_channel`` = segmenter HIDDEN_DIM; no reference projection, no mask-feature
    projection, no noiser. ``pred_embds`` is ``decoder_norm(last layer)``. The Hungarian matching
    applies the INVERSE of the aligning permutation (official behaviour, see the module docstring).
    """

    _inverse_matching = True
    _permute_first_reference = False

    def __init__(self, hidden_channel: int = 256, feedforward_channel: int = 2048, num_head: int = 8,
                 decoder_layer_num: int = 6, mask_dim: int = 256, class_num: int = 25):
        super().__init__(hidden_channel, feedforward_channel, num_head, decoder_layer_num, mask_dim, class_num,
                         class_in_channels=hidden_channel)

    def _run_frame(self, embeds: Tensor, embeds_no_norm: Tensor, identity0: Tensor,
                   prev_output: Optional[Tensor]) -> Tuple[List[Tensor], Optional[Tensor]]:
        key = value = embeds
        layer_outputs = []
        if prev_output is None:
            # First frame of a video: its returned indices are NOT applied (official), plain
            # self-referring cross-attention on the frame's own queries.
            out = embeds
            for j in range(self.num_layers):
                out = self._layer(j, out, out, key, value)
                layer_outputs.append(out)
        else:
            out = identity0
            for j in range(self.num_layers):
                out = self._layer(j, out, prev_output, key, value)
                layer_outputs.append(out)
        return layer_outputs, None

    def _predict(self, outputs: Tensor, mask_features: Tensor,
                 references: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        normed = self.decoder_norm(outputs)
        embeds = normed[:, -1].permute(2, 3, 0, 1)  # after decoder_norm (original DVIS)
        normed = normed.permute(1, 3, 0, 2, 4)  # (L, B, T, Q, C)
        logits = self.class_embed(normed)
        masks = torch.einsum("lbtqc,btchw->lbqthw", self.mask_embed(normed), mask_features)
        return logits, masks, embeds

    def forward(self, frame_embeds: Tensor, mask_features: Tensor, state: Optional[TrackerState] = None,
                frame_embeds_no_norm: Optional[Tensor] = None, return_aux: Optional[bool] = None
                ) -> Tuple[Dict[str, object], TrackerState, Tensor]:
        if frame_embeds_no_norm is not None:
            raise ValueError("the original DVIS tracker takes no frame_embeds_no_norm")
        embeds = frame_embeds.permute(2, 3, 0, 1)  # (T, Q, B, C)
        outputs, _, new_state, applied = self._track(embeds, embeds, state)
        return self._finish(outputs, None, mask_features, return_aux), new_state, self._indices_out(applied)

    def frame_forward(self, frame_embeds: Tensor) -> Tensor:
        """Every tracker layer on each frame's queries alone (no matching, no memory), then
        ``decoder_norm``: the refiner's ``frame_embeds`` in DVIS_offline. (B, C, T, Q) -> (B, C, T, Q)."""
        b, c, t, q = frame_embeds.shape
        e = frame_embeds.permute(3, 0, 2, 1).flatten(1, 2)  # (Q, B*T, C)
        out = e
        for j in range(self.num_layers):
            out = self._layer(j, out, out, e, e)
        return self.decoder_norm(out).reshape(q, b, t, c).permute(1, 3, 2, 0)


DVISPlusTracker.forward.__doc__ = _TrackerBase.forward.__doc__
ReferringTracker.forward.__doc__ = _TrackerBase.forward.__doc__
