"""COCO scoring: known answers, parity of faster-coco-eval with pycocotools, file round trips."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from zoo.errors import DataError, UserError
from zoo.metrics.coco import (STAT_NAMES, dataset_to_coco, evaluate_coco, masks_to_rles, prepare_gt,
                              preds_to_results)
from zoo.types import Category, InstancePred


def _rect_masks(boxes: list[tuple[int, int, int, int]], size: int) -> torch.Tensor:
    """bool [N, size, size] with each XYXY box filled."""
    masks = torch.zeros((len(boxes), size, size), dtype=torch.bool)
    for m, (x0, y0, x1, y1) in zip(masks, boxes):
        m[y0:y1, x0:x1] = True
    return masks


def _gt_from(images: list[list[tuple[int, tuple[int, int, int, int]]]], size: int, n_cats: int) -> dict:
    """COCO ground truth: per image a list of (category id, XYXY box) rectangles."""
    anns = []
    for img_id, objs in enumerate(images):
        masks = _rect_masks([b for _, b in objs], size)
        for (cat, (x0, y0, x1, y1)), rle, m in zip(objs, masks_to_rles(masks), masks):
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "segmentation": rle,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(m.sum()), "iscrowd": 0})
    return {"images": [{"id": i, "height": size, "width": size} for i in range(len(images))],
            "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)]}


def _results_from(gt: dict, score: float = 0.9) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "bbox": a["bbox"], "score": score} for a in gt["annotations"]]


# Small (< 32**2 px) and large (> 96**2 px) objects, none of medium area.
SCENE = [[(1, (2, 2, 20, 20)), (2, (24, 24, 124, 124))], [(1, (10, 60, 20, 70))], []]
# The same categories, each box overlapping no ground-truth object at all.
DISJOINT = [[(1, (100, 2, 120, 20)), (2, (0, 24, 20, 128))], [(1, (100, 100, 120, 120))], []]


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_perfect_predictions_score_one(backend: str) -> None:
    gt = _gt_from(SCENE, 128, 2)
    m = evaluate_coco(gt, _results_from(gt), backend=backend)
    for kind in ("segm", "bbox"):
        assert m[kind]["AP"] == pytest.approx(1.0)
        assert m[kind]["AP50"] == pytest.approx(1.0)
        assert m[kind]["AR100"] == pytest.approx(1.0)
        # the scene has small and large objects but none of medium area: COCO's -1 is kept
        assert m[kind]["APm"] == -1.0
        assert m[kind]["APl"] == pytest.approx(1.0)
    assert m["per_category"]["c1"]["n_gt"] == 2
    assert m["per_category"]["c2"]["AP"] == pytest.approx(1.0)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_disjoint_predictions_score_zero(backend: str) -> None:
    gt = _gt_from(SCENE, 128, 2)
    m = evaluate_coco(gt, _results_from(_gt_from(DISJOINT, 128, 2)), backend=backend)
    assert m["segm"]["AP"] == 0.0
    assert m["bbox"]["AP50"] == 0.0
    assert m["segm"]["AR100"] == 0.0


def test_wrong_category_scores_zero_and_empty_results_score_zero() -> None:
    gt = _gt_from(SCENE, 128, 2)
    swapped = [{**r, "category_id": 3 - r["category_id"]} for r in _results_from(gt)]
    assert evaluate_coco(gt, swapped)["segm"]["AP"] == 0.0
    empty = evaluate_coco(gt, [])
    assert empty["segm"]["AP"] == 0.0 and empty["segm"]["APm"] == -1.0


def _random_case(seed: int, n_images: int = 60, n_cats: int = 8, size: int = 128) -> tuple[dict, list[dict]]:
    """Random ellipse/rectangle ground truth over many images and categories, and predictions that
    are jittered copies (some with the wrong category) plus false positives with random scores."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"k{c}"} for c in range(1, n_cats + 1)]}
    results = []

    def shape(cx, cy, rx, ry, ellipse):
        m = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1) if ellipse else \
            ((abs(xx - cx) <= rx) & (abs(yy - cy) <= ry))
        return m.astype(np.uint8)

    for img_id in range(n_images):
        gt["images"].append({"id": img_id, "height": size, "width": size})
        for _ in range(rng.integers(0, 7)):
            cx, cy = rng.integers(10, size - 10, 2)
            rx, ry = rng.integers(2, 60, 2)
            cat = int(rng.integers(1, n_cats + 1))
            m = shape(cx, cy, rx, ry, rng.random() < 0.5)
            if not m.any():
                continue
            rle = masks_to_rles(m[None])[0]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": img_id, "category_id": cat,
                                      "segmentation": rle, "iscrowd": int(rng.random() < 0.05)})
            for _ in range(rng.integers(0, 3)):  # jittered detections of this object
                j = shape(cx + rng.integers(-6, 7), cy + rng.integers(-6, 7), max(1, rx + rng.integers(-5, 6)),
                          max(1, ry + rng.integers(-5, 6)), rng.random() < 0.5)
                results.append({"image_id": img_id, "segmentation": masks_to_rles(j[None])[0],
                                "category_id": cat if rng.random() < 0.8 else int(rng.integers(1, n_cats + 1)),
                                "score": float(rng.random())})
        for _ in range(rng.integers(0, 3)):  # false positives
            m = shape(*rng.integers(5, size - 5, 2), *rng.integers(2, 30, 2), True)
            results.append({"image_id": img_id, "segmentation": masks_to_rles(m[None])[0],
                            "category_id": int(rng.integers(1, n_cats + 1)), "score": float(rng.random())})
    gt = prepare_gt(gt)  # boxes and areas from the masks
    return gt, results


