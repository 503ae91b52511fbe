"""The Fashionpedia evaluator (AP with mask IoU and attribute F1): against the official
``fashionpedia`` package on its own fixture and on random predictions, and on hand-built cases."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from conftest import shared_fixture_path
from zoo.errors import DataError
from zoo.metrics.attributes import (FASHIONPEDIA_GARMENTS, attribute_metrics, binary_macro_f1,
                                    evaluate_attributes)

TOL = 1e-4


def reference(gt: dict, results: list) -> object:
    """The official FPEval, run as its demo runs it (segm), with per-class results."""
    pytest.importorskip("fashionpedia")
    np.float = float  # the package predates numpy 2
    np.int = int
    from fashionpedia.fp import Fashionpedia
    from fashionpedia.fp_eval import FPEval

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's zero-division warnings
        fp_gt = Fashionpedia()
        fp_gt.dataset = copy.deepcopy(gt)
        fp_gt.createIndex()
        fp_dt = fp_gt.loadRes(copy.deepcopy(results))
        ev = FPEval(fp_gt, fp_dt, "segm")
        ev.run()
        ev.summarize_class()
    return ev


def assert_same_stats(ours: dict, ev: object) -> None:
    """Every summary stat of the three variants and every per-class AP agree to TOL."""
    for variant, theirs in (("iou_f1", ev.results), ("iou", ev.resultDet), ("f1", ev.resultF1)):
        assert list(ours[variant]) == list(theirs), variant
        for key, value in theirs.items():
            assert ours[variant][key] == pytest.approx(float(value), abs=TOL), (variant, key)
    for name, theirs in ev.results_per_class.items():
        if name.startswith("supercls-"):  # category groups: their AP is in the summaries (APo, APa, APp)
            continue
        row = ours["per_category"][name]
        assert row["iou"] == pytest.approx(float(theirs["iou"]["AP"]), abs=TOL), name
        if "iou_f1" in theirs:
            assert row["iou_f1"] == pytest.approx(float(theirs["iou_f1"]["AP"]), abs=TOL), name
            assert row["f1"] == pytest.approx(float(theirs["f1"]["AP"]), abs=TOL), name
        else:
            assert row["iou_f1"] is None and row["f1"] is None


def test_matches_fashionpedia_on_its_fixture() -> None:
    folder = shared_fixture_path("fashionpedia-sample")
    gt = json.loads((folder / "sample.json").read_text())
    results = json.loads((folder / "fake_results.json").read_text())
    ours = evaluate_attributes(gt, results)
    assert_same_stats(ours, reference(gt, results))
    # The fixture's sleeves are found with the right attributes but masks that miss: they score with
    # F1 alone (IoU ignored) and not with IoU; the hat has no attributes and is scored on IoU alone.
    sleeve, hat = ours["per_category"]["sleeve"], ours["per_category"]["hat"]
    assert sleeve["iou"] == 0.0 < sleeve["f1"]
    assert hat["iou"] == pytest.approx(1.0) and hat["iou_f1"] is None


def fashionpedia_like_gt(rng: np.random.Generator, n_images: int, n_attributes: int) -> dict:
    """46 categories in Fashionpedia's numbering (its 13 garments first), attributes with
    non-contiguous ids, random rectangles and ellipses of every COCO area range, a few crowds."""
    cats = [{"id": i, "name": FASHIONPEDIA_GARMENTS[i] if i < 13 else f"category {i}"} for i in range(46)]
    attrs = [{"id": 3 * i + 7, "name": f"attribute {i}"} for i in range(n_attributes)]
    images, anns = [], []
    attr_ids = [a["id"] for a in attrs]
    common = [0, 1, 6, 10, 31, 33, 23, 24]  # garments, sleeve, neckline (F1) and shoe, bag (IoU only)
    for img_id in range(1, n_images + 1):
        h, w = int(rng.integers(60, 220)), int(rng.integers(60, 220))
        images.append({"id": img_id, "height": h, "width": w, "file_name": f"{img_id}.jpg"})
        for _ in range(int(rng.integers(0, 7)) if img_id > 1 else 0):
            mask = random_mask(rng, h, w)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            cat = int(rng.choice(common)) if rng.random() < 0.8 else int(rng.integers(0, 46))
            k = int(rng.integers(0, 5))
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "segmentation": rle,
                         "area": float(mask.sum()), "iscrowd": int(rng.random() < (0.3 if cat in (23, 24) else 0.04)),
                         "attribute_ids": sorted(int(a) for a in rng.choice(attr_ids, k, replace=False))})
            if rng.random() < 0.3:  # an overlapping twin: a detection of either has two candidates
                twin = np.roll(mask, (int(rng.integers(1, 6)), int(rng.integers(1, 6))), axis=(0, 1))
                rle = mask_utils.encode(np.asfortranarray(twin.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                k = int(rng.integers(0, 5))
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat, "segmentation": rle,
                             "area": float(twin.sum()), "iscrowd": 0,
                             "attribute_ids": sorted(int(a) for a in rng.choice(attr_ids, k, replace=False))})
    return {"images": images, "annotations": anns, "categories": cats, "attributes": attrs}


def random_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
    y1, x1 = int(rng.integers(y0 + 2, h + 1)), int(rng.integers(x0 + 2, w + 1))
    if rng.random() < 0.5:
        mask[y0:y1, x0:x1] = True
    else:
        yy, xx = np.ogrid[:h, :w]
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, max(1, (y1 - y0) / 2), max(1, (x1 - x0) / 2)
        mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = True
    return mask


def random_predictions(rng: np.random.Generator, gt: dict) -> list:
    """Shifted copies of most ground truths (two of a crowd) with some attributes flipped, spurious detections,
    scores rounded to 0.1 (ties), and one cell with more than 100 detections."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    attr_ids = [a["id"] for a in gt["attributes"]]
    rows = []

    def add(image_id: int, cat: int, mask: np.ndarray, attrs: list) -> None:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        rows.append({"image_id": image_id, "category_id": cat, "segmentation": rle,
                     "score": round(float(rng.random()), 1), "attribute_ids": attrs})

    for ann in gt["annotations"]:
        if rng.random() < 0.2:
            continue
        h, w = sizes[ann["image_id"]]
        mask = mask_utils.decode({**ann["segmentation"], "counts": ann["segmentation"]["counts"].encode()}).astype(bool)
        mask = np.roll(mask, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
        attrs = set(ann["attribute_ids"])
        for a in rng.choice(attr_ids, int(rng.integers(0, 3)), replace=False):
            attrs ^= {int(a)}
        add(ann["image_id"], ann["category_id"], mask, sorted(attrs))
        if ann["iscrowd"]:  # a crowd region may be matched again (IoU-only categories)
            add(ann["image_id"], ann["category_id"], np.roll(mask, 2, axis=0), sorted(attrs))
    for image_id, (h, w) in sizes.items():
        for _ in range(int(rng.integers(0, 4))):
            add(image_id, int(rng.integers(0, 46)), random_mask(rng, h, w),
                sorted(int(a) for a in rng.choice(attr_ids, int(rng.integers(0, 4)), replace=False)))
    h, w = sizes[2]
    for _ in range(105):  # more than maxDets=100 in one cell: the lowest-scoring ones are dropped
        add(2, 10, random_mask(rng, h, w), [attr_ids[0]])
    return rows


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_fashionpedia_on_random_predictions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = fashionpedia_like_gt(rng, n_images=60, n_attributes=30)
    results = random_predictions(rng, gt)
    ours = evaluate_attributes(gt, results)
    assert_same_stats(ours, reference(gt, results))
    assert 0 < ours["iou_f1"]["AP"] < ours["iou"]["AP"]


def test_binary_macro_f1_is_sklearns() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    n = 12
    det = (rng.random((20, n)) < 0.3).astype(np.float32)
    gt = (rng.random((12, n)) < 0.3).astype(np.float32)
    det[0], gt[0], det[1], gt[1] = 0, 0, 1, 1  # both empty, both full: one label present
    ours = binary_macro_f1(det, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.array([[f1_score(g.astype(int), d.astype(int), average="macro") for g in gt] for d in det])
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    assert ours[0, 0] == 1.0 and ours[1, 1] == 1.0


def one_image_gt(attribute_ids: list[list[int]], categories: list[int]) -> dict:
    mask = np.zeros((64, 64), dtype=np.uint8)
    anns = []
    for i, (attrs, cat) in enumerate(zip(attribute_ids, categories)):
        m = mask.copy()
        m[4 + 30 * i: 24 + 30 * i, 4:40] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"id": i + 1, "image_id": 1, "category_id": cat, "segmentation": rle, "area": float(m.sum()),
                     "iscrowd": 0, "attribute_ids": attrs})
    return {"images": [{"id": 1, "height": 64, "width": 64}], "annotations": anns,
            "categories": [{"id": 1, "name": "shirt"}, {"id": 2, "name": "bag"}],
            "attributes": [{"id": a, "name": f"attr{a}"} for a in (1, 2, 3, 4)]}


