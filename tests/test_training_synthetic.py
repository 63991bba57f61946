"""Synthetic YouTube-VIS generator: deterministic, valid annotations, the scene properties it promises."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_util

from dvis_sdk.training.synthetic import (
    CATEGORIES,
    PRESETS,
    ShapeTrack,
    SyntheticConfig,
    generate_ytvis,
    make_background,
    render_scene,
    render_video,
)


def test_render_is_deterministic_by_seed_and_seeds_differ():
    f1, m1, s1 = render_video((3, 1))
    f2, m2, s2 = render_video((3, 1))
    f3, _, _ = render_video((3, 2))
    assert np.array_equal(f1, f2) and np.array_equal(m1, m2) and s1 == s2
    assert not np.array_equal(f1, f3)


def test_categories_have_their_own_colours_and_often_look_alike():
    from dvis_sdk.training.synthetic import CATEGORY_PALETTES

    twins = 0
    for i in range(20):
        _, _, shapes = render_video((1, i), PRESETS["occlusion"])
        assert all(s.colour in CATEGORY_PALETTES[s.kind] for s in shapes)
        twins += len(shapes) - len({(s.kind, s.colour) for s in shapes})
    assert twins >= 20  # identical-looking objects are common
    _, _, shapes = render_video((1, 0), SyntheticConfig(category_palettes=None, min_objects=8, max_objects=8))
    assert len({s.colour for s in shapes}) >= 2
    with pytest.raises(ValueError, match="no colours for"):
        SyntheticConfig(category_palettes={"circle": ((1, 2, 3),)})


def test_visible_masks_are_disjoint_and_match_the_drawing():
    frames, masks, shapes = render_video((0, 7), PRESETS["occlusion"])
    t, n, h, w = masks.shape
    assert frames.shape == (t, h, w, 3) and n == len(shapes) >= 5
    assert masks.sum(1).max() <= 1  # one visible owner per pixel
    # a pixel owned by a shape has (about) that shape's shaded colour, background pixels mostly do not
    for k, s in enumerate(shapes):
        sel = masks[:, k]
        if sel.sum() > 200:
            col = frames[sel].astype(float).mean(0)
            assert np.abs(col - np.asarray(s.colour)).max() < 60


def test_occluded_shapes_lose_pixels():
    bg = np.full((64, 64, 3), 128, np.uint8)
    shapes = [ShapeTrack("square", (255, 0, 0), 12, (20, 32), (2, 0)),
              ShapeTrack("circle", (0, 0, 255), 12, (44, 32), (-2, 0))]
    _, masks = render_scene(shapes, bg, 12)
    area = masks.sum((2, 3))
    assert area[0, 0] > 0 and area[0, 1] > 0
    # they cross: the square (drawn first) is partly hidden while overlapping the circle
    assert area[:, 0].min() < 0.7 * area[0, 0]


def test_late_start_early_end_and_fly_through():
    bg = np.zeros((48, 48, 3), np.uint8)
    shapes = [ShapeTrack("triangle", (200, 200, 0), 8, (24, 24), (0, 0), start=3, end=6),
              ShapeTrack("circle", (0, 200, 0), 8, (-20, 24), (6, 0), bounce=False)]
    _, masks = render_scene(shapes, bg, 16)
    present = masks.reshape(16, 2, -1).any(-1)
    assert present[:, 0].tolist() == [False] * 3 + [True] * 3 + [False] * 10
    fly = present[:, 1]
    assert not fly[0] and fly.any() and not fly[-1]  # enters, crosses, leaves


def test_generate_ytvis_writes_a_valid_dataset(tmp_path):
    cfg = SyntheticConfig(width=96, height=64, num_frames=5)
    ann = generate_ytvis(tmp_path / "d", num_videos=3, seed=5, config=cfg)
    data = json.loads(ann.read_text())
    assert [c["name"] for c in data["categories"]] == list(CATEGORIES)
    assert len(data["videos"]) == 3
    ids = {a["id"] for a in data["annotations"]}
    assert len(ids) == len(data["annotations"]) > 0
    frames, masks, shapes = render_video((5, 1), cfg)
    v = data["videos"][1]
    assert v["length"] == 5 and len(v["file_names"]) == 5
    for fn in v["file_names"]:
        assert (tmp_path / "d" / "JPEGImages" / fn).is_file()
    anns = [a for a in data["annotations"] if a["video_id"] == v["id"]]
    visible = [k for k in range(len(shapes)) if masks[:, k].any()]
    assert len(anns) == len(visible)
    for a, k in zip(anns, visible):
        assert a["category_id"] == CATEGORIES.index(shapes[k].kind) + 1
        for f, seg in enumerate(a["segmentations"]):
            if seg is None:
                assert not masks[f, k].any()
            else:
                assert np.array_equal(mask_util.decode(seg).astype(bool), masks[f, k])
                assert a["areas"][f] == masks[f, k].sum()
    # same seed -> same annotations, whatever else is generated
    ann2 = generate_ytvis(tmp_path / "e", num_videos=2, seed=5, config=cfg)
    data2 = json.loads(ann2.read_text())
    assert [a["segmentations"] for a in data2["annotations"] if a["video_id"] == 2] == \
        [a["segmentations"] for a in anns]


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        generate_ytvis(tmp_path, 1, config="nope")
    with pytest.raises(ValueError, match="num_videos"):
        generate_ytvis(tmp_path, 0)
    with pytest.raises(ValueError, match="unknown shape kind"):
        ShapeTrack("star", (0, 0, 0), 1, (0, 0), (0, 0))
    with pytest.raises(ValueError, match="min_objects"):
        SyntheticConfig(min_objects=3, max_objects=2)


def test_background_is_textured():
    bg = make_background(np.random.default_rng(0), 60, 80)
    assert bg.shape == (60, 80, 3) and bg.dtype == np.uint8 and bg.std() > 10
