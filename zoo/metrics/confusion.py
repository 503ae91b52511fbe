"""Category confusion between predicted and ground-truth instances, with a background row/column.

Matrix layout ``[C + 1, C + 1]`` (int64): rows are ground-truth labels, columns predicted labels,
index 0 is background. A prediction (score >= threshold) matched to a ground-truth instance by
mask IoU >= ``iou_threshold`` counts at ``[gt_label, pred_label]`` whatever the two categories
are (that is the point: it shows which categories are mistaken for which). Unmatched ground
truth counts at ``[gt_label, 0]`` (missed), unmatched predictions at ``[0, pred_label]``
(spurious). Matching is one-to-one, highest-IoU pairs first, so a wrong-category prediction can
only take an instance that no better-overlapping prediction claims.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from zoo.types import InstancePred


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU of bool masks ``a [N, H, W]`` and ``b [M, H, W]`` -> float32 ``[N, M]``."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return torch.zeros((a.shape[0], b.shape[0]), dtype=torch.float32)
    fa = a.flatten(1).float()
    fb = b.flatten(1).float()
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def match_by_iou(iou: Tensor, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (row, col) pairs with ``iou >= threshold``, taken in decreasing IoU order."""
    pairs = (iou >= threshold).nonzero().tolist()
    pairs.sort(key=lambda rc: -float(iou[rc[0], rc[1]]))
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    matches = []
    for r, c in pairs:
        if r not in used_rows and c not in used_cols:
            used_rows.add(r)
            used_cols.add(c)
            matches.append((r, c))
    return matches


class ConfusionMatrix:
    """Accumulates the confusion matrix over images; see the module docstring for the layout."""

    def __init__(self, num_classes: int, iou_threshold: float = 0.5, score_threshold: float = 0.5) -> None:
        self.num_classes = num_classes
        self.iou_threshold = iou_threshold
        self.score_threshold = score_threshold
        self.matrix = torch.zeros((num_classes + 1, num_classes + 1), dtype=torch.int64)

    def update(self, pred: InstancePred, target: dict[str, Any]) -> None:
        """Add one image: ``pred`` masks bool ``[N, H, W]``, ``target["masks"]`` ``[M, H, W]``."""
        keep = pred.scores >= self.score_threshold
        p_masks, p_labels = pred.masks[keep].bool().cpu(), pred.labels[keep].cpu()
        g_masks, g_labels = target["masks"].bool().cpu(), target["labels"].cpu()
        self.add(mask_iou(p_masks, g_masks), p_labels, g_labels)

    def update_rles(self, pred_labels: Sequence[int], pred_scores: Sequence[float], pred_rles: list[dict],
                    gt_labels: Sequence[int], gt_rles: list[dict]) -> None:
        """Add one image whose masks are COCO RLEs of one size (e.g. the photo's own): IoU from
        pycocotools on the runs, so no full-size mask is built."""
        from pycocotools import mask as mask_utils

        keep = [i for i, s in enumerate(pred_scores) if s >= self.score_threshold]
        dts = [pred_rles[i] for i in keep]
        iou = torch.zeros((len(dts), len(gt_rles)), dtype=torch.float32)
        if dts and gt_rles:
            iou = torch.from_numpy(mask_utils.iou(dts, gt_rles, [0] * len(gt_rles))).float().reshape(iou.shape)
        self.add(iou, torch.tensor([pred_labels[i] for i in keep], dtype=torch.int64),
                 torch.tensor(list(gt_labels), dtype=torch.int64))

    def add(self, iou: Tensor, p_labels: Tensor, g_labels: Tensor) -> None:
        """Add one image from its IoU ``[N, M]`` between predictions (labels ``[N]``, already above
        the score threshold) and ground truth (labels ``[M]``)."""
        matches = match_by_iou(iou, self.iou_threshold)
        p_hit = torch.zeros(len(p_labels), dtype=torch.bool)
        g_hit = torch.zeros(len(g_labels), dtype=torch.bool)
        for pi, gi in matches:
            self.matrix[g_labels[gi], p_labels[pi]] += 1
            p_hit[pi] = g_hit[gi] = True
        self.matrix[0].index_add_(0, p_labels[~p_hit], torch.ones(int((~p_hit).sum()), dtype=torch.int64))
        self.matrix[:, 0].index_add_(0, g_labels[~g_hit], torch.ones(int((~g_hit).sum()), dtype=torch.int64))

    def summary(self) -> dict[str, Any]:
        """Counts: matched with the right / a wrong category, missed, spurious."""
        m = self.matrix
        diag = int(m.diagonal()[1:].sum())
        return {"correct": diag, "wrong_category": int(m[1:, 1:].sum()) - diag,
                "missed": int(m[1:, 0].sum()), "spurious": int(m[0, 1:].sum()),
                "iou_threshold": self.iou_threshold, "score_threshold": self.score_threshold}

    def write_csv(self, path: Path, names: Sequence[str]) -> None:
        """CSV with a header row and a first column of names (``background`` first)."""
        labels = ["background", *names]
        if len(labels) != self.matrix.shape[0]:
            raise ValueError(f"{len(names)} names for {self.num_classes} categories")
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["gt \\ pred", *labels])
            for name, row in zip(labels, self.matrix.tolist()):
                w.writerow([name, *row])
