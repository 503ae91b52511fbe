"""Fashion attributes as the models see them: the source's ids mapped once to contiguous indices.

iMaterialist 2019 numbers its 92 attributes 0..91 (ClassId suffixes), Fashionpedia its 294 with
gaps (``attribute_ids``). A model predicts a vector ``[A]`` of independent probabilities, one per
attribute of the dataset, in increasing id order (:class:`AttributeSpace`). Only instances of
categories that carry attributes in the data, and that have attributes, teach the head: an
iMaterialist garment without a suffix is unannotated, not "no attribute".

Also here: multi-hot targets (:meth:`AttributeSpace.multi_hot`), the per-attribute F1
(:func:`attribute_f1`) and the decision threshold chosen with it on validation images
(:func:`best_threshold`), and the matching of predictions to ground truth (mask IoU >= 0.5, same
category) they are measured on (:func:`matched_attributes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

DEFAULT_THRESHOLD = 0.5
# Initial probability of every attribute: a head's last bias starts at its logit (RetinaNet's
# prior), so the many absent attributes give a small loss at the start instead of swamping the others.
PRIOR = 0.01
PRIOR_LOGIT = -math.log((1 - PRIOR) / PRIOR)
THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 .. 0.95


@dataclass(frozen=True)
class AttributeSpace:
    """The attributes a model predicts.

    Attributes:
        ids: source attribute ids in increasing order; column ``j`` of every ``[N, A]`` vector is ``ids[j]``.
        names: one name per id.
        labels: contiguous category labels (``1..C``) whose instances carry attributes in the data.
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ids)

    def name_of(self) -> dict[int, str]:
        return dict(zip(self.ids, self.names))

    def multi_hot(self, attribute_lists: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> Tensor:
        """float32 ``[N, A]``: 1 where instance ``n`` has attribute ``ids[j]`` (unknown ids ignored)."""
        column = {a: j for j, a in enumerate(self.ids)}
        out = torch.zeros((len(attribute_lists), len(self.ids)), dtype=torch.float32)
        for n, attrs in enumerate(attribute_lists):
            cols = [column[int(a)] for a in attrs if int(a) in column]
            out[n, cols] = 1.0
        return out.to(device)

    def trains_on(self, labels: Tensor, attribute_lists: Sequence[Sequence[int]]) -> Tensor:
        """bool ``[N]``: the instances that teach the head (category carries attributes, instance has some)."""
        carrying = torch.tensor([int(lab) in self.labels for lab in labels.tolist()], dtype=torch.bool)
        annotated = torch.tensor([len(a) > 0 for a in attribute_lists], dtype=torch.bool)
        return (carrying & annotated).reshape(-1).to(labels.device)

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (a weights-only checkpoint can hold them)."""
        return {"ids": list(self.ids), "names": list(self.names), "labels": list(self.labels)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "AttributeSpace":
        return AttributeSpace(tuple(int(i) for i in data["ids"]), tuple(str(n) for n in data["names"]),
                              tuple(int(lab) for lab in data["labels"]))


def attribute_space(dataset: Any) -> AttributeSpace | None:
    """The attributes of ``dataset`` (an :class:`~zoo.data.dataset.InstanceDataset`), or None when
    none of its instances carries one.

    Ids: every attribute the source defines (its label file) and any its annotations use; labels:
    the categories with at least one attributed instance in the annotation file (no mask decoded).
    """
    from zoo.data.index import record_attribute_usage

    source = dataset.source
    label_of = {c.id: c.label for c in dataset.categories}
    categories, used = record_attribute_usage(source.records)  # from the index's tables: no mask read
    labels = {label_of[c] for c in categories if c in label_of}
    if not labels:
        return None
    ids = sorted(set(source.attributes) | used)
    names = tuple(str(source.attributes.get(i, f"attribute {i}")) for i in ids)
    return AttributeSpace(tuple(ids), names, tuple(sorted(labels)))


def decode(probs: Tensor, labels: Tensor, space: AttributeSpace, threshold: float) -> list[list[int]]:
    """Attribute ids per instance: probabilities ``[N, A]`` above ``threshold``, for instances
    whose category carries attributes (others: ``[]``)."""
    picked = (probs > threshold).cpu().numpy()
    carrying = set(space.labels)
    ids = np.asarray(space.ids)
    return [ids[row].tolist() if int(lab) in carrying else [] for row, lab in zip(picked, labels.tolist())]


# ---------------------------------------------------------------- matching and F1
def mask_iou(pred_masks: Tensor, gt_masks: Tensor) -> Tensor:
    """IoU ``[P, G]`` of bool/uint8 masks ``[P, H, W]`` and ``[G, H, W]``."""
    p = pred_masks.reshape(pred_masks.shape[0], -1).float()
    g = gt_masks.reshape(gt_masks.shape[0], -1).float()
    inter = p @ g.t()
    union = p.sum(1)[:, None] + g.sum(1)[None, :] - inter
    return inter / union.clamp(min=1.0)


def match_to_gt(pred: Any, target: dict[str, Any], iou_threshold: float = 0.5) -> list[tuple[int, int]]:
    """``(prediction index, ground-truth index)`` pairs, COCO-style: predictions by decreasing
    score each take the unmatched ground truth of their category with the highest mask IoU
    (at least ``iou_threshold``)."""
    gt_masks = torch.as_tensor(target["masks"]).as_subclass(Tensor)
    gt_labels = torch.as_tensor(target["labels"]).as_subclass(Tensor).cpu()
    if len(pred) == 0 or gt_masks.shape[0] == 0:
        return []
    iou = mask_iou(pred.masks.cpu(), gt_masks.cpu())
    iou[pred.labels.cpu()[:, None] != gt_labels[None, :]] = 0.0
    taken: set[int] = set()
    pairs = []
    for p in torch.argsort(pred.scores.cpu(), descending=True).tolist():
        row = iou[p].clone()
        row[list(taken)] = 0.0
        g = int(row.argmax())
        if row[g] >= iou_threshold:
            taken.add(g)
            pairs.append((p, g))
    return pairs


def attribute_f1(predicted: Tensor, truth: Tensor) -> Tensor:
    """Mean over attributes of each attribute's F1, for one or many decisions at once.

    Args:
        predicted: bool ``[..., N, A]`` (leading dims: e.g. one per threshold).
        truth: bool ``[N, A]``.
    Returns:
        float ``[...]``: the mean F1 over the attributes present in ``truth`` or predicted
        (an attribute neither has is left out; 0 when there is none).
    """
    truth = truth.bool()
    tp = (predicted & truth).sum(-2).float()
    fp = (predicted & ~truth).sum(-2).float()
    fn = (~predicted & truth).sum(-2).float()
    seen = (tp + fp + fn) > 0
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1.0)
    return (f1 * seen).sum(-1) / seen.sum(-1).clamp(min=1)


def best_threshold(probs: Tensor, truth: Tensor, grid: Sequence[float] = THRESHOLD_GRID) -> tuple[float, float]:
    """``(threshold, mean attribute F1)`` of the threshold in ``grid`` with the highest mean
    attribute F1 of ``probs`` ``[N, A]`` against ``truth`` ``[N, A]``; ties go to the one nearest 0.5."""
    if probs.shape[0] == 0:
        return DEFAULT_THRESHOLD, 0.0
    t = torch.tensor(grid, dtype=probs.dtype)
    scores = attribute_f1(probs[None] > t[:, None, None], truth)
    order = sorted(range(len(grid)), key=lambda k: (-float(scores[k]), abs(grid[k] - DEFAULT_THRESHOLD)))
    return float(grid[order[0]]), float(scores[order[0]])


def matched_attributes(preds: Sequence[Any], targets: Sequence[dict[str, Any]],
                       space: AttributeSpace) -> tuple[Tensor, Tensor, Tensor]:
    """Probabilities ``[M, A]``, ground truth ``[M, A]`` and labels ``[M]`` of the ground-truth
    instances that teach attributes and that a prediction matches (:func:`match_to_gt`)."""
    probs, truth, labels = [], [], []
    for pred, target in zip(preds, targets):
        if pred.attribute_probs is None:
            continue
        gt_labels = torch.as_tensor(target["labels"]).as_subclass(Tensor).cpu()
        attrs = target.get("attributes") or [[] for _ in range(len(gt_labels))]
        teach = space.trains_on(gt_labels, attrs)
        for p, g in match_to_gt(pred, target):
            if teach[g]:
                probs.append(pred.attribute_probs[p].cpu())
                truth.append(space.multi_hot([attrs[g]])[0])
                labels.append(int(gt_labels[g]))
    if not probs:
        a = len(space)
        return torch.zeros((0, a)), torch.zeros((0, a)), torch.zeros((0,), dtype=torch.int64)
    return torch.stack(probs), torch.stack(truth), torch.tensor(labels)


def space_from_state(state: dict[str, Tensor], names: dict[int, str] | None = None) -> AttributeSpace | None:
    """The :class:`AttributeSpace` a model's ``state_dict`` was trained with (its ``attribute_ids``
    and ``attribute_labels`` buffers), named from ``names`` (id -> name); None for a model
    without attribute head."""
    if "attribute_ids" not in state or "attribute_labels" not in state:
        return None
    ids = tuple(int(i) for i in state["attribute_ids"].tolist())
    labels = tuple(int(k) for k in state["attribute_labels"].nonzero().flatten().tolist())
    names = names or {}
    return AttributeSpace(ids, tuple(str(names.get(i, f"attribute {i}")) for i in ids), labels)
