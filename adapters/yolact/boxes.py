"""Anchors, box coding, matching, cropping and Fast NMS of YOLACT (Bolya et al., ICCV 2019).

Every box here is *relative*: coordinates divided by the network input's width and height, so
the same numbers hold for any input size. Point form is ``(x1, y1, x2, y2)``; centre form is
``(cx, cy, w, h)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

# SSD box-coding variances (centre, size), as in the YOLACT reference code.
VARIANCES: tuple[float, float] = (0.1, 0.2)


def make_anchors(feature_sizes: Sequence[tuple[int, int]], scales: Sequence[float],
                 aspect_ratios: Sequence[float], reference_size: float = 550.0,
                 device: torch.device | str = "cpu", octaves: Sequence[float] = (1.0,)) -> Tensor:
    """Anchors of every pyramid level, in the order the prediction head emits them.

    Level ``l`` of size ``(h, w)`` gets ``h * w * len(octaves) * len(aspect_ratios)`` anchors,
    row-major over the cells, then over the octaves, then over the ratios. An anchor of pixel
    scale ``s``, octave ``o`` and ratio ``r`` (width over height) is ``s * o * sqrt(r)`` wide and
    ``s * o / sqrt(r)`` high at a ``reference_size`` input; the relative size
    ``s / reference_size`` makes that "scaled by input / 550" for other inputs.

    Args:
        feature_sizes: ``(h, w)`` of each level (P3..P7), as many as ``scales``.
        scales: anchor side in pixels at ``reference_size`` per level (24, 48, 96, 192, 384).
        aspect_ratios: width / height ratios (1, 1/2, 2).
        octaves: scale multipliers within a level: YOLACT ``(1,)``, YOLACT++ ``(1, 2**(1/3), 2**(2/3))``.
    Returns:
        float32 ``[A, 4]`` centre form ``(cx, cy, w, h)``, relative.
    """
    if len(feature_sizes) != len(scales):
        raise ValueError(f"{len(feature_sizes)} pyramid levels but {len(scales)} anchor scales")
    levels = []
    for (h, w), scale in zip(feature_sizes, scales):
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")  # [h, w]
        sizes = torch.tensor([[scale * o * math.sqrt(r) / reference_size, scale * o / math.sqrt(r) / reference_size]
                              for o in octaves for r in aspect_ratios], dtype=torch.float32, device=device)  # [a, 2]
        centres = torch.stack([cx, cy], dim=-1)[:, :, None, :].expand(h, w, len(sizes), 2)
        wh = sizes[None, None].expand(h, w, -1, -1)
        levels.append(torch.cat([centres, wh], dim=-1).reshape(-1, 4))
    return torch.cat(levels, dim=0)


def point_form(boxes: Tensor) -> Tensor:
    """``[N, 4]`` centre form -> point form."""
    return torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], dim=1)


def center_size(boxes: Tensor) -> Tensor:
    """``[N, 4]`` point form -> centre form."""
    return torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], dim=1)


def encode(matched: Tensor, anchors: Tensor) -> Tensor:
    """SSD regression targets of point-form boxes ``[N, 4]`` against centre-form anchors ``[N, 4]``.

    ``((cx - acx) / (0.1 aw), (cy - acy) / (0.1 ah), log(w / aw) / 0.2, log(h / ah) / 0.2)``.
    """
    g = center_size(matched)
    centre = (g[:, :2] - anchors[:, :2]) / (VARIANCES[0] * anchors[:, 2:])
    size = torch.log(g[:, 2:] / anchors[:, 2:]) / VARIANCES[1]
    return torch.cat([centre, size], dim=1)


def decode(deltas: Tensor, anchors: Tensor) -> Tensor:
    """Inverse of :func:`encode`: deltas ``[..., N, 4]`` and anchors ``[N, 4]`` -> point form boxes."""
    centre = anchors[:, :2] + deltas[..., :2] * VARIANCES[0] * anchors[:, 2:]
    size = anchors[:, 2:] * torch.exp(deltas[..., 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def match(truths: Tensor, labels: Tensor, anchors: Tensor, pos_iou: float = 0.5,
          neg_iou: float = 0.4) -> tuple[Tensor, Tensor, Tensor]:
    """Assign every anchor a ground truth, as the reference ``match``.

    An anchor whose best IoU is ``>= pos_iou`` is positive, ``< neg_iou`` background, neutral in
    between. Each ground truth is then forced onto its best anchor (greedily, highest overlap
    first, one anchor per ground truth) so that no object goes untrained.

    Args:
        truths: float ``[N, 4]`` point form, relative.
        labels: int64 ``[N]`` in ``1..C``.
        anchors: float ``[A, 4]`` centre form.
    Returns:
        ``conf_t`` int64 ``[A]`` (label, 0 background, -1 neutral), ``idx_t`` int64 ``[A]``
        (index of the matched ground truth; 0 where there is none), ``loc_t`` float ``[A, 4]``
        (encoded targets; zeros where there is no ground truth).
    """
    num_anchors = anchors.shape[0]
    if truths.shape[0] == 0:
        zeros = torch.zeros(num_anchors, dtype=torch.int64, device=anchors.device)
        return zeros, zeros.clone(), anchors.new_zeros((num_anchors, 4))
    overlaps = box_iou(truths, point_form(anchors))  # [N, A]
    best_truth_overlap, best_truth_idx = overlaps.max(dim=0)
    # A loop over the N ground truths (not the anchors): the reference's greedy forced match.
    for _ in range(truths.shape[0]):
        best_prior_overlap, best_prior_idx = overlaps.max(dim=1)
        j = best_prior_overlap.argmax()
        i = best_prior_idx[j]
        overlaps[:, i] = -1
        overlaps[j, :] = -1
        best_truth_overlap[i] = 2.0
        best_truth_idx[i] = j
    conf_t = labels[best_truth_idx]
    conf_t[best_truth_overlap < pos_iou] = -1
    conf_t[best_truth_overlap < neg_iou] = 0
    loc_t = encode(truths[best_truth_idx], anchors)
    return conf_t, best_truth_idx, loc_t


def crop(masks: Tensor, boxes: Tensor, padding: int = 1) -> Tensor:
    """Zero every mask outside its box (the reference ``crop``), vectorised over masks.

    Args:
        masks: ``[H, W, N]`` (any float values).
        boxes: ``[N, 4]`` point form, relative; the crop is widened by ``padding`` pixels.
    Returns:
        ``[H, W, N]``, ``masks`` times the box indicator.
    """
    h, w, _ = masks.shape
    x1, x2 = _sanitize(boxes[:, 0], boxes[:, 2], w, padding)
    y1, y2 = _sanitize(boxes[:, 1], boxes[:, 3], h, padding)
    cols = torch.arange(w, device=masks.device, dtype=x1.dtype).view(1, -1, 1)
    rows = torch.arange(h, device=masks.device, dtype=y1.dtype).view(-1, 1, 1)
    inside = (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)  # [H, W, N]
    return masks * inside.to(masks.dtype)


def _sanitize(a: Tensor, b: Tensor, size: int, padding: int) -> tuple[Tensor, Tensor]:
    """Relative ``a, b`` -> ordered pixel bounds ``lo, hi`` widened by ``padding``, inside ``[0, size]``."""
    a, b = a * size, b * size
    lo = torch.clamp(torch.minimum(a, b) - padding, min=0)
    hi = torch.clamp(torch.maximum(a, b) + padding, max=size)
    return lo, hi


def fast_nms(boxes: Tensor, scores: Tensor, iou_threshold: float = 0.5, top_k: int = 200,
             score_threshold: float = 0.05, max_detections: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """Fast NMS (YOLACT section 3.4): all classes at once, one matrix product per class, no loop.

    For each class, the ``top_k`` candidates by score are sorted, their pairwise IoU matrix is
    kept above the diagonal, and a candidate survives when no higher-scored candidate of its class
    overlaps it by more than ``iou_threshold`` (the column max). Unlike greedy NMS, a box already
    suppressed may still suppress others, which is what makes it a single matrix operation.

    Args:
        boxes: ``[N, 4]`` point form, shared by all classes (one box per anchor).
        scores: ``[C, N]`` class scores (background excluded).
    Returns:
        ``keep`` int64 ``[D]`` indices into the N boxes, ``classes`` int64 ``[D]`` in ``0..C-1``
        and ``kept_scores`` ``[D]``, sorted by score, ``D <= max_detections``.
    """
    num_classes = scores.shape[0]
    top_k = min(top_k, scores.shape[1])
    top_scores, idx = scores.topk(top_k, dim=1)  # [C, K], descending
    cand = boxes[idx.reshape(-1)].reshape(num_classes, top_k, 4)
    iou = _batched_iou(cand).triu_(diagonal=1)  # [C, K, K]; row i suppresses column j > i
    keep = (iou.max(dim=1).values <= iou_threshold) & (top_scores > score_threshold)
    classes = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)[keep]
    kept_scores, order = top_scores[keep].sort(descending=True)
    order = order[:max_detections]
    return idx[keep][order], classes[order], kept_scores[:max_detections]


def _batched_iou(boxes: Tensor) -> Tensor:
    """Pairwise IoU within each set: ``[C, K, 4]`` -> ``[C, K, K]``."""
    # One coordinate at a time on [C, K, K]: no [C, K, K, 2] temporaries, which dominate on CPU.
    x1, y1, x2, y2 = boxes.unbind(dim=-1)  # each [C, K]
    area = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    inter_w = torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :])
    inter_h = torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :])
    inter_w.clamp_(min=0)
    inter_h.clamp_(min=0)
    inter = inter_w.mul_(inter_h)
    union = (area[:, :, None] + area[:, None, :]).sub_(inter).clamp_(min=1e-12)
    return inter.div_(union)
