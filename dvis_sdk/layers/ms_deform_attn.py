"""Multi-scale deformable attention (Deformable DETR / Mask2Former), pure PyTorch.

The function reproduces the semantics of the official CUDA kernel and of its pure-PyTorch
fallback ``ms_deform_attn_core_pytorch``: sampling locations are normalised to [0, 1] over each
level (offsets divided by (W_l, H_l)), sampled with ``grid_sample`` (bilinear, zero padding,
``align_corners=False``), and the attention softmax runs jointly over levels x points.

Two implementations: :func:`ms_deform_attn` (the reference: one ``grid_sample`` per level, as the official
fallback) and :func:`ms_deform_attn_fast` (the default, a per-module choice, see :mod:`dvis_sdk.layers.impl`: one
weighted gather over all levels, points and bilinear corners). ``MSDeformAttn`` picks one through the
``deform_attn`` switch.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..runtime import autocast_enabled
from .impl import ImplChoices, check_choice


def _shape_list(spatial_shapes: Tensor | Sequence[Sequence[int]]) -> List[Tuple[int, int]]:
    # A sequence is kept as given: under torch.export its sizes are symbolic and int() would freeze them
    # (the ONNX export passes the shapes as a sequence so height and width stay dynamic).
    if isinstance(spatial_shapes, Tensor):
        return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    return [(h, w) for h, w in spatial_shapes]


def _shape_tensor(spatial_shapes: Tensor | Sequence[Sequence[int]], like: Tensor) -> Tensor:
    """(n_levels, 2) (H, W) in ``like``'s dtype and device, from a tensor or a sequence of sizes."""
    if isinstance(spatial_shapes, Tensor):
        return spatial_shapes.to(like.dtype)
    return torch.stack([torch.stack([like.new_full((), 1) * h, like.new_full((), 1) * w])
                        for h, w in spatial_shapes])


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Tensor | Sequence[Sequence[int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Deformable attention core.

    Args:
        value: (N, sum_l H_l*W_l, n_heads, head_dim), levels concatenated row-major.
        spatial_shapes: (n_levels, 2) of (H_l, W_l).
        sampling_locations: (N, Len_q, n_heads, n_levels, n_points, 2) normalised (x, y) in [0, 1].
        attention_weights: (N, Len_q, n_heads, n_levels, n_points), already softmax-normalised.

    Returns:
        (N, Len_q, n_heads * head_dim)
    """
    n, _, n_heads, head_dim = value.shape
    _, len_q, _, n_levels, n_points, _ = sampling_locations.shape
    shapes = _shape_list(spatial_shapes)
    value_list = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample expects coordinates in [-1, 1]
    grids = 2 * sampling_locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        # (N, H*W, M, D) -> (N*M, D, H, W)
        v = value_list[lvl].flatten(2).transpose(1, 2).reshape(n * n_heads, head_dim, h, w)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        g = grids[:, :, :, lvl].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (N*M, 1, Lq, L*P)
    attn = attention_weights.transpose(1, 2).reshape(n * n_heads, 1, len_q, n_levels * n_points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * attn).sum(-1)
    return out.view(n, n_heads * head_dim, len_q).transpose(1, 2).contiguous()


def ms_deform_attn_fast(
    value: Tensor,
    spatial_shapes: Tensor | Sequence[Sequence[int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Same contract and result as :func:`ms_deform_attn`, as one ``F.embedding_bag`` over all samples.

    Every (query, head) output is a weighted sum of ``n_levels * n_points * 4`` value rows (the bilinear
    corners), the weights being bilinear weight x attention weight. Each level's value map gets a one-pixel zero
    border, so corners just outside the map read zeros and no validity masks are needed; locations further out
    are clamped onto the border (all their corners then carry zero value or zero weight), which reproduces
    ``grid_sample``'s zero padding. Coordinates and weights are computed in fp32 whatever the value dtype.
    """
    n, len_in, n_heads, head_dim = value.shape
    _, len_q, _, n_levels, n_points, _ = sampling_locations.shape
    shapes = _shape_list(spatial_shapes)
    if sum(h * w for h, w in shapes) != len_in:
        raise ValueError(f"spatial_shapes {shapes} cover {sum(h * w for h, w in shapes)} positions, value has {len_in}")
    device = value.device
    # (N, sum (H+2)(W+2), M, D) value table with a zero border around every level; row = (n, position, head)
    padded = [F.pad(v.reshape(n, h, w, n_heads * head_dim), (0, 0, 1, 1, 1, 1))
              for v, (h, w) in zip(value.split([h * w for h, w in shapes], dim=1), shapes)]
    table = torch.cat([p.reshape(n, -1, n_heads * head_dim) for p in padded], 1).reshape(-1, head_dim)
    len_pad = table.shape[0] // (n * n_heads)
    itype = torch.int32 if table.shape[0] < 2 ** 31 - 1 else torch.int64
    starts, acc = [], 0
    for h, w in shapes:
        starts.append(acc)
        acc += (h + 2) * (w + 2)
    one = torch.ones((), dtype=itype, device=device)  # sizes may be symbolic (export): build tensors by arithmetic
    starts_t = torch.stack([one * s for s in starts]).view(n_levels, 1)
    row_len = torch.stack([one * (w + 2) for _, w in shapes]).view(n_levels, 1)
    size = _shape_tensor(shapes, torch.ones((), dtype=torch.float32, device=device)).flip(-1).view(n_levels, 1, 2)

    # pixel coordinates as grid_sample (align_corners=False) computes them, kept inside [-1, size]
    pix = torch.minimum((sampling_locations.float() * size - 0.5).clamp(min=-1.0), size)
    x, y = pix.unbind(-1)  # (N, Lq, M, L, P)
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    gx = 1 - fx
    a = attention_weights.float()
    a1 = a * fy
    a0 = a - a1  # a * (1 - fy)
    weights = torch.stack([a0 * gx, a0 * fx, a1 * gx, a1 * fx], -1)  # corners (y0,x0) (y0,x1) (y1,x0) (y1,x1)

    pos = starts_t + (y0.to(itype) + 1) * row_len + (x0.to(itype) + 1)  # in the bordered map of its level
    base = (torch.arange(n, device=device, dtype=itype) * len_pad).view(n, 1, 1, 1, 1)
    r00 = (base + pos) * n_heads + torch.arange(n_heads, device=device, dtype=itype).view(1, 1, n_heads, 1, 1)
    dy = row_len * n_heads
    rows = torch.stack([r00, r00 + n_heads, r00 + dy, r00 + dy + n_heads], -1)
    # A corner one step past the border (x = W exactly) carries zero weight but must still index inside the
    # table; NaN locations give arbitrary integers, clamped the same way (their weight is NaN, as the reference).
    rows = rows.clamp_(0, table.shape[0] - 1)
    per_bag = n_levels * n_points * 4
    out = F.embedding_bag(rows.view(-1, per_bag), table, per_sample_weights=weights.view(-1, per_bag).to(table.dtype),
                          mode="sum")
    return out.view(n, len_q, n_heads * head_dim)


class MSDeformAttn(ImplChoices, nn.Module):
    """Multi-scale deformable attention module with the official parameter names.

    ``ratio`` is accepted for signature compatibility with the ViT-Adapter and deliberately
    ignored: the official Mask2Former module (which DVIS++'s adapter imports) keeps a
    d_model x d_model value projection whatever ratio it is given, and official checkpoints
    carry weights of that shape.
    """

    impl_choices = ("deform_attn", "fp32_sampling")

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4, ratio: float = 1.0,
                 deform_attn: str = "fast", fp32_sampling: bool = True):
        super().__init__()
        self.deform_attn = check_choice("deform_attn", deform_attn)
        self.fp32_sampling = check_choice("fp32_sampling", fp32_sampling)
        if d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Deformable-DETR initialisation: points on rays around the reference, uniform attention.
        nn.init.constant_(self.sampling_offsets.weight, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * torch.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.constant_(self.attention_weights.weight, 0.0)
        nn.init.constant_(self.attention_weights.bias, 0.0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        input_flatten: Tensor,
        input_spatial_shapes: Tensor | Sequence[Sequence[int]],
        input_level_start_index: Tensor | None = None,
        input_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """query (N, Lq, C); reference_points (N, Lq, n_levels, 2) normalised (x, y);
        input_flatten (N, sum H_l*W_l, C); input_spatial_shapes (n_levels, 2) (H, W)."""
        n, len_q, _ = query.shape
        _, len_in, _ = input_flatten.shape
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, len_in, self.n_heads, self.d_model // self.n_heads)
        if reference_points.shape[-1] != 2:
            raise ValueError(f"reference_points must end in 2 (x, y), got shape {tuple(reference_points.shape)}")
        device_type = query.device.type
        if self.fp32_sampling and autocast_enabled(device_type):
            # Where to sample is the numerically fragile part: keep it out of half precision.
            with torch.autocast(device_type, enabled=False):
                locations, weights = self._sampling(query.float(), reference_points.float(), input_spatial_shapes)
        else:
            locations, weights = self._sampling(query, reference_points, input_spatial_shapes)
        if self.deform_attn == "fast":
            out = ms_deform_attn_fast(value, input_spatial_shapes, locations, weights)
        else:
            out = ms_deform_attn(value, input_spatial_shapes, locations, weights)
        return self.output_proj(out)

    def _sampling(self, query: Tensor, reference_points: Tensor,
                  spatial_shapes: Tensor | Sequence[Sequence[int]]) -> Tuple[Tensor, Tensor]:
        """Normalised sampling locations (N, Lq, M, L, P, 2) and softmax attention weights (N, Lq, M, L, P)."""
        n, len_q, _ = query.shape
        offsets = self.sampling_offsets(query).view(n, len_q, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, len_q, self.n_heads, self.n_levels * self.n_points)
        weights = F.softmax(weights, -1).view(n, len_q, self.n_heads, self.n_levels, self.n_points)
        shapes = _shape_tensor(spatial_shapes, offsets)
        normalizer = torch.stack([shapes[..., 1], shapes[..., 0]], -1)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return locations, weights