def test_a_perfect_mask_with_half_right_attributes() -> None:
    # GT {1, 2}, prediction {1, 3} over 4 attributes: F1("has") = 2/4, F1("lacks") = 2/4, so F1 = 0.5.
    gt = one_image_gt([[1, 2]], [1])
    det = [{**{k: gt["annotations"][0][k] for k in ("image_id", "category_id", "segmentation")},
            "score": 0.9, "attribute_ids": [1, 3]}]
    out = evaluate_attributes(gt, det)
    assert out["iou"]["AP"] == pytest.approx(1.0)
    assert out["f1"]["AP_F150"] == pytest.approx(1.0)
    assert out["f1"]["AP_F175"] == pytest.approx(0.0)
    assert out["iou_f1"]["AP"] == pytest.approx(0.1)  # only the 0.50 F1 threshold of ten is met
    row = out["per_attribute"]
    assert (row["attr1"]["precision"], row["attr1"]["recall"]) == (1.0, 1.0)
    assert (row["attr2"]["recall"], row["attr2"]["n_matched"], row["attr2"]["n_pred"]) == (0.0, 1, 0)
    assert (row["attr3"]["precision"], row["attr3"]["n_gt"]) == (0.0, 0)
    assert row["attr4"]["f1"] == -1.0  # neither carried nor predicted


