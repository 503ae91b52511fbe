"""Semantic mIoU and pixel accuracy of rasterized instances on hand-built cases."""

from __future__ import annotations

import pytest
import torch

from zoo.metrics.semantic import SemanticScores, rasterize
from zoo.types import InstancePred


def _region(rows: slice, cols: slice, size: int = 10) -> torch.Tensor:
    m = torch.zeros((size, size), dtype=torch.bool)
    m[rows, cols] = True
    return m


def _pred(labels: list[int], masks: list[torch.Tensor], scores: list[float]) -> InstancePred:
    return InstancePred(boxes=torch.zeros((len(labels), 4)), labels=torch.tensor(labels, dtype=torch.int64),
                        scores=torch.tensor(scores), masks=torch.stack(masks))


TOP, LEFT = _region(slice(0, 5), slice(None)), _region(slice(None), slice(0, 5))
# Ground truth: category 1 on the top half, category 2 on the left half (overlap: 25 px carry both).
TARGET = {"labels": torch.tensor([1, 2]), "masks": torch.stack([TOP, LEFT]).to(torch.uint8)}


def test_rasterize_is_multi_label() -> None:
    maps = rasterize(TARGET["labels"], TARGET["masks"], num_classes=3)
    assert maps.shape == (4, 10, 10) and maps.dtype == torch.bool
    assert maps[1].sum() == 50 and maps[2].sum() == 50 and (maps[1] & maps[2]).sum() == 25
    assert not maps[0].any() and not maps[3].any()


def test_hand_built_miou_and_pixel_accuracy() -> None:
    pred = _pred([1, 3, 2], [_region(slice(0, 4), slice(None)), _region(slice(9, 10), slice(None)), LEFT],
                 [0.9, 0.8, 0.1])  # the category-2 prediction is below the threshold
    s = SemanticScores(num_classes=3, score_threshold=0.5)
    s.update(pred, TARGET)
    # IoU1 = 40/50, IoU2 = 0/50 (missed), IoU3 = 0/10 (predicted only); mIoU over the 3 present
    assert s.per_category_iou() == pytest.approx({1: 0.8, 2: 0.0, 3: 0.0})
    r = s.result()
    assert r["mIoU"] == pytest.approx(0.8 / 3)
    # exact label-set matches: rows 0-3 x cols 5-9 ({1}) and rows 5-8 x cols 5-9 (background)
    assert r["pixel_acc"] == pytest.approx(0.40)
    assert r["n_categories"] == 3


def test_scores_accumulate_over_images_not_per_image_mean() -> None:
    s = SemanticScores(num_classes=2)
    s.update(_pred([1], [TOP], [0.9]), {"labels": torch.tensor([2]), "masks": TOP[None].to(torch.uint8)})
    s.update(_pred([2], [TOP], [0.9]), {"labels": torch.tensor([2]), "masks": TOP[None].to(torch.uint8)})
    # category 2: intersection 50, union 100 over both images; category 1: 0 / 50
    assert s.per_category_iou() == pytest.approx({1: 0.0, 2: 0.5})
    assert s.result()["pixel_acc"] == pytest.approx((50 + 100) / 200)


def test_perfect_and_empty_predictions() -> None:
    s = SemanticScores(num_classes=2)
    s.update(_pred([1, 2], [TOP, LEFT], [1.0, 1.0]), TARGET)
    assert s.result()["mIoU"] == 1.0 and s.result()["pixel_acc"] == 1.0
    empty = SemanticScores(num_classes=2)
    empty.update(InstancePred.empty(10, 10), {"labels": torch.zeros(0, dtype=torch.int64),
                                              "masks": torch.zeros((0, 10, 10), dtype=torch.uint8)})
    assert empty.result()["mIoU"] == -1.0 and empty.result()["pixel_acc"] == 1.0


def _random_image(rng, n: int, h: int, w: int, num_classes: int) -> tuple[list[int], torch.Tensor, list[float]]:
    """``n`` rectangles and blobs that overlap each other, random labels and scores."""
    masks = torch.zeros((n, h, w), dtype=torch.bool)
    for m in masks:
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y0:rng.integers(y0 + 1, h), x0:rng.integers(x0 + 1, w)] = True
        m &= torch.from_numpy(rng.random((h, w)) < 0.9)
    return rng.integers(1, num_classes + 1, n).tolist(), masks, rng.random(n).tolist()


def test_rle_update_sums_exactly_what_the_dense_update_sums() -> None:
    """The full-size path (masks as COCO RLE) against the dense one, image by image."""
    import numpy as np

    from zoo.metrics.coco import masks_to_rles

    rng = np.random.default_rng(0)
    dense, runs = SemanticScores(4, score_threshold=0.4), SemanticScores(4, score_threshold=0.4)
    for _ in range(6):
        h, w = rng.integers(8, 40, 2)
        g_labels, g_masks, _ = _random_image(rng, int(rng.integers(0, 6)), h, w, 4)
        p_labels, p_masks, p_scores = _random_image(rng, int(rng.integers(0, 6)), h, w, 4)
        # Some predictions are ground-truth instances: pixels where the category sets agree.
        p_labels, p_masks = g_labels[:2] + p_labels, torch.cat([g_masks[:2], p_masks])
        p_scores = [0.9] * min(2, len(g_labels)) + p_scores
        dense.update(_pred(p_labels, list(p_masks), p_scores) if p_labels else InstancePred.empty(h, w),
                     {"labels": torch.tensor(g_labels, dtype=torch.int64), "masks": g_masks})
        runs.update_rles(p_labels, p_scores, masks_to_rles(p_masks), g_labels, masks_to_rles(g_masks), int(h), int(w))
    assert torch.equal(dense.intersection, runs.intersection) and torch.equal(dense.union, runs.union)
    assert (dense.exact_pixels, dense.total_pixels) == (runs.exact_pixels, runs.total_pixels)
    assert 0 < dense.result()["pixel_acc"] < 1
