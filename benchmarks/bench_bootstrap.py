"""How long do the comparison report's bootstrap intervals take?

    .venv/bin/python benchmarks/bench_bootstrap.py --images 60 --models 3 --resamples 200 --dets 100

Builds a validation set like the embedded dataset's default split (``--images`` images of
``--size`` px, ``--instances`` masks each over 46 categories) and ``--models`` models' results
(every object found with jitter, 20 % wrong category, padded with low-score false positives to
``--dets`` detections per image, as detectors with a 0.05 score threshold return), then times
:func:`zoo.report.bootstrap.bootstrap_ap` three ways:

* ``per-image`` (the default): per-image COCO matching once, ``accumulate`` per resample;
* ``scratch/faster``: every resample rebuilt and scored by ``evaluate_coco`` (faster-coco-eval);
* ``scratch/pycocotools``: the same with pycocotools.

The from-scratch ways run ``--resamples // 20`` resamples; per-resample times are compared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from zoo.latency import device_name
from zoo.metrics.coco import evaluate_coco, masks_to_rles, xyxy_to_xywh
from zoo.report.bootstrap import bootstrap_ap


def blobs(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``n`` random ellipse masks bool ``[n, size, size]`` (never empty)."""
    yy, xx = np.mgrid[0:size, 0:size]
    cx, cy = rng.uniform(0, size, (2, n, 1, 1))
    rx, ry = rng.uniform(3, size / 4, (2, n, 1, 1))
    masks = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    masks[:, size // 2, size // 2] |= ~masks.reshape(n, -1).any(1)
    return masks


def entries(masks: np.ndarray) -> tuple[list[dict], list[list[float]]]:
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return masks_to_rles(masks), xyxy_to_xywh(torch.tensor(np.array(boxes), dtype=torch.float32))


def make_set(images: int, size: int, instances: int, models: int, dets: int = 0,
             seed: int = 0) -> tuple[dict, dict[str, list]]:
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": k, "name": f"c{k}"} for k in range(46)]}
    results: dict[str, list] = {f"model{m}": [] for m in range(models)}
    for i in range(images):
        gt["images"].append({"id": i, "height": size, "width": size, "file_name": f"{i}.jpg"})
        masks = blobs(rng, instances, size)
        cats = rng.integers(0, 46, instances)
        for (rle, box), cat, m in zip(zip(*entries(masks)), cats, masks):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "category_id": int(cat),
                                      "segmentation": rle, "bbox": box, "area": float(m.sum()), "iscrowd": 0})
        for name in results:
            moved = np.roll(masks, tuple(rng.integers(-3, 4, 2)), axis=(1, 2))
            extra = max(instances // 5 + 1, dets - instances)
            found = np.concatenate([moved, blobs(rng, extra, size)])
            labels = np.concatenate([np.where(rng.random(instances) < 0.2, rng.integers(0, 46, instances), cats),
                                     rng.integers(0, 46, extra)])
            scores = np.concatenate([rng.uniform(0.3, 1.0, instances), rng.uniform(0.05, 0.6, extra)])
            for (rle, box), cat, score in zip(zip(*entries(found)), labels, scores):
                results[name].append({"image_id": i, "category_id": int(cat), "segmentation": rle, "bbox": box,
                                      "score": float(score)})
    return gt, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--dets", type=int, default=100, help="detections per image and model")
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()
    gt, results = make_set(args.images, args.size, args.instances, args.models, args.dets)
    n_dets = sum(len(r) for r in results.values())
    print(f"machine: {device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads")
    print(f"set: {args.images} images of {args.size} px, {len(gt['annotations'])} ground-truth masks, "
          f"{args.models} models, {n_dets} detections in all")
    scratch = max(1, args.resamples // 20)
    ways = (("per-image", None, args.resamples),
            ("scratch/faster", "faster", scratch), ("scratch/pycocotools", "pycocotools", scratch))
    per_resample, intervals = {}, {}
    for label, backend, n in ways:
        evaluate = None if backend is None else (
            lambda g, r, backend=backend: evaluate_coco(g, r, backend=backend, iou_types=("segm",)))
        tic = time.perf_counter()
        out = bootstrap_ap(gt, results, n_resamples=n, evaluate=evaluate, seed=0)
        took = time.perf_counter() - tic
        per_resample[label] = took / (n + 1)  # +1: the full-set estimate
        intervals[label] = out.samples["model0"][:scratch]
        iv = out.models["model0"]
        print(f"{label:>20}: {n:>3} resamples x {args.models} models in {took:6.1f} s "
              f"({per_resample[label] * 1000:7.0f} ms per resample); model0 mask AP {iv.estimate:.4f} "
              f"[{iv.low:.3f}, {iv.high:.3f}]")
    same = all(np.allclose(intervals["per-image"], v, atol=1e-9) for v in intervals.values())
    print(f"first {scratch} resamples identical across the three ways: {same}")
    for label in ways[1:]:
        print(f"per-image is {per_resample[label[0]] / per_resample['per-image']:.0f}x faster than {label[0]}")


if __name__ == "__main__":
    main()
