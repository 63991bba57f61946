"""Image labels (COCO) as training clips: the reader and its skipped entries, the official pseudo-video
augmentation (one image -> T frames with consistent identities, moved by a monotone rotation), mixing datasets by
class name with ratios, and validation classes matched by name."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from dvis_sdk.masks import decode_rles, encode_mask
from dvis_sdk.training.coco import CocoAnnotations, CocoClipDataset
from dvis_sdk.training.datasets import DatasetError, VideoClipDataset, YTVISAnnotations
from dvis_sdk.training.mixing import MixedClipDataset, align_classes, parse_class_map
from dvis_sdk.training.pseudo_video import (
    PseudoClipParams,
    PseudoVideoAugmentation,
    draw_pseudo_params,
    make_pseudo_clip,
    rotation_matrix,
)
from dvis_sdk.training.sources import class_names_of, open_source, ratios_of
from dvis_sdk.training.synthetic import SyntheticConfig, generate_ytvis
from dvis_sdk.training.synthetic_coco import _uncompressed_rle, generate_coco, mask_to_polygons
from dvis_sdk.training.validation import category_mapping

NAMES = {"circle": "ball", "square": "tile", "triangle": "wedge"}
IDS = {"circle": 7, "square": 3, "triangle": 12}  # neither contiguous nor sorted
SMALL = SyntheticConfig(width=64, height=48, num_frames=4, max_objects=3)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    return generate_coco(root, 6, seed=0, config=SMALL, names=NAMES, category_ids=IDS)


def _edit(src, dst, change):
    """A copy of the COCO set in ``dst`` with ``change(data)`` applied to its JSON."""
    shutil.copytree(src.parent, dst)
    data = json.loads(src.read_text())
    change(data)
    (dst / src.name).write_text(json.dumps(data))
    return dst / src.name


def test_reader_classes_in_id_order_and_every_segmentation_format(coco):
    ann = CocoAnnotations(coco)
    assert ann.class_names == ["tile", "ball", "wedge"] and ann.category_ids == [3, 7, 12]
    assert ann.problems == [] and len(ann) == 6
    data = json.loads(coco.read_text())
    kinds = {type(a["segmentation"]).__name__ + (type(a["segmentation"].get("counts")).__name__
                                                  if isinstance(a["segmentation"], dict) else "")
             for a in data["annotations"]}
    assert kinds == {"list", "dictstr", "dictlist"}  # polygons, compressed and uncompressed RLE
    image, labels, ids, masks = ann.image_masks(0)
    assert image.shape == (48, 64, 3) and masks.shape == (len(labels), 48, 64) and masks.any((1, 2)).all()
    first = [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"]]
    assert ids.tolist() == [a["id"] for a in first]
    assert labels.tolist() == [[3, 7, 12].index(a["category_id"]) for a in first]


def test_mask_encodings_round_trip():
    m = np.zeros((9, 11), bool)
    m[2:6, 3:8] = True
    m[0, 0] = True
    assert (decode_rles(_uncompressed_rle(m)) == m).all()
    square = np.zeros((20, 20), bool)
    square[5:15, 4:12] = True
    poly = mask_to_polygons(square)
    from dvis_sdk.masks import polygons_to_rle
    back = decode_rles(polygons_to_rle(poly, 20, 20))
    assert (back == square).all()  # the outline on the pixels' outer edges: nothing lost


@pytest.mark.parametrize("change, named", [
    (lambda d: d["annotations"][0].update(category_id=99), "annotation 50"),
    (lambda d: d["annotations"][0].update(segmentation=[[1.0, 2.0, 5.0, 6.0]]), "annotation 50"),
    (lambda d: d["annotations"][0].update(segmentation=encode_mask(np.zeros((48, 64), bool), text=True)),
     "annotation 50"),
    (lambda d: d["annotations"][0].update(image_id=424242), "annotation 50"),
    (lambda d: d["annotations"][0].pop("segmentation"), "annotation 50"),
    (lambda d: d["images"][1].update(file_name="images/missing.jpg"), "images/missing.jpg"),
])
def test_bad_entries_are_skipped_with_one_line_naming_them(coco, tmp_path, change, named):
    path = _edit(coco, tmp_path / "bad", change)
    ann = CocoAnnotations(path)
    assert len(ann.problems) == 1 and named in ann.problems[0] and "\n" not in ann.problems[0]
    assert len(ann) >= 5
    with pytest.raises(DatasetError, match=named.split("/")[-1]):
        CocoAnnotations(path, strict=True)


def test_nothing_usable_is_a_one_line_error(coco, tmp_path):
    path = _edit(coco, tmp_path / "none", lambda d: [im.update(file_name="nope/" + im["file_name"])
                                                     for im in d["images"]])
    with pytest.raises(DatasetError, match="no image with a usable object annotation .*image file not found"):
        CocoAnnotations(path)


def test_pseudo_params_follow_the_official_draws():
    rng = np.random.default_rng(0)
    aug = PseudoVideoAugmentation()
    seen_reversed = seen_crop = False
    for _ in range(200):
        p = draw_pseudo_params(rng, 480, 640, 5, aug)
        a = np.asarray(p.angles)
        assert len(a) == 5 and (np.abs(a) <= 15).all()
        d = np.diff(a)
        assert (d >= 0).all() or (d <= 0).all()  # sorted, maybe reversed: a monotone turn
        seen_reversed |= bool((d < 0).all())
        assert 0.4 <= p.center[0] <= 0.6 and 0.4 <= p.center[1] <= 0.6
        if p.crop is not None:
            seen_crop = True
            x0, y0, w, h = p.crop
            assert 0 <= x0 and 0 <= y0 and x0 + w <= 640 and y0 + h <= 480
            # 384..600 pixels of a 400..600 short edge: at least 64 % of each side
            assert h >= 0.63 * 480 and w >= 0.45 * 640
    assert seen_reversed and seen_crop


def test_pseudo_clip_keeps_identities_and_moves_objects_by_the_rotation():
    image = np.zeros((60, 80, 3), np.uint8)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:20, 10:20] = True
    masks[1, 35:50, 50:70] = True
    image[masks[0]] = (255, 0, 0)
    image[masks[1]] = (0, 255, 0)
    before = (image.copy(), masks.copy())
    params = PseudoClipParams(crop=None, flip=False, angles=(-10.0, 0.0, 10.0), center=(0.5, 0.5))
    frames, out = make_pseudo_clip(image, masks, params, 60, 200)
    assert (image == before[0]).all() and (masks == before[1]).all()  # inputs untouched
    assert frames.shape == (3, 60, 80, 3) and out.shape == (2, 3, 60, 80)
    assert (out[:, 1] == masks).all()  # angle 0: the image itself
    for t, angle in enumerate(params.angles):
        m = rotation_matrix(60, 80, angle, params.center)
        for k in range(2):
            ys, xs = np.nonzero(masks[k])
            cx, cy = m @ np.array([xs.mean(), ys.mean(), 1.0])
            ys2, xs2 = np.nonzero(out[k, t])
            assert abs(xs2.mean() - cx) < 1.0 and abs(ys2.mean() - cy) < 1.0  # the object moved with the image
            assert frames[t][out[k, t]].mean(0)[k] > 200  # and its pixels with it
    flipped = make_pseudo_clip(image, masks, PseudoClipParams(None, True, (0.0,), (0.5, 0.5)), 30, 200)
    assert flipped[0].shape == (1, 30, 40, 3) and flipped[1][0, 0, 5:10, 30:35].all()


def test_coco_clip_dataset_samples_reproducible_clips(coco):
    ds = CocoClipDataset(CocoAnnotations(coco), num_frames=3, min_sizes=(40,), max_size=100)
    a, b = ds.sample(2, np.random.default_rng(5)), ds.sample(2, np.random.default_rng(5))
    assert (a.frames == b.frames).all() and (a.masks == b.masks).all()
    assert a.frames.shape[:2] == (3, 3) and min(a.frames.shape[-2:]) == 40
    assert a.masks.shape[1] == 3 and a.present.any(1).all()  # every target visible in some frame
    assert not ds.cacheable and ds.class_names == ["tile", "ball", "wedge"]


def test_align_classes_by_name_and_class_map():
    names, remaps, only = align_classes([["tile", "ball", "wedge"], ["ball", "cone"]])
    assert names == ["tile", "ball", "wedge", "cone"]
    assert remaps[0].tolist() == [0, 1, 2] and remaps[1].tolist() == [1, 3]
    assert only == [["tile", "wedge"], ["cone"]]
    names, remaps, _ = align_classes([["tile", "ball"], ["square", "circle"]], {"square": "tile", "circle": "-"})
    assert names == ["tile", "ball"] and remaps[1].tolist() == [0, -1]
    assert parse_class_map("a=b, c=-") == {"a": "b", "c": "-"}
    with pytest.raises(ValueError, match="OLD=NEW"):
        parse_class_map("oops")
    with pytest.raises(ValueError, match="in no dataset"):
        align_classes([["a"]], {"zzz": "a"})


def test_mixed_dataset_draws_by_ratio_and_remaps_labels(coco, tmp_path):
    generate_ytvis(tmp_path / "yt", 2, seed=0, config=SMALL, image_ext=".png")
    yt = open_source(tmp_path / "yt")
    im = open_source(coco)
    assert im.kind == "coco" and yt.kind == "ytvis"
    names, line = class_names_of([im, yt])
    assert names == ["tile", "ball", "wedge", "circle", "square", "triangle"] and "only in" in line
    parts = [CocoClipDataset(im.annotations, num_frames=2, min_sizes=(40,), max_size=100),
             VideoClipDataset(yt.annotations, num_frames=2, min_sizes=(40,), max_size=100)]
    _, remaps, _ = align_classes([im.class_names, yt.class_names])
    mixed = MixedClipDataset(parts, names, remaps, ratios=[3, 1])
    assert not mixed.cacheable and len(mixed) == len(im.annotations) + 2
    rng = np.random.default_rng(0)
    labels = [mixed.sample(i % len(mixed), rng).labels for i in range(80)]
    from_video = sum(bool(len(x)) and int(x.min()) >= 3 for x in labels)
    assert 8 <= from_video <= 35  # about a quarter of the clips come from the video set
    assert ratios_of("1,0.75", 2) == [1.0, 0.75]
    with pytest.raises(DatasetError, match="one per --data"):
        ratios_of("1", 2)


def test_validation_categories_matched_by_name(tmp_path):
    p = generate_ytvis(tmp_path / "v", 1, seed=0, config=SMALL, image_ext=".png")
    data = json.loads(p.read_text())
    data["categories"] = [c for c in data["categories"] if c["name"] != "square"]  # fewer categories
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 2]
    p.write_text(json.dumps(data))
    ann = YTVISAnnotations(p, tmp_path / "v" / "JPEGImages")
    ids, missing = category_mapping(["triangle", "square", "circle", "cone"], ann)
    assert ids == [3, None, 1, None] and missing == ["square", "cone"]
    ids, missing = category_mapping(3, ann)  # no names: by position
    assert ids == [1, 3, None] and missing == ["2"]


def test_still_clips_when_the_augmentation_is_off(coco):
    still = PseudoVideoAugmentation(rotation=(0.0, 0.0), crop_prob=0.0, flip_prob=0.0)
    ds = CocoClipDataset(CocoAnnotations(coco), num_frames=3, min_sizes=(48,), max_size=100, augmentation=still)
    clip = ds.sample(1, np.random.default_rng(0))
    image, _, _, masks = ds.ann.image_masks(1)
    assert (clip.frames == clip.frames[:1]).all() and (clip.masks == clip.masks[:, :1]).all()
    assert (clip.frames[0].permute(1, 2, 0).numpy() == image).all() and (clip.masks[:, 0].numpy() == masks).all()


def test_class_init_from_votes_needs_a_clear_majority():
    from dvis_sdk.training.class_transfer import class_init_from_votes

    votes = np.array([[9, 1, 0], [2, 2, 1], [0, 0, 2], [5, 0, 0]])
    init = class_init_from_votes(votes, ["ball", "blob", "rare", "circle"], ["circle", "square", "triangle"])
    assert init == {"ball": "circle"}  # blob: no majority; rare: too few; circle: known by its own name


def test_the_start_model_recognises_renamed_shapes(tmp_path):
    from dvis_sdk import VideoSegmenter
    from dvis_sdk.training.class_transfer import class_init_from_votes, vote_classes

    path = generate_coco(tmp_path, 12, seed=4, names=NAMES, category_ids=IDS)
    still = PseudoVideoAugmentation(rotation=(0.0, 0.0), crop_prob=0.0, flip_prob=0.0)
    ds = CocoClipDataset(CocoAnnotations(path), num_frames=1, min_sizes=(120,), max_size=200, augmentation=still)
    model = VideoSegmenter.from_pretrained("dvis-tiny-shapes").model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    votes = vote_classes(model, ds, num_samples=12)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # only read
    assert votes.sum() >= 12
    init = class_init_from_votes(votes, ds.class_names, model.cfg.class_names)
    assert init == {"tile": "square", "ball": "circle", "wedge": "triangle"}
