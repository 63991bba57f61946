"""The VIS mask up-sampling gives the official whole-video floats bit for bit, whatever the chunking of frames
(windows of 3 on one thread included) and the thread count. Before, a chunk of exactly 3 frames on one thread took
PyTorch's channels-last CPU resize kernel, whose rounding differs from the per-pixel kernel of the official call."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dvis_sdk.ops.postprocess import upsample_logits, upsample_masks


def official_logits(logits, padded, image, output):
    """``inference_video_vis``: one bilinear call on (K, T, h, w) for the whole video, crop, bilinear."""
    m = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    m = m[:, :, : image[0], : image[1]]
    if image != output:
        m = F.interpolate(m, size=output, mode="bilinear", align_corners=False)
    return m


def with_threads(n, fn):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


GEOMETRIES = [
    ((64, 96), (64, 96), (64, 96)),      # fixtures 09-17: no crop, no resize
    ((64, 96), (50, 78), (50, 78)),      # padding cropped
    ((96, 128), (91, 121), (137, 181)),  # odd sizes, cropped and enlarged
    ((64, 128), (45, 100), (30, 70)),    # shrunk
]


@pytest.mark.parametrize("padded,image,output", GEOMETRIES)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunks", [[(0, 3), (3, 6), (6, 7)], [(0, 7)], [(0, 1), (1, 5), (5, 7)]])
def test_frame_chunks_give_the_whole_video_floats(padded, image, output, threads, chunks):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((6, 7, padded[0] // 4, padded[1] // 4), generator=g) * 4
    # the reference ran with 2 threads (fixtures); the per-pixel kernel does not depend on it
    want = with_threads(2, lambda: official_logits(logits, padded, image, output))
    got = with_threads(threads, lambda: torch.cat([upsample_logits(logits[:, s:e], padded, image, output)
                                                   for s, e in chunks], dim=1))
    assert torch.equal(got, want)
    masks = with_threads(threads, lambda: upsample_masks(logits, padded, image, output, frame_chunk=3))
    assert torch.equal(masks, want > 0)


@pytest.mark.parametrize("threads", [1, 2])
def test_small_outputs_keep_the_official_16_frame_layout(threads):
    """At output height + width <= 128 PyTorch takes its channels-last kernel for any channel count, and the
    official values depend on a frame's place in the video's vector lanes; the default 16-frame chunks of
    ``upsample_masks`` reproduce them (one map per channel would not, at 20 frames)."""
    g = torch.Generator().manual_seed(1)
    padded, image, output = (32, 48), (30, 45), (60, 66)
    logits = torch.randn((4, 20, 8, 12), generator=g) * 4
    want = with_threads(2, lambda: official_logits(logits, padded, image, output))
    got = with_threads(threads, lambda: torch.cat([upsample_logits(logits[:, s:s + 16], padded, image, output)
                                                   for s in (0, 16)], dim=1))
    assert torch.equal(got, want)


def test_the_input_is_not_modified_and_empty_selections_work():
    logits = torch.randn(3, 5, 16, 24)
    before = logits.clone()
    out = upsample_masks(logits, (64, 96), (60, 90), (120, 180), frame_chunk=2)
    assert out.shape == (3, 5, 120, 180) and out.dtype == torch.bool
    assert torch.equal(logits, before)
    assert upsample_masks(logits[:0], (64, 96), (60, 90), (120, 180)).shape == (0, 5, 120, 180)
