"""Bootstrap intervals on COCO ground truth and results scored by the real evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.metrics.coco import evaluate_coco, masks_to_rles, xyxy_to_xywh
from zoo.report.bootstrap import CocoResampler, PerImageAP, bootstrap_ap, percentile_interval

SIZE = 64
CATEGORIES = [{"id": 3, "name": "shirt"}, {"id": 7, "name": "pants"}, {"id": 9, "name": "shoe"}]


def _rect(y0: int, x0: int, h: int, w: int) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), dtype=bool)
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def _entries(masks: list[np.ndarray]) -> tuple[list[dict], list[list[float]]]:
    arr = np.stack(masks)
    rles = masks_to_rles(arr)
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return rles, xyxy_to_xywh(torch.tensor(boxes, dtype=torch.float32))


def make_data(n_images: int = 24, seed: int = 0) -> tuple[dict, dict[str, list[dict]]]:
    """Ground truth (1-3 boxes per image, one image empty) and three models' results:
    ``exact`` (the ground truth, score 0.9), ``shifted`` (masks moved by a few pixels, wrong on
    some images) and ``random`` (rectangles unrelated to the ground truth)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    res: dict[str, list[dict]] = {"exact": [], "shifted": [], "random": []}
    for i in range(n_images):
        images.append({"id": i, "height": SIZE, "width": SIZE, "file_name": f"{i}.jpg"})
        n = 0 if i == 0 else int(rng.integers(1, 4))
        masks = [_rect(*rng.integers(0, 30, 2), *rng.integers(12, 30, 2)) for _ in range(n)]
        cats = [int(rng.choice([3, 7, 9])) for _ in range(n)]
        if n:
            rles, boxes = _entries(masks)
            for rle, box, cat, m in zip(rles, boxes, cats, masks):
                anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "segmentation": rle,
                             "bbox": box, "area": float(m.sum()), "iscrowd": 0})
                res["exact"].append({"image_id": i, "category_id": cat, "segmentation": rle, "bbox": box,
                                     "score": 0.9})
            shift = int(rng.integers(0, 12))  # some images nearly right, some far off
            moved = [np.roll(m, (shift, shift), axis=(0, 1)) for m in masks]
            for (rle, box), cat in zip(zip(*_entries(moved)), cats):
                res["shifted"].append({"image_id": i, "category_id": cat, "segmentation": rle, "bbox": box,
                                       "score": float(rng.uniform(0.3, 1.0))})
        noise = [_rect(*rng.integers(0, 40, 2), *rng.integers(6, 20, 2)) for _ in range(2)]
        for rle, box in zip(*_entries(noise)):
            res["random"].append({"image_id": i, "category_id": int(rng.choice([3, 7, 9])), "segmentation": rle,
                                  "bbox": box, "score": float(rng.uniform(0.1, 0.9))})
    return {"images": images, "annotations": anns, "categories": CATEGORIES}, res


def test_resampler_duplicates_images_with_new_ids() -> None:
    gt, res = make_data(6)
    rs = CocoResampler(gt, res)
    draw = np.array([2, 2, 5, 0])
    gt_r = rs.gt_for(draw)
    assert [im["id"] for im in gt_r["images"]] == [0, 1, 2, 3]
    assert [im["file_name"] for im in gt_r["images"]] == ["2.jpg", "2.jpg", "5.jpg", "0.jpg"]
    per_image = {i: sum(a["image_id"] == i for a in gt["annotations"]) for i in range(6)}
    assert len(gt_r["annotations"]) == 2 * per_image[2] + per_image[5] + per_image[0]
    assert len({a["id"] for a in gt_r["annotations"]}) == len(gt_r["annotations"])  # ids unique
    exact = rs.results_for("exact", draw)
    assert len(exact) == len(gt_r["annotations"])
    # The exact model stays perfect on any resample: its detections follow their images.
    assert evaluate_coco(gt_r, exact, iou_types=("segm",))["segm"]["AP"] == pytest.approx(1.0)
    assert gt["annotations"][0]["image_id"] in per_image  # the input was not modified
    assert len(gt["images"]) == 6


