"""zoo's Fashionpedia evaluator against the official ``fashionpedia`` package: same stats? how much faster?

    .venv/bin/python benchmarks/bench_fp_eval.py --images 500 --dets 50 --attributes 30

Ground truth in the Fashionpedia taxonomy (46 categories, the 294 attributes of
``category_attributes_descriptions.json`` when ``../shared/fixtures`` is there, else 294 ids with
gaps): per image 6-12 random ellipses/rectangles, mostly of the categories Fashionpedia scores with
attributes, each with 2-8 attributes. Results: ``--dets`` detections per image, most of them
shifted copies of a ground truth, the rest spurious, each with ``--attributes`` attribute ids (the
ground truth's own, some dropped, filled up with others), random scores, no boxes (mask areas).

One run of each: zoo's :func:`zoo.metrics.attributes.evaluate_attributes` (from the COCO dicts to
every summary and per-category AP) and FPEval (``Fashionpedia`` index, ``loadRes``, ``run()``,
``summarize_class()``). Prints the times, the speed-up and the largest difference over every
reported stat; ``--json FILE`` writes them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np

from zoo.metrics.attributes import FASHIONPEDIA_CATS_WITH_ATTRIBUTES, evaluate_attributes
from zoo.metrics.coco import masks_to_rles

TAXONOMY = (Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "fashionpedia-sample"
            / "category_attributes_descriptions.json")


def shapes(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` random ellipse or rectangle masks uint8 ``[n, size, size]`` (never empty)."""
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(0, size, (2, n, 1, 1))
    rx, ry = rng.uniform(2, size / 3, (2, n, 1, 1))
    ellipse = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    rect = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
    masks = np.where(rng.random((n, 1, 1)) < 0.5, ellipse, rect).astype(np.uint8)
    masks[masks.reshape(n, -1).sum(1) == 0, size // 2, size // 2] = 1
    return masks


def taxonomy() -> tuple[list[dict], list[dict]]:
    if TAXONOMY.is_file():
        data = json.loads(TAXONOMY.read_text())
        return data["categories"], data["attributes"]
    from zoo.metrics.attributes import FASHIONPEDIA_GARMENTS

    cats = [{"id": i, "name": FASHIONPEDIA_GARMENTS[i] if i < 13 else f"category {i}"} for i in range(46)]
    return cats, [{"id": i + i // 7, "name": f"attribute {i}"} for i in range(294)]


def synthetic_set(n_images: int, n_dets: int, n_attrs: int, size: int, seed: int) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    cats, attrs = taxonomy()
    attr_ids = np.array([a["id"] for a in attrs])
    gt = {"images": [], "annotations": [], "categories": cats, "attributes": attrs}
    results = []
    with_f1 = list(FASHIONPEDIA_CATS_WITH_ATTRIBUTES)
    for img in range(1, n_images + 1):
        gt["images"].append({"id": img, "height": size, "width": size, "file_name": f"{img}.jpg"})
        n_gt = int(rng.integers(6, 13))
        masks = shapes(rng, n_gt, size)
        gcats = np.where(rng.random(n_gt) < 0.8, rng.choice(with_f1, n_gt), rng.integers(0, 46, n_gt))
        gattrs = [sorted(rng.choice(attr_ids, int(rng.integers(2, 9)), replace=False).tolist()) for _ in range(n_gt)]
        for rle, mask, cat, a in zip(masks_to_rles(masks), masks, gcats, gattrs):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": img, "category_id": int(cat),
                                      "segmentation": rle, "area": float(mask.sum()), "iscrowd": 0,
                                      "attribute_ids": a})
        src = rng.integers(0, n_gt, n_dets)
        spurious = rng.random(n_dets) < 0.3
        det_masks = np.stack([np.roll(masks[s], tuple(rng.integers(-4, 5, 2)), axis=(0, 1)) for s in src])
        det_masks[spurious] = shapes(rng, int(spurious.sum()), size)
        for k, rle in enumerate(masks_to_rles(det_masks)):
            cat = int(rng.integers(0, 46)) if spurious[k] else int(gcats[src[k]])
            keep = [a for a in gattrs[src[k]] if rng.random() < 0.8] if not spurious[k] else []
            others = rng.choice(np.setdiff1d(attr_ids, keep), n_attrs - len(keep), replace=False).tolist()
            results.append({"image_id": img, "category_id": cat, "segmentation": rle,
                            "score": float(rng.random()), "attribute_ids": sorted(keep + others)})
    return gt, results


def run_reference(gt: dict, results: list) -> tuple[float, dict]:
    np.float = float  # the package predates numpy 2
    np.int = int
    from fashionpedia.fp import Fashionpedia
    from fashionpedia.fp_eval import FPEval

    gt, results = copy.deepcopy(gt), copy.deepcopy(results)
    tic = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp_gt = Fashionpedia()
        fp_gt.dataset = gt
        fp_gt.createIndex()
        ev = FPEval(fp_gt, fp_gt.loadRes(results), "segm")
        ev.run()
        ev.summarize_class()
    elapsed = time.perf_counter() - tic
    per_class = {name: {v: r[v]["AP"] for v in ("iou_f1", "iou", "f1") if v in r}
                 for name, r in ev.results_per_class.items() if not name.startswith("supercls-")}
    return elapsed, {"iou_f1": ev.results, "iou": ev.resultDet, "f1": ev.resultF1, "per_category": per_class}


def largest_difference(ours: dict, theirs: dict) -> tuple[float, int]:
    """Largest |ours - theirs| over the three summaries and every per-category AP, and how many stats."""
    diffs = [abs(ours[v][k] - float(x)) for v in ("iou_f1", "iou", "f1") for k, x in theirs[v].items()]
    for name, row in theirs["per_category"].items():
        diffs += [abs(ours["per_category"][name][v] - float(x)) for v, x in row.items()]
    return max(diffs), len(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--dets", type=int, default=50, help="detections per image")
    parser.add_argument("--attributes", type=int, default=30, help="attribute ids per detection")
    parser.add_argument("--size", type=int, default=256, help="image side (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    gt, results = synthetic_set(args.images, args.dets, args.attributes, args.size, args.seed)
    tic = time.perf_counter()
    ours = evaluate_attributes(gt, results)
    zoo_s = time.perf_counter() - tic
    ref_s, theirs = run_reference(gt, results)
    diff, n_stats = largest_difference(ours, theirs)
    out = {"images": args.images, "detections": len(results), "ground_truths": len(gt["annotations"]),
           "attributes_per_detection": args.attributes, "size": args.size, "zoo_s": round(zoo_s, 2),
           "fashionpedia_s": round(ref_s, 2), "speedup": round(ref_s / zoo_s, 1), "stats_compared": n_stats,
           "max_abs_difference": diff, "AP_iou_f1": ours["iou_f1"]["AP"], "AP_iou": ours["iou"]["AP"],
           "AP_f1": ours["f1"]["AP"], "cpus": os.cpu_count()}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