@pytest.mark.parametrize("seed", [0, 1])
def test_faster_backend_matches_pycocotools(seed: int) -> None:
    gt, results = _random_case(seed)
    assert len(gt["annotations"]) > 100 and len(results) > 100
    fast = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results), backend="faster")
    ref = evaluate_coco(copy.deepcopy(gt), copy.deepcopy(results), backend="pycocotools")
    for kind in ("segm", "bbox"):
        for name in STAT_NAMES:
            assert fast[kind][name] == pytest.approx(ref[kind][name], abs=1e-4), (kind, name)
        assert 0.05 < ref[kind]["AP50"] < 0.95  # a case that exercises matching, not a trivial one
    assert fast["per_category"].keys() == ref["per_category"].keys()
    for name, row in ref["per_category"].items():
        for key in ("AP", "AP50", "AP75", "bbox_AP", "bbox_AP50"):
            assert fast["per_category"][name][key] == pytest.approx(row[key], abs=1e-4), (name, key)


def test_inputs_are_not_modified_by_scoring() -> None:
    gt, results = _random_case(3, n_images=5)
    before = (copy.deepcopy(gt), copy.deepcopy(results))
    evaluate_coco(gt, results)
    assert (gt, results) == before


class _TinySet:
    """Two images with rectangles: just what dataset_to_coco reads."""

    categories = [Category(id=0, label=1, name="shirt"), Category(id=7, label=2, name="shoe")]
    image_ids = ["a", "b"]

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        boxes = [[(2, 3, 20, 30)], [(5, 5, 9, 9), (30, 10, 60, 40)]][i]
        masks = _rect_masks(boxes, 64).to(torch.uint8)
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor([1, 2][: len(boxes)]),
                  "masks": masks, "attributes": [[3]] * len(boxes), "image_id": i}
        return torch.zeros((3, 64, 64), dtype=torch.uint8), target


def test_results_round_trip_through_pycocotools_loadres(tmp_path) -> None:
    ds = _TinySet()
    gt = dataset_to_coco(ds)
    assert [a["category_id"] for a in gt["annotations"]] == [0, 0, 7]
    assert gt["annotations"][0]["bbox"] == [2.0, 3.0, 18.0, 27.0]
    assert gt["annotations"][0]["area"] == 18 * 27
    preds = []
    for i in range(len(ds)):
        _, t = ds[i]
        preds.append(InstancePred(t["boxes"], t["labels"], torch.linspace(0.9, 0.5, len(t["labels"])),
                                  t["masks"].bool()))
    results = preds_to_results(preds, [0, 1], {c.label: c.id for c in ds.categories})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    coco = COCO(str(tmp_path / "gt.json"))
    dt = coco.loadRes(str(tmp_path / "res.json"))
    assert len(dt.anns) == 3
    _, target = ds[1]
    for det, mask in zip(dt.loadAnns(dt.getAnnIds(imgIds=[1])), target["masks"]):
        assert np.array_equal(dt.annToMask(det), mask.numpy())
        assert det["category_id"] in (0, 7) and 0.5 <= det["score"] <= 0.9
    assert evaluate_coco(gt, results)["segm"]["AP"] == pytest.approx(1.0)


def test_ground_truth_without_bbox_gets_boxes_from_polygons() -> None:
    gt = {"images": [{"id": 5, "height": 50, "width": 80}],
          "annotations": [{"id": 1, "image_id": 5, "category_id": 3, "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]}],
          "categories": [{"id": 3, "name": "hat"}]}
    ann = prepare_gt(gt)["annotations"][0]
    assert ann["bbox"] == pytest.approx([10, 10, 20, 10], abs=1.0)
    assert ann["area"] == pytest.approx(200, rel=0.15)
    assert ann["iscrowd"] == 0
    assert "bbox" not in gt["annotations"][0]  # the caller's dict is left alone


def test_bad_inputs_are_one_line_errors() -> None:
    gt = _gt_from(SCENE, 128, 2)
    with pytest.raises(DataError, match="row 0 has image_id 99"):
        evaluate_coco(gt, [{**_results_from(gt)[0], "image_id": 99}])
    with pytest.raises(DataError, match="category_id 42"):
        evaluate_coco(gt, [{**_results_from(gt)[0], "category_id": 42}])
    with pytest.raises(DataError, match="annotations"):
        evaluate_coco({"images": []}, [])
    with pytest.raises(UserError, match="faster, pycocotools"):
        evaluate_coco(gt, [], backend="detectron")