def test_bootstrap_intervals_and_paired_differences() -> None:
    gt, res = make_data()
    res["exact_copy"] = [dict(d) for d in res["exact"]]
    calls = []
    out = bootstrap_ap(gt, res, n_resamples=40, seed=1, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (40, 40) and len(calls) == 40
    assert out.n_images == 24 and out.n_resamples == 40
    for name in res:
        iv = out.models[name]
        # The point estimate is what the evaluator gives on the full validation set.
        assert iv.estimate == pytest.approx(evaluate_coco(gt, res[name])["segm"]["AP"])
        assert iv.low <= iv.high
    assert out.models["exact"].low == pytest.approx(1.0)
    assert out.models["shifted"].high - out.models["shifted"].low > 0.01  # depends on the images drawn
    real = out.differences[("shifted", "random")]
    assert real.estimate > 0 and real.excludes_zero
    assert out.differences[("exact", "shifted")].excludes_zero
    tie = out.differences[("exact", "exact_copy")]
    assert (tie.low, tie.high) == (0.0, 0.0) and not tie.excludes_zero
    flipped = out.differences[("random", "shifted")]
    assert flipped.estimate == pytest.approx(-real.estimate)
    assert (flipped.low, flipped.high) == pytest.approx((-real.high, -real.low))


def test_every_model_is_scored_on_the_same_draw_in_each_resample() -> None:
    """Paired resampling: each resample draws one image multiset and scores every model on it.

    Two models with identical detections then agree resample by resample, so their difference
    interval is exactly [0, 0] although each one's AP varies with the images drawn; and every
    model's resampled AP is its score on the recorded draw of that resample.
    """
    gt, res = make_data(16, seed=3)
    res = {"shifted": res["shifted"], "random": res["random"],
           "shifted_copy": [dict(d) for d in res["shifted"]]}
    out = bootstrap_ap(gt, res, n_resamples=30, seed=0)
    assert np.unique(out.samples["shifted"]).size > 10  # the AP really depends on the images drawn
    np.testing.assert_array_equal(out.samples["shifted"], out.samples["shifted_copy"])
    tie = out.differences[("shifted", "shifted_copy")]
    assert (tie.estimate, tie.low, tie.high) == (0.0, 0.0, 0.0)
    assert out.draws.shape == (30, 16) and set(np.unique(out.draws)) <= set(range(16))
    assert len({d.tobytes() for d in out.draws}) == 30  # a new draw for every resample
    for name in res:
        fast = PerImageAP(gt, res[name])
        scored = [fast.score(draw) for draw in out.draws]
        np.testing.assert_allclose(out.samples[name], scored, atol=1e-12, err_msg=name)


def test_bootstrap_is_reproducible_and_seeded() -> None:
    gt, res = make_data(12)
    res = {"shifted": res["shifted"], "random": res["random"]}
    a = bootstrap_ap(gt, res, n_resamples=15, seed=4)
    b = bootstrap_ap(gt, res, n_resamples=15, seed=4)
    c = bootstrap_ap(gt, res, n_resamples=15, seed=5)
    np.testing.assert_array_equal(a.samples["shifted"], b.samples["shifted"])
    assert not np.array_equal(a.samples["shifted"], c.samples["shifted"])


def test_percentile_interval_ignores_nan() -> None:
    iv = percentile_interval(0.5, np.array([np.nan, 0.0, 1.0, 0.5, np.nan]), 0.5)
    assert (iv.low, iv.high) == pytest.approx((0.25, 0.75))
    empty = percentile_interval(0.5, np.array([np.nan]), 0.95)
    assert np.isnan(empty.low) and not empty.excludes_zero


def test_bootstrap_rejects_empty_validation() -> None:
    with pytest.raises(ValueError, match="at least one validation image"):
        bootstrap_ap({"images": [], "annotations": [], "categories": CATEGORIES}, {"m": []}, n_resamples=2)


@pytest.mark.parametrize("metric", ["AP", "AP50", "AP75"])
def test_per_image_ap_equals_scoring_the_resampled_set_from_scratch(metric: str) -> None:
    gt, res = make_data(16, seed=2)
    for name in ("shifted", "random"):
        fast = PerImageAP(gt, res[name])
        rs = CocoResampler(gt, {name: res[name]})
        rng = np.random.default_rng(7)
        draws = [np.arange(16)] + [rng.choice(16, size=16, replace=True) for _ in range(6)]
        for draw in draws:
            slow = evaluate_coco(rs.gt_for(draw), rs.results_for(name, draw), iou_types=("segm",))["segm"][metric]
            assert fast.score(draw, metric) == pytest.approx(slow, abs=1e-12), (name, draw)


def test_fast_and_from_scratch_bootstraps_agree() -> None:
    gt, res = make_data(10, seed=5)
    res = {"shifted": res["shifted"], "random": res["random"]}
    fast = bootstrap_ap(gt, res, n_resamples=8, seed=2)
    slow = bootstrap_ap(gt, res, n_resamples=8, seed=2,
                        evaluate=lambda g, r: evaluate_coco(g, r, iou_types=("segm",)))
    for name in res:
        np.testing.assert_allclose(fast.samples[name], slow.samples[name], atol=1e-12)


def test_a_model_without_detections_scores_zero() -> None:
    gt, res = make_data(8)
    out = bootstrap_ap(gt, {"none": [], "exact": res["exact"]}, n_resamples=5)
    assert out.models["none"].estimate == 0.0 and (out.models["none"].low, out.models["none"].high) == (0.0, 0.0)
    assert out.differences[("exact", "none")].excludes_zero
