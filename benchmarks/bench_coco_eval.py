"""faster-coco-eval vs pycocotools on a synthetic COCO set: identical stats? how much faster?

    .venv/bin/python benchmarks/bench_coco_eval.py --images 5000 --instances 20 --size 64

Ground truth: per image ``--instances`` random ellipses/rectangles over 46 categories. Results:
each object detected once with jitter (15 % with a wrong category), plus 20 % false positives,
random scores. Images are small (64 px by default) because generating 100k RLE masks at full
resolution would dominate the run; COCO scoring cost is driven by the RLE lengths and counts.

Timed per backend and IoU type: building the COCO indexes, loadRes, evaluate, accumulate,
summarize (what :func:`zoo.metrics.coco.evaluate_coco` runs), best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from zoo.latency import device_name
from zoo.metrics.coco import STAT_NAMES, _eval_one, masks_to_rles, prepare_gt


def shapes(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` random ellipse or rectangle masks uint8 ``[n, size, size]`` (never empty)."""
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(0, size, (2, n, 1, 1))
    rx, ry = rng.uniform(1.5, size / 3, (2, n, 1, 1))
    ellipse = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    rect = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
    masks = np.where(rng.random((n, 1, 1)) < 0.5, ellipse, rect).astype(np.uint8)
    empty = masks.reshape(n, -1).sum(1) == 0
    masks[empty, size // 2, size // 2] = 1
    return masks


def synthetic_set(n_images: int, per_image: int, size: int, n_cats: int, seed: int) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in range(n_cats)]}
    results = []
    for img in range(n_images):
        gt["images"].append({"id": img, "height": size, "width": size})
        masks = shapes(rng, per_image, size)
        cats = rng.integers(0, n_cats, per_image)
        for rle, cat in zip(masks_to_rles(masks), cats):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": img,
                                      "category_id": int(cat), "segmentation": rle, "iscrowd": 0})
        # detections: each object once, shifted by up to 3 px, plus false positives
        shifted = np.stack([np.roll(m, tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) for m in masks])
        n_fp = int(per_image * 0.2)
        det_masks = np.concatenate([shifted, shapes(rng, n_fp, size)])
        det_cats = np.concatenate([np.where(rng.random(per_image) < 0.15, rng.integers(0, n_cats, per_image), cats),
                                   rng.integers(0, n_cats, n_fp)])
        for rle, cat, score in zip(masks_to_rles(det_masks), det_cats, rng.random(len(det_cats))):
            results.append({"image_id": img, "category_id": int(cat), "segmentation": rle, "score": float(score)})
    return prepare_gt(gt), results


def time_backend(gt: dict, results: list, iou_type: str, backend: str, repeat: int) -> tuple[float, np.ndarray]:
    best, stats = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        stats, _ = _eval_one(gt, results, iou_type, backend)
        best = min(best, time.perf_counter() - start)
    return best, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--categories", type=int, default=46)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", help="write the figures as JSON")
    args = ap.parse_args()

    start = time.perf_counter()
    gt, results = synthetic_set(args.images, args.instances, args.size, args.categories, args.seed)
    print(f"generated {len(gt['images'])} images, {len(gt['annotations'])} objects, {len(results)} detections "
          f"at {args.size}x{args.size} px in {time.perf_counter() - start:.1f}s "
          f"({device_name(torch.device('cpu'))}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})")
    report = {"images": args.images, "instances": len(gt["annotations"]), "detections": len(results),
              "size": args.size}
    for iou_type in ("segm", "bbox"):
        t_fast, s_fast = time_backend(gt, results, iou_type, "faster", args.repeat)
        t_ref, s_ref = time_backend(gt, results, iou_type, "pycocotools", args.repeat)
        diff = float(np.abs(s_fast - s_ref).max())
        report[iou_type] = {"faster_s": round(t_fast, 2), "pycocotools_s": round(t_ref, 2),
                            "speedup": round(t_ref / t_fast, 2), "max_abs_stat_diff": diff,
                            "stats": dict(zip(STAT_NAMES, map(float, s_ref)))}
        print(f"{iou_type}: faster-coco-eval {t_fast:.2f}s  pycocotools {t_ref:.2f}s  "
              f"speedup x{t_ref / t_fast:.2f}  max |stat diff| {diff:.2e}")
        print("   " + "  ".join(f"{n} {v:.4f}" for n, v in zip(STAT_NAMES, s_ref)))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