def test_categories_without_attributes_are_scored_on_iou_alone() -> None:
    gt = one_image_gt([[1], []], [1, 2])  # category 2 ("bag") has no attributes in the ground truth
    dets = [{**{k: a[k] for k in ("image_id", "category_id", "segmentation")}, "score": 0.9, "attribute_ids": [4]}
            for a in gt["annotations"]]
    out = evaluate_attributes(gt, dets)
    assert out["categories_with_f1"] == ["shirt"]
    bag = out["per_category"]["bag"]
    assert (bag["with_f1"], bag["iou_f1"], bag["f1"]) == (False, None, None) and bag["iou"] == pytest.approx(1.0)
    assert out["per_category"]["shirt"]["iou_f1"] == pytest.approx(0.0)  # F1 of {4} against {1} is 1/3
    assert "APo" not in out["iou_f1"]  # category groups belong to the Fashionpedia taxonomy only


def test_metrics_say_when_attributes_cannot_be_scored() -> None:
    gt = one_image_gt([[1, 2]], [1])
    det = [{k: gt["annotations"][0][k] for k in ("image_id", "category_id", "segmentation")} | {"score": 0.5}]
    assert attribute_metrics(gt, det) == {"scored": False, "reason": "the predictions carry no attribute_ids"}
    assert attribute_metrics(one_image_gt([[]], [1]), det) is None
    # A model with an attribute head that detected nothing scores 0, not "not scored".
    nothing = attribute_metrics(gt, [], predicts=True)
    assert nothing["scored"] and nothing["iou_f1"]["AP"] == 0.0 and nothing["per_attribute"]["attr1"]["n_gt"] == 1
    with pytest.raises(DataError, match="results row 0: attribute id 99"):
        attribute_metrics(gt, [{**det[0], "attribute_ids": [99]}])


def test_a_model_with_attribute_predictions_is_scored_and_its_files_score_the_same(tmp_path) -> None:
    """An untrained UNet with its attribute head on 3 synthetic photos: metrics.json's attribute
    scores are what the written gt.json and results_segm.json give, with zoo's evaluator and with
    the official one."""
    import torch

    from zoo.adapter import build_with_attributes, get_adapter
    from zoo.attributes import attribute_space
    from zoo.build import model_config
    from zoo.config import DataConfig
    from zoo.data.dataset import open_dataset
    from zoo.data.synth import write_synthetic
    from zoo.metrics.evaluate import evaluate_adapter

    ds = open_dataset(DataConfig(source=str(write_synthetic(tmp_path / "synth", n=3, size=64, seed=1)), max_size=64))
    torch.manual_seed(0)
    adapter = build_with_attributes(get_adapter("unet"), model_config("unet"), len(ds.categories), attribute_space(ds))
    metrics = evaluate_adapter(adapter, ds, [0, 1, 2], batch_size=2, out_dir=tmp_path / "eval")
    gt = json.loads((tmp_path / "eval" / "gt.json").read_text())
    results = json.loads((tmp_path / "eval" / "results_segm.json").read_text())
    assert len(gt["attributes"]) == 92 and any(a["attribute_ids"] for a in gt["annotations"])
    assert results and all("attribute_ids" in r for r in results)
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())["attributes"]
    assert written["scored"] and written == json.loads(json.dumps(metrics["attributes"]))
    assert written == json.loads(json.dumps(attribute_metrics(gt, results)))
    assert_same_stats(written, reference(gt, results))
