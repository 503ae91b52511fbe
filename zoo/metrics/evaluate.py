"""Score any adapter on dataset images: COCO segm/bbox, per-category AP, confusion, semantic mIoU.

One pass over the images: each batch is predicted, encoded to COCO results and folded into the
confusion and semantic accumulators, so memory does not grow with full-size masks. The harness
calls this every epoch with ``out_dir=None`` (no files, no figures).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from zoo.adapter import Adapter
from zoo.metrics.coco import (coco_categories, coco_image_entry, preds_to_results, score_coco,
                              target_to_annotations)
from zoo.metrics.confusion import ConfusionMatrix
from zoo.metrics.semantic import SemanticScores
from zoo.types import InstancePred


def to_model_image(image: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A dataset image uint8 ``[3, H, W]`` -> float32 ``[3, H, W]`` in ``[0, 1]`` on ``device``."""
    # Move the uint8 tensor first: a quarter of the bytes of the float copy.
    return image.as_subclass(torch.Tensor).to(device).float().div_(255.0)


def _check_pred(pred: InstancePred, height: int, width: int, num_classes: int, who: str) -> None:
    """The adapter contract, checked once per image so a broken adapter fails with a clear message."""
    if tuple(pred.masks.shape[-2:]) != (height, width) and len(pred):
        raise ValueError(f"{who}: masks {tuple(pred.masks.shape)} are not at the image size {(height, width)}")
    if len(pred) and (int(pred.labels.min()) < 1 or int(pred.labels.max()) > num_classes):
        raise ValueError(f"{who}: labels must be in 1..{num_classes}, got {pred.labels.tolist()}")


def evaluate_adapter(adapter: Adapter, dataset: Any, indices: Sequence[int], *, device: str = "cpu",
                     batch_size: int = 2, out_dir: Path | None = None, plots: bool = False,
                     backend: str = "faster", score_threshold: float = 0.5) -> dict[str, Any]:
    """Predict ``dataset[indices]`` with ``adapter`` and score the predictions.

    Args:
        adapter: any registered architecture (moved to ``device``; left in its train/eval mode).
        dataset: an InstanceDataset: ``dataset[i] -> (uint8 [3, H, W], target)``, ``.categories``,
            ``.image_ids``.
        indices: dataset indices to score (COCO image id = dataset index).
        batch_size: images per ``predict`` call.
        out_dir: when given, write ``results.json`` (COCO results, compressed RLE), ``gt.json``,
            ``metrics.json`` and ``confusion.csv``; with ``plots`` also ``pr_curves.png``,
            ``pr_per_category.png`` (mask IoU .50/.75) and ``confusion.png``.
        backend: ``faster`` or ``pycocotools``.
        score_threshold: detections below it are left out of the confusion matrix and the
            semantic maps (COCO AP uses every detection).
    Returns:
        :func:`zoo.metrics.coco.evaluate_coco`'s dict plus ``"semantic"`` (mIoU, pixel_acc),
        ``"confusion"`` (summary counts), ``"n_images"``, ``"time_s"``; per-category rows gain
        the semantic ``"IoU"``.
    """
    start = time.perf_counter()
    categories = list(dataset.categories)
    num_classes = len(categories)
    label_to_cat = {c.label: c.id for c in categories}
    confusion = ConfusionMatrix(num_classes, iou_threshold=0.5, score_threshold=score_threshold)
    semantic = SemanticScores(num_classes, score_threshold=score_threshold)
    images, gt_anns, results = [], [], []
    adapter.to(device)
    indices = [int(i) for i in indices]
    for first in range(0, len(indices), batch_size):
        batch = indices[first:first + batch_size]
        samples = [dataset[i] for i in batch]
        preds = [p.to("cpu") for p in adapter.predict([to_model_image(im, device) for im, _ in samples])]
        for idx, (image, target), pred in zip(batch, samples, preds):
            h, w = int(image.shape[-2]), int(image.shape[-1])
            _check_pred(pred, h, w, num_classes, f"adapter {adapter.name!r} on image {idx}")
            images.append(coco_image_entry(dataset, idx, h, w))
            gt_anns += target_to_annotations(target, idx, label_to_cat, len(gt_anns) + 1)
            confusion.update(pred, target)
            semantic.update(pred, target)
        results += preds_to_results(preds, batch, label_to_cat)
    gt = {"images": images, "annotations": gt_anns, "categories": coco_categories(categories)}
    scores = score_coco(gt, results, backend)
    metrics = scores.metrics
    ious = semantic.per_category_iou()
    for c in categories:
        if c.name in metrics["per_category"] and c.label in ious:
            metrics["per_category"][c.name]["IoU"] = ious[c.label]
    metrics.update(semantic=semantic.result(), confusion=confusion.summary(), backend=backend,
                   n_images=len(indices), n_detections=len(results),
                   time_s=round(time.perf_counter() - start, 3))
    if out_dir is not None:
        write_outputs(Path(out_dir), metrics, gt, results, scores, confusion, categories, plots)
    return metrics


def write_outputs(out_dir: Path, metrics: dict[str, Any], gt: dict[str, Any], results: list[dict[str, Any]],
                  scores: Any, confusion: ConfusionMatrix, categories: list[Any], plots: bool) -> list[Path]:
    """Write the evaluation files into ``out_dir`` (created); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in (("results.json", results), ("gt.json", gt), ("metrics.json", metrics)):
        path = out_dir / name
        path.write_text(json.dumps(data, indent=1 if name == "metrics.json" else None))
        written.append(path)
    names = [c.name for c in sorted(categories, key=lambda c: c.label)]
    confusion.write_csv(out_dir / "confusion.csv", names)
    written.append(out_dir / "confusion.csv")
    if plots:
        from zoo.metrics.plots import plot_confusion, plot_pr_curves

        by_id = {c.id: c for c in categories}
        cats = [by_id[cid] for cid in scores.cat_ids]
        n_gt = [metrics["per_category"].get(c.name, {}).get("n_gt", 0) for c in cats]
        written += plot_pr_curves(scores.precision["segm"], [c.name for c in cats], n_gt, out_dir)
        written.append(plot_confusion(confusion.matrix, names, out_dir / "confusion.png"))
    return written
