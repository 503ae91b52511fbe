"""Run-length encodings: round trips, decoding at size, agreement with pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from pycocotools import mask as mask_util

from zoo.data.paste import paste_rle
from zoo.data.rle import (TargetGrid, coco_rle_runs, complement_coco_rle, counts_from_string, decode_runs_at_size,
                          decode_runs_full, encode_kaggle_rle, mask_to_coco_rle, merge_runs, parse_kaggle_rle,
                          run_problems, runs_to_coco_rle, sample_indices)
from zoo.errors import DataError

masks = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda hw: arrays(np.bool_, hw, elements=st.booleans()))


@settings(max_examples=150, deadline=None)
@given(masks, st.integers(0, 1))
def test_kaggle_rle_round_trip(mask: np.ndarray, base: int) -> None:
    starts, lengths = parse_kaggle_rle(encode_kaggle_rle(mask, base=base), base=base)
    assert run_problems(starts, lengths, *mask.shape) in ([], ["empty mask"])
    np.testing.assert_array_equal(decode_runs_full(starts, lengths, *mask.shape), mask)


@settings(max_examples=150, deadline=None)
@given(masks, st.integers(1, 60), st.integers(1, 60))
def test_decode_at_size_equals_full_decode_then_nearest(mask: np.ndarray, out_h: int, out_w: int) -> None:
    starts, lengths = parse_kaggle_rle(encode_kaggle_rle(mask))
    small = decode_runs_at_size(starts, lengths, TargetGrid(*mask.shape, out_h, out_w))
    full = decode_runs_full(starts, lengths, *mask.shape)
    expected = full[sample_indices(mask.shape[0], out_h)][:, sample_indices(mask.shape[1], out_w)]
    np.testing.assert_array_equal(small, expected)


def test_decode_at_size_agrees_with_torch_and_pil_nearest_resize() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(200, 700, 2)
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = h * rng.uniform(0.2, 0.8), w * rng.uniform(0.2, 0.8), min(h, w) * rng.uniform(0.1, 0.4)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2) | (rng.random((h, w)) < 0.002)
        out_h, out_w = int(h * 0.27) + 1, int(w * 0.31) + 1
        small = decode_runs_at_size(*parse_kaggle_rle(encode_kaggle_rle(mask)), TargetGrid(h, w, out_h, out_w))
        by_torch = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None].float(), size=(out_h, out_w),
                                                   mode="nearest-exact")[0, 0].numpy()
        by_pil = np.asarray(Image.fromarray(mask).resize((out_w, out_h), Image.NEAREST))
        # Sampling rules agree up to float rounding at exact pixel-centre ties.
        assert (small != by_torch).mean() < 0.01
        assert (small != by_pil).mean() < 0.01
        assert small.sum() > 0


def test_decode_handles_unsorted_and_overlapping_runs() -> None:
    starts, lengths = np.array([50, 10, 12]), np.array([5, 10, 3])
    full = decode_runs_full(starts, lengths, 10, 8)
    assert full.sum() == 15  # 10..19 and 50..54, the overlap counted once
    np.testing.assert_array_equal(decode_runs_at_size(starts, lengths, TargetGrid(10, 8, 10, 8)), full)
    assert run_problems(starts, lengths, 10, 8) == ["unsorted runs"]
    assert run_problems(np.array([10, 12]), np.array([5, 5]), 10, 8) == ["overlapping runs"]
    assert run_problems(np.array([78]), np.array([5]), 10, 8) == ["run out of bounds"]
    merged = merge_runs(starts, lengths)
    assert merged[0].tolist() == [10, 50] and merged[1].tolist() == [10, 5]


@settings(max_examples=100, deadline=None)
@given(masks)
def test_kaggle_runs_to_coco_rle_agrees_with_pycocotools(mask: np.ndarray) -> None:
    rle = runs_to_coco_rle(*parse_kaggle_rle(encode_kaggle_rle(mask)), *mask.shape)
    reference = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle["counts"] == reference["counts"].decode()
    assert list(rle["size"]) == list(mask.shape)
    assert mask_util.area(reference) == int(mask.sum())


@settings(max_examples=100, deadline=None)
@given(masks)
def test_compressed_counts_string_decodes_like_pycocotools(mask: np.ndarray) -> None:
    (starts, lengths), h, w = coco_rle_runs(mask_to_coco_rle(mask))
    assert (h, w) == mask.shape
    np.testing.assert_array_equal(decode_runs_full(starts, lengths, h, w), mask)
    counts = counts_from_string(mask_to_coco_rle(mask)["counts"])
    assert counts.sum() == mask.size


@pytest.mark.parametrize("text, message", [("1 2 3", "odd number"), ("1 2 x 4", "not an integer"),
                                           ("1 2.5", "not an integer")])
def test_malformed_rle_is_a_one_line_error_naming_the_row(text: str, message: str) -> None:
    with pytest.raises(DataError, match=f"train.csv row 7: .*{message}"):
        parse_kaggle_rle(text, where="train.csv row 7")


def test_base_one_shifts_starts_and_is_the_default() -> None:
    assert parse_kaggle_rle("1 3", base=1)[0].tolist() == [0]
    assert parse_kaggle_rle("1 3", base=0)[0].tolist() == [1]
    assert parse_kaggle_rle("1 3")[0].tolist() == [0]  # iMaterialist starts are 1-based
    first_pixel = np.zeros((4, 3), bool)
    first_pixel[0, 0] = True
    assert encode_kaggle_rle(first_pixel) == "1 1"


@settings(max_examples=150, deadline=None)
@given(masks)
def test_complement_is_every_other_pixel(mask: np.ndarray) -> None:
    flipped = complement_coco_rle(mask_to_coco_rle(mask))
    decoded = mask_util.decode({**flipped, "counts": flipped["counts"].encode()})
    np.testing.assert_array_equal(decoded, ~mask)


def bilinear_reference(prob: np.ndarray, height: int, width: int, threshold: float = 0.5) -> np.ndarray:
    """The full-size mask the dense way: every output pixel interpolated (float64, torch's
    align_corners=False sampling), written independently of zoo.data.paste's run arithmetic."""
    h, w = prob.shape
    # torch's source index: (i + 0.5) * scale - 0.5 with scale = in / out, clamped to the image.
    sy = np.clip((np.arange(height) + 0.5) * (h / height) - 0.5, 0, h - 1)
    sx = np.clip((np.arange(width) + 0.5) * (w / width) - 0.5, 0, w - 1)
    y0, x0 = np.minimum(np.floor(sy).astype(int), max(h - 2, 0)), np.minimum(np.floor(sx).astype(int), max(w - 2, 0))
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (sy - y0)[:, None], (sx - x0)[None, :]
    p = prob.astype(np.float64)
    top = (1 - wx) * p[y0][:, x0] + wx * p[y0][:, x1]
    bottom = (1 - wx) * p[y1][:, x0] + wx * p[y1][:, x1]
    return (1 - wy) * top + wy * bottom > threshold


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.float32, hw, elements=st.sampled_from([0.0, 1.0, 0.3, 0.7, 0.5]))),
       st.integers(1, 70), st.integers(1, 70))
