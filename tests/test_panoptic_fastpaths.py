"""The fast VPS / VSS post-processing paths give the official whole-video floats bit for bit: mask probabilities
of frame chunks (windows of 3 on one thread included, with and without a reused workspace) and the tiled class
argmax of VSS."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dvis_sdk.ops.panoptic import VSS_MIN_TILE, VSS_TILE, Workspace, _tiles, mask_probs, vss_frame_classes


def official_probs(logits, padded, image, output):
    """The official whole-video order: one bilinear call on (Q, T, h, w), crop, sigmoid, bilinear."""
    m = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    m = m[:, :, : image[0], : image[1]].sigmoid()
    if image != output:
        m = F.interpolate(m, size=output, mode="bilinear", align_corners=False)
    return m


@pytest.mark.parametrize("padded,image,output", [
    ((64, 96), (64, 96), (64, 96)),     # fixture 20's geometry: no crop, no resize
    ((64, 96), (50, 78), (50, 78)),     # padding cropped
    ((64, 128), (45, 100), (90, 200)),  # cropped and resized to the output size
])
@pytest.mark.parametrize("threads", [1, 2])
def test_mask_probs_of_frame_chunks_equal_the_whole_video_call(padded, image, output, threads):
    """Before, a chunk of exactly 3 frames on one thread took PyTorch's channels-last resize kernel, whose
    rounding differs from the whole-video call (~40% of the values at 64x96 changed by an ulp)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((10, 7, padded[0] // 4, padded[1] // 4), generator=g) * 4
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        want = official_probs(logits, padded, image, output)
        ws = Workspace()
        for workspace in (None, ws, ws):  # the second pass reuses the grown buffers
            got = torch.cat([mask_probs(logits[:, s:s + 3], padded, image, output, workspace).clone()
                             for s in (0, 3, 6)], dim=1)
            assert torch.equal(got, want)
    finally:
        torch.set_num_threads(old)


def test_a_workspace_result_is_overwritten_by_the_next_call():
    ws = Workspace()
    a = mask_probs(torch.zeros((2, 1, 4, 4)), (16, 16), (16, 16), (16, 16), ws)
    mask_probs(torch.full((2, 1, 4, 4), 3.0), (16, 16), (16, 16), (16, 16), ws)
    assert float(a.min()) > 0.9  # sigmoid(3), not sigmoid(0): documented reuse


@pytest.mark.parametrize("q,t,h,w", [(10, 7, 64, 96), (100, 3, 45, 77), (24, 1, 13, 11), (10, 2, 5, 5)])
def test_tiled_vss_argmax_equals_the_einsum(q, t, h, w):
    g = torch.Generator().manual_seed(1)
    probs = torch.rand((q, t, h, w), generator=g)
    class_probs = torch.softmax(torch.randn((q, 125), generator=g) * 3, -1)[:, :-1].clone()
    class_probs[: q // 2, 5] = 0.5  # class 5 wins in places ...
    class_probs[:, 9] = class_probs[:, 5]  # ... tied exactly with class 9: the first must win, as in argmax
    scores = torch.einsum("qc,qthw->cthw", class_probs, probs)
    want = scores.argmax(0)
    assert bool((want == 5).any()) and not bool((want == 9).any())
    # the floats themselves: a block of pixel columns gets the einsum's scores bit for bit
    flat = probs.reshape(q, -1)
    for tile in (VSS_MIN_TILE, 100, VSS_TILE):
        for s, e in _tiles(flat.shape[1], tile):
            assert e - s >= min(tile, flat.shape[1])
            block = torch.mm(class_probs.t(), flat[:, s:e])
            assert torch.equal(block, scores.reshape(scores.shape[0], -1)[:, s:e])
        assert torch.equal(vss_frame_classes(probs, class_probs, tile=tile), want)
    assert torch.equal(vss_frame_classes(probs, class_probs), want)


def test_tiles_cover_the_pixels_once_and_narrow_tiles_are_refused():
    for n, tile in [(0, 64), (10, 64), (64, 64), (130, 64), (1000, 512), (1536, 512)]:
        blocks = _tiles(n, tile)
        assert [i for s, e in blocks for i in range(s, e)] == list(range(n))
        assert all(e - s >= tile for s, e in blocks) or len(blocks) == 1
    with pytest.raises(ValueError, match="at least 64"):
        vss_frame_classes(torch.rand((2, 1, 4, 4)), torch.rand((2, 3)), tile=8)
