"""Semantic (per-pixel) scores of instance predictions, so semantic and instance models compare
on both scales.

Instances are rasterized per category: a pixel carries category ``c`` when any instance of
``c`` covers it (predictions: only those with score >= threshold). Clothing overlaps (a sleeve
on a dress), so a pixel may carry several categories: the maps are multi-label.

* **IoU of category c**: intersection / union of the binary ``c`` maps, summed over all
  evaluated images (dataset-level, not averaged per image).
* **mIoU**: mean IoU over the categories present in the ground truth *or* the predictions of the
  evaluated images (a category absent from both is undefined and left out; background is not a
  category here).
* **pixel accuracy**: share of pixels whose predicted category *set* equals the ground-truth set
  exactly (background = the empty set). With single-label data this is ordinary pixel accuracy.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from zoo.types import InstancePred


def rasterize(labels: Tensor, masks: Tensor, num_classes: int) -> Tensor:
    """Per-category maps bool ``[C + 1, H, W]`` from labels ``[N]`` (1..C) and masks ``[N, H, W]``.

    Row 0 (background) stays False; it keeps indexing by label direct.
    """
    maps = torch.zeros((num_classes + 1, *masks.shape[-2:]), dtype=torch.bool)
    for lab, m in zip(labels.tolist(), masks.bool()):
        maps[lab] |= m
    return maps


class SemanticScores:
    """Accumulates per-category intersections/unions and exact-match pixels over images."""

    def __init__(self, num_classes: int, score_threshold: float = 0.5) -> None:
        self.num_classes = num_classes
        self.score_threshold = score_threshold
        self.intersection = torch.zeros(num_classes + 1, dtype=torch.int64)
        self.union = torch.zeros(num_classes + 1, dtype=torch.int64)
        self.exact_pixels = 0
        self.total_pixels = 0

    def update(self, pred: InstancePred, target: dict[str, Any]) -> None:
        """Add one image: ``pred`` masks bool ``[N, H, W]``, ``target["masks"]`` ``[M, H, W]`` (same H, W)."""
        keep = pred.scores >= self.score_threshold
        p = rasterize(pred.labels[keep].cpu(), pred.masks[keep].cpu(), self.num_classes)
        g = rasterize(target["labels"].cpu(), target["masks"].cpu(), self.num_classes)
        if p.shape != g.shape:
            raise ValueError(f"prediction maps {tuple(p.shape)} differ from ground truth {tuple(g.shape)}")
        self.intersection += (p & g).flatten(1).sum(1)
        self.union += (p | g).flatten(1).sum(1)
        self.exact_pixels += int((p == g).all(0).sum())
        self.total_pixels += int(g.shape[-1] * g.shape[-2])

    def update_rles(self, pred_labels: Sequence[int], pred_scores: Sequence[float], pred_rles: list[dict],
                    gt_labels: Sequence[int], gt_rles: list[dict], height: int, width: int) -> None:
        """Add one image whose masks are COCO RLEs of ``height x width`` (e.g. the photo's own size).

        The same sums as :meth:`update`, computed on runs with pycocotools (union, intersection and
        area), so a 6000x4000 photo costs what its runs cost.
        """
        from pycocotools import mask as mask_utils

        from zoo.data.rle import complement_coco_rle

        by_label: dict[int, tuple[list[dict], list[dict]]] = {}
        for lab, score, rle in zip(pred_labels, pred_scores, pred_rles):
            if score >= self.score_threshold:
                by_label.setdefault(int(lab), ([], []))[0].append(rle)
        for lab, rle in zip(gt_labels, gt_rles):
            by_label.setdefault(int(lab), ([], []))[1].append(rle)
        disagree = []
        for lab, (preds, gts) in by_label.items():
            p, g = (mask_utils.merge(r, intersect=False) if r else None for r in (preds, gts))
            both = [m for m in (p, g) if m is not None]
            union = mask_utils.merge(both, intersect=False) if len(both) > 1 else both[0]
            inter = mask_utils.merge(both, intersect=True) if len(both) > 1 else None
            self.union[lab] += int(mask_utils.area(union))
            self.intersection[lab] += int(mask_utils.area(inter)) if inter is not None else 0
            # Pixels where this category is in one set only: the union less the intersection.
            disagree.append(union if inter is None else
                            mask_utils.merge([union, _bytes(complement_coco_rle(inter))], intersect=True))
        wrong = int(mask_utils.area(mask_utils.merge(disagree, intersect=False))) if disagree else 0
        self.exact_pixels += height * width - wrong
        self.total_pixels += height * width

    def per_category_iou(self) -> dict[int, float]:
        """Label -> IoU for labels with a non-empty union."""
        return {lab: float(self.intersection[lab]) / float(self.union[lab])
                for lab in range(1, self.num_classes + 1) if self.union[lab] > 0}

    def result(self) -> dict[str, float]:
        """``{"mIoU", "pixel_acc", "score_threshold", "n_categories"}``; mIoU -1 if nothing is present."""
        ious = self.per_category_iou()
        return {"mIoU": sum(ious.values()) / len(ious) if ious else -1.0,
                "pixel_acc": self.exact_pixels / self.total_pixels if self.total_pixels else -1.0,
                "score_threshold": self.score_threshold, "n_categories": len(ious)}


def _bytes(rle: dict) -> dict:
    """An RLE with ``counts`` as bytes (what pycocotools' merge reads)."""
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
