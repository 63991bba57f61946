"""YouTube-VIS datasets: parsing RLE / polygons, official clip sampling, clip-consistent augmentation, PNG converter,
clear errors for malformed data."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from dvis_sdk.training.datasets import (
    DatasetError,
    VideoClipDataset,
    YTVISAnnotations,
    convert_png_masks,
    decode_segmentation,
)
from dvis_sdk.training.synthetic import SyntheticConfig, generate_ytvis, render_video

CFG = SyntheticConfig(width=64, height=48, num_frames=6, min_objects=2, max_objects=3)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    ann = generate_ytvis(root, num_videos=3, seed=2, config=CFG, image_ext=".png")
    return ann, root / "JPEGImages"


def _rle(m):
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def test_decode_rle_uncompressed_rle_and_polygons():
    m = np.zeros((20, 30), bool)
    m[5:10, 3:12] = True
    assert np.array_equal(decode_segmentation(_rle(m), 20, 30), m)
    # uncompressed RLE (counts as a list, column-major run lengths)
    flat = m.flatten(order="F").astype(np.uint8)
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    assert np.array_equal(decode_segmentation({"size": [20, 30], "counts": runs}, 20, 30), m)
    poly = [[3.0, 5.0, 12.0, 5.0, 12.0, 10.0, 3.0, 10.0]]
    dec = decode_segmentation(poly, 20, 30)
    assert dec.shape == (20, 30) and dec[6:9, 4:11].all() and not dec[:4].any()
    assert decode_segmentation(None, 20, 30) is None
    with pytest.raises(ValueError, match="RLE size"):
        decode_segmentation(_rle(m), 21, 30)


def test_annotations_map_categories_to_contiguous_labels(synth):
    ann_path, frames = synth
    data = json.loads(ann_path.read_text())
    # renumber categories to non-contiguous ids, listed out of order
    remap = {1: 7, 2: 3, 3: 11}
    for c in data["categories"]:
        c["id"] = remap[c["id"]]
    for a in data["annotations"]:
        a["category_id"] = remap[a["category_id"]]
    ann = YTVISAnnotations(data, frames)
    assert ann.category_ids == [3, 7, 11] and ann.class_names == ["square", "circle", "triangle"]
    labels, ids, masks = ann.video_masks(0, [0, 1, 2])
    by_id = {a["id"]: a["category_id"] for a in data["annotations"]}
    assert [ann.category_ids[lab] for lab in labels] == [by_id[i] for i in ids]
    assert masks.shape[1:] == (3, 48, 64)


def test_official_frame_selection():
    ds = VideoClipDataset.__new__(VideoClipDataset)  # select_frames only reads these settings
    ds.num_frames, ds.frame_range, ds.reverse_prob = 5, 2, 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):  # 2 * range + 1 == num: a contiguous window
        idx = ds.select_frames(30, rng)
        assert idx == list(range(idx[0], idx[0] + 5))
    ds.num_frames, ds.frame_range = 3, 4
    for _ in range(50):  # a reference frame and two others within +-4, sorted
        idx = ds.select_frames(30, rng)
        assert idx == sorted(idx) and idx[-1] - idx[0] <= 8 and len(set(idx)) == 3
    ds.num_frames, ds.frame_range = 5, 2
    short = ds.select_frames(3, rng)  # video shorter than the clip: every frame, then repeats
    assert len(short) == 5 and set(short) == {0, 1, 2}
    ds.reverse_prob = 1.0
    ds.num_frames, ds.frame_range = 4, 1
    idx = ds.select_frames(10, rng)
    assert idx == sorted(idx, reverse=True)


def test_clip_sampling_is_reproducible_and_augmentation_clip_consistent(synth):
    ann_path, frames = synth
    ds = VideoClipDataset.from_files(ann_path, frames, num_frames=3, frame_range=2, min_sizes=(24, 32),
                                     max_size=100, flip_prob=0.5)
    a = ds.sample(1, np.random.default_rng(5))
    b = ds.sample(1, np.random.default_rng(5))
    assert a.frame_indices == b.frame_indices and a.flipped == b.flipped
    assert np.array_equal(a.frames.numpy(), b.frames.numpy()) and np.array_equal(a.masks.numpy(), b.masks.numpy())
    sizes, flips = set(), set()
    for s in range(20):
        c = ds.sample(0, np.random.default_rng(s))
        t, _, h, w = c.frames.shape
        assert t == 3 and c.masks.shape == (len(c.labels), 3, h, w)
        sizes.add((h, w))
        flips.add(c.flipped)
        assert c.present.any(1).all(), "every track is visible in some frame of the clip"
    assert sizes == {(24, 32), (32, 43)} and flips == {True, False}


def test_flip_and_resize_keep_masks_on_their_objects(synth):
    ann_path, frames = synth
    ds = VideoClipDataset.from_files(ann_path, frames, num_frames=2, frame_range=1, min_sizes=(48,), max_size=64)
    plain = ds.clip(2, [0, 1], flip=False)
    flipped = ds.clip(2, [0, 1], flip=True)
    assert np.array_equal(flipped.frames.numpy(), plain.frames.numpy()[..., ::-1])
    assert np.array_equal(flipped.masks.numpy(), plain.masks.numpy()[..., ::-1])
    # at the native size the masks are the rendered ones
    _, masks, shapes = render_video((2, 2), CFG)
    expected = [masks[[0, 1], k] for k in range(len(shapes)) if masks[[0, 1], k].any()]
    assert len(plain.labels) == len(expected)
    for got, exp in zip(plain.masks.numpy(), expected):
        assert np.array_equal(got, exp)


def test_training_resize_is_the_inference_resize(synth):
    """Training frames are resized exactly as inference resizes them (PIL bilinear, detectron2's pipeline at train
    and test time), masks with PIL nearest (detectron2 ``apply_segmentation``)."""
    from dvis_sdk.ops.preprocess import resize_frame
    from dvis_sdk.training.datasets import load_frame

    ann_path, frames = synth
    ds = VideoClipDataset.from_files(ann_path, frames, num_frames=2, frame_range=1, min_sizes=(30,), max_size=64)
    clip = ds.clip(1, [0, 1], flip=False)
    video = ds.ann.videos[1]
    h, w = clip.frames.shape[-2:]
    assert (h, w) != (video.height, video.width)
    for k, f in enumerate([0, 1]):
        expected = resize_frame(load_frame(frames / video.file_names[f]), (h, w))
        assert np.array_equal(clip.frames[k].permute(1, 2, 0).numpy().astype(np.uint8), expected)
    _, masks, shapes = render_video((2, 1), CFG)  # (generator seed, video index)
    native = [masks[[0, 1], j] for j in range(len(shapes)) if masks[[0, 1], j].any()]
    assert len(native) == len(clip.labels) > 0
    for got, m in zip(clip.masks.numpy(), native):
        for k in range(2):
            pil = np.asarray(Image.fromarray(m[k].astype(np.uint8)).resize((w, h), Image.NEAREST)).astype(bool)
            assert np.array_equal(got[k], pil)


def _write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_malformed_annotations_give_one_line_errors(synth, tmp_path):
    ann_path, frames = synth
    data = json.loads(ann_path.read_text())
    bad = json.loads(json.dumps(data))
    bad["annotations"][0]["segmentations"] = bad["annotations"][0]["segmentations"][:-1]
    with pytest.raises(DatasetError, match="frame count mismatch"):
        YTVISAnnotations(_write(tmp_path / "a.json", bad), frames)
    bad = json.loads(json.dumps(data))
    bad["annotations"][0]["category_id"] = 99
    with pytest.raises(DatasetError, match="unknown category_id 99"):
        YTVISAnnotations(_write(tmp_path / "b.json", bad), frames)
    bad = json.loads(json.dumps(data))
    bad["videos"][1]["file_names"][2] = "nope/00002.png"
    with pytest.raises(DatasetError, match=r"frame file not found: .*nope/00002.png"):
        YTVISAnnotations(_write(tmp_path / "c.json", bad), frames)
    bad = json.loads(json.dumps(data))
    bad["annotations"][0]["video_id"] = 42
    with pytest.raises(DatasetError, match="unknown video_id 42"):
        YTVISAnnotations(_write(tmp_path / "d.json", bad), frames)
    with pytest.raises(DatasetError, match="not a YouTube-VIS annotation file"):
        YTVISAnnotations(_write(tmp_path / "e.json", {"foo": 1}), frames)
    (tmp_path / "f.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        YTVISAnnotations(tmp_path / "f.json", frames)
    with pytest.raises(DatasetError, match="annotation file not found"):
        YTVISAnnotations(tmp_path / "missing.json", frames)
    with pytest.raises(DatasetError, match="frames folder not found") as e:
        YTVISAnnotations(ann_path, tmp_path / "nowhere")
    assert "\n" not in str(e.value)


def test_png_id_masks_convert_to_the_same_annotations(tmp_path):
    frames_dir, masks_dir = tmp_path / "frames", tmp_path / "masks"
    rng = np.random.default_rng(0)
    truth = {}
    for v in ("clipA", "clipB"):
        (frames_dir / v).mkdir(parents=True)
        (masks_dir / v).mkdir(parents=True)
        for t in range(4):
            img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            cv2.imwrite(str(frames_dir / v / f"{t:03d}.jpg"), img)
            ids = np.zeros((24, 32), np.uint8)
            ids[2:8, 3 + t:9 + t] = 1
            if t >= 1:
                ids[12:20, 10:16] = 2  # appears in frame 1
            Image.fromarray(ids, mode="L").save(masks_dir / v / f"{t:03d}.png")
            truth[(v, t)] = ids
    out = convert_png_masks(frames_dir, masks_dir, tmp_path / "ann.json", {1: "car", 2: "person"})
    ann = YTVISAnnotations(out, frames_dir)
    assert ann.class_names == ["car", "person"] and len(ann) == 2
    data = json.loads(out.read_text())
    a2 = [a for a in data["annotations"] if a["video_id"] == 1 and a["category_id"] == 2][0]
    assert a2["segmentations"][0] is None
    labels, ids, masks = ann.video_masks(0, [0, 1, 2, 3])
    for j in range(len(labels)):
        obj = 1 if ann.class_names[labels[j]] == "car" else 2
        for t in range(4):
            assert np.array_equal(masks[j, t], truth[("clipA", t)] == obj)
    # missing mask for a frame
    (masks_dir / "clipB" / "002.png").unlink()
    with pytest.raises(DatasetError, match="has no mask"):
        convert_png_masks(frames_dir, masks_dir, tmp_path / "x.json", "thing")
    out2 = convert_png_masks(frames_dir, masks_dir, tmp_path / "y.json", "thing", allow_missing_masks=True)
    assert json.loads(out2.read_text())["categories"] == [{"id": 1, "name": "thing"}]
    # an RGB mask is refused
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(masks_dir / "clipB" / "002.png")
    with pytest.raises(DatasetError, match="single-channel"):
        convert_png_masks(frames_dir, masks_dir, tmp_path / "z.json", "thing")


def test_png_converter_class_encoding_and_per_video_table(tmp_path):
    frames_dir, masks_dir = tmp_path / "f", tmp_path / "m"
    (frames_dir / "v").mkdir(parents=True)
    (masks_dir / "v").mkdir(parents=True)
    cv2.imwrite(str(frames_dir / "v" / "0.jpg"), np.zeros((8, 8, 3), np.uint8))
    ids = np.zeros((8, 8), np.uint16)
    ids[:4] = 1001  # class index 1, instance 1
    ids[4:] = 2     # class index 0
    cv2.imwrite(str(masks_dir / "v" / "0.png"), ids)  # 16-bit grayscale PNG
    out = convert_png_masks(frames_dir, masks_dir, tmp_path / "a.json", ["bg-thing", "dog"])
    cats = {a["category_id"] for a in json.loads(out.read_text())["annotations"]}
    assert cats == {1, 2}
    with pytest.raises(DatasetError, match="no category given for object 2"):
        convert_png_masks(frames_dir, masks_dir, tmp_path / "b.json", {"v": {1001: "dog"}})