def test_paste_rle_equals_dense_bilinear_then_threshold(prob: np.ndarray, height: int, width: int) -> None:
    rle = paste_rle(prob, height, width)
    assert rle["size"] == [height, width]
    decoded = mask_util.decode({**rle, "counts": rle["counts"].encode()}).astype(bool)
    np.testing.assert_array_equal(decoded, bilinear_reference(prob, height, width))


def test_paste_rle_agrees_with_torch_interpolate_at_photo_size() -> None:
    rng = np.random.default_rng(0)
    for _ in range(10):
        h, w = rng.integers(40, 120, 2)
        yy, xx = np.mgrid[:h, :w]
        mask = (yy - h / 2) ** 2 / (h / 3) ** 2 + (xx - w / 2) ** 2 / (w / 4) ** 2 < 1
        height, width = int(h * rng.uniform(2, 7)), int(w * rng.uniform(2, 7))
        rle = paste_rle(mask, height, width)
        dense = torch.nn.functional.interpolate(torch.from_numpy(mask)[None, None].float(), size=(height, width),
                                                mode="bilinear", align_corners=False)[0, 0].numpy() > 0.5
        decoded = mask_util.decode({**rle, "counts": rle["counts"].encode()}).astype(bool)
        # Only exact 0.5 ties may round apart between float32 and float64.
        assert (decoded != dense).mean() < 1e-3 and decoded.sum() > 0


def test_paste_rle_of_an_empty_mask_and_a_bad_shape() -> None:
    rle = paste_rle(np.zeros((5, 7), bool), 40, 30)
    assert rle["size"] == [40, 30] and mask_util.area({**rle, "counts": rle["counts"].encode()}) == 0
    with pytest.raises(ValueError, match="expects a mask"):
        paste_rle(np.zeros((2, 3, 4)), 10, 10)
