"""AP under a mask IoU and an attribute F1 threshold, matched, accumulated and summarised as the
Fashionpedia API's ``FPEval`` does it, on arrays: every IoU x F1 threshold pair and every area
range of a cell in one pass.

Shapes used throughout: ``T`` = 11 IoU thresholds (.50:.05:.95, then -1: "IoU ignored"), ``F`` = 11
F1 thresholds (the same grid, then -1: "F1 ignored"), ``R`` = 101 recall points, ``K`` categories,
``A`` = 4 area ranges (all, small, medium, large), ``M`` = 3 detection limits (1, 10, 100). A
*cell* is one (image, category) pair: its detections in score order and its ground truths.

What FPEval does that plain COCOeval does not, kept here on purpose:

* in a category with attributes a detection takes a ground truth only when both its IoU and its
  F1 reach the running best (both are raised by each accepted ground truth), and a crowd region,
  once taken, is not taken again;
* a category without attributes is matched as COCOeval matches it, on IoU alone, and fills only
  the "F1 ignored" slice of the precision array;
* the summary means weight a category with attributes once per F1 threshold.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from pycocotools.cocoeval import Params

_PARAMS = Params(iouType="segm")
IOU_THRS: np.ndarray = np.append(_PARAMS.iouThrs, -1.0)  # [T]
F1_THRS: np.ndarray = np.append(np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True),
                                -1.0)  # [F]
REC_THRS: np.ndarray = _PARAMS.recThrs  # [R]
MAX_DETS: tuple[int, ...] = tuple(_PARAMS.maxDets)
AREA_RANGES: tuple[tuple[float, float], ...] = tuple((float(lo), float(hi)) for lo, hi in _PARAMS.areaRng)
AREA_LABELS: tuple[str, ...] = tuple(_PARAMS.areaRngLbl)
NO_F1: np.ndarray = np.array([-1.0])  # the F axis of a category without attributes
CHUNK_ELEMENTS = 4_000_000  # cells are matched in chunks of about this many (cell, A, T, F, D) entries


def out_of_range(areas: np.ndarray) -> np.ndarray:
    """Bool ``[..., A]``: whether each area lies outside each COCO area range."""
    lo = np.array([r[0] for r in AREA_RANGES])
    hi = np.array([r[1] for r in AREA_RANGES])
    a = np.asarray(areas, dtype=np.float64)[..., None]
    return (a < lo) | (a > hi)


def match_cells(iou: np.ndarray, f1: np.ndarray | None, gt_area: np.ndarray, gt_crowd: np.ndarray,
                gt_ids: np.ndarray, det_area: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching of P cells with the same number G of ground truths, for every area range and
    threshold pair at once.

    Args:
        iou: float ``[P, D, G]`` mask IoU, detections in score order; a padding detection is -inf.
        f1: float ``[P, D, G]`` attribute F1, or ``None`` for categories matched on IoU alone
            (COCOeval's rule; then ``F`` = 1, the "F1 ignored" slice).
        gt_area, gt_crowd, gt_ids: ``[P, G]`` ground-truth areas, crowd flags and annotation ids.
        det_area: ``[P, D]`` detection mask areas.
    Returns:
        ``matched`` bool ``[P, A, T, F, D]`` (a true or ignored match, as COCO's nonzero
        ``dtMatches``), ``ignored`` bool ``[P, A, T, F, D]`` (``dtIgnore``), and ``gt_at_50`` int
        ``[P, D]``: the position in the cell of the ground truth matched at area "all", IoU .50,
        F1 ignored (-1: none).
    """
    n_cells, n_det, n_gt = iou.shape
    f1_thrs = NO_F1 if f1 is None else F1_THRS
    ignore = gt_crowd[:, None, :] | np.moveaxis(out_of_range(gt_area), -1, 1)  # [P, A, G]
    order = np.argsort(ignore, axis=-1, kind="stable")  # regular ground truths first, as COCOeval sorts
    ign = np.take_along_axis(ignore, order, -1)[:, :, None, None, :]  # [P, A, 1, 1, G]
    nonzero = np.take_along_axis(np.broadcast_to(gt_ids[:, None, :] != 0, ignore.shape), order, -1)[:, :, None, None]
    iou_s = np.take_along_axis(iou[:, None], order[:, :, None, :], -1)  # [P, A, D, G]
    f1_s = None if f1 is None else np.take_along_axis(f1[:, None], order[:, :, None, :], -1)
    # COCOeval lets a crowd region be matched again; FPEval's own loop (categories with F1) does not.
    rematch = (np.take_along_axis(np.broadcast_to(gt_crowd[:, None, :], ignore.shape), order, -1)[:, :, None, None]
               if f1 is None else np.zeros_like(ign))
    shape = (n_cells, len(AREA_RANGES), len(IOU_THRS), len(f1_thrs))
    start_iou = np.broadcast_to(np.minimum(IOU_THRS, 1 - 1e-10)[:, None], shape)
    start_f1 = np.broadcast_to(np.minimum(f1_thrs, 1 - 1e-10)[None, :], shape)
    taken = np.zeros(shape + (n_gt,), dtype=bool)
    matched = np.zeros(shape + (n_det,), dtype=bool)
    ignored = np.zeros(shape + (n_det,), dtype=bool)
    at_50 = np.full((n_cells, n_det), -1, dtype=np.int64)
    t50 = int(np.flatnonzero(IOU_THRS == 0.5)[0])
    positions = np.arange(n_gt)
    for d in range(n_det):
        best_iou, best_f1 = start_iou.copy(), start_f1.copy()
        m = np.full(shape, -1, dtype=np.int32)
        on_regular = np.zeros(shape, dtype=bool)  # m is a regular ground truth: ignored ones are skipped
        m_nonzero = np.zeros(shape, dtype=bool)
        for g in range(n_gt):
            ign_g = ign[..., g]
            iou_g = iou_s[:, :, d, g, None, None]
            ok = (iou_g >= best_iou) & ~(taken[..., g] & ~rematch[..., g]) & ~(on_regular & ign_g)
            if f1_s is not None:
                f1_g = f1_s[:, :, d, g, None, None]
                ok &= f1_g >= best_f1
                best_f1 = np.where(ok, f1_g, best_f1)
            best_iou = np.where(ok, iou_g, best_iou)
            m = np.where(ok, g, m)
            on_regular = np.where(ok, ~ign_g, on_regular)
            m_nonzero = np.where(ok, nonzero[..., g], m_nonzero)
        found = m >= 0
        taken |= m[..., None] == positions
        matched[..., d] = found & m_nonzero  # COCO stores the ground truth's id: id 0 reads as "unmatched"
        ignored[..., d] = found & ~on_regular
        if n_gt:
            first = order[np.arange(n_cells), 0, np.maximum(m[:, 0, t50, -1], 0)]
            at_50[:, d] = np.where(found[:, 0, t50, -1], first, -1)
    det_out = np.moveaxis(out_of_range(det_area), -1, 1)[:, :, None, None, :]  # [P, A, 1, 1, D]
    ignored |= ~matched & det_out
    return matched, ignored, at_50


def match_in_chunks(iou: np.ndarray, f1: np.ndarray | None, gt_area: np.ndarray, gt_crowd: np.ndarray,
                    gt_ids: np.ndarray, det_area: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`match_cells` over slices of the cells, so memory stays bounded for many cells."""
    n_cells, n_det, _ = iou.shape
    per_cell = len(AREA_RANGES) * len(IOU_THRS) * (1 if f1 is None else len(F1_THRS)) * max(n_det, 1)
    step = max(1, CHUNK_ELEMENTS // per_cell)
    parts = [match_cells(iou[i:i + step], None if f1 is None else f1[i:i + step], gt_area[i:i + step],
                         gt_crowd[i:i + step], gt_ids[i:i + step], det_area[i:i + step])
             for i in range(0, n_cells, step)]
    return tuple(np.concatenate(p, axis=0) for p in zip(*parts))  # type: ignore[return-value]


def precision_at_recalls(tps: np.ndarray, fps: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """COCO's interpolated precision ``[L, R]`` and final recall ``[L]`` of L rows of bool
    ``[L, N]`` true/false positives (detections in score order), as COCOeval.accumulate computes them."""
    n_rows, n = tps.shape
    if n == 0:
        return np.zeros((n_rows, len(REC_THRS))), np.zeros(n_rows)
    tp_count = np.cumsum(tps, axis=1)
    tp = tp_count.astype(np.float64)
    fp = np.cumsum(fps, axis=1).astype(np.float64)
    recall = tp[:, -1] / n_gt
    precision = tp / (fp + tp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]  # the envelope from the right
    # searchsorted(tp / n_gt, recThrs) per row, done on the integer counts: tp / n_gt < r exactly
    # when tp is below the count needed for r, so all rows go through one searchsorted call.
    need = np.searchsorted(np.arange(n_gt + 1) / n_gt, REC_THRS, side="left")
    big = max(n, n_gt + 1) + 1
    rows = np.arange(n_rows)[:, None]
    flat = (tp_count + rows * big).ravel()
    idx = np.searchsorted(flat, (need[None, :] + rows * big).ravel(), side="left").reshape(n_rows, -1) - rows * n
    q = np.where(idx < n, np.take_along_axis(precision, np.minimum(idx, n - 1), 1), 0.0)
    return q, recall


def accumulate_category(matched: np.ndarray, ignored: np.ndarray, scores: np.ndarray, ranks: np.ndarray,
                        n_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision ``[T, F, R, A, M]`` and recall ``[T, F, A, M]`` of one category (-1 where it has no
    ground truth in an area range).

    Args:
        matched, ignored: bool ``[A, T, F, N]`` of the category's detections, cells in image order,
            each cell's detections in score order.
        scores, ranks: ``[N]`` detection scores and their rank within their cell.
        n_gt: ``[A]`` regular ground truths per area range.
    """
    n_area, n_t, n_f, _ = matched.shape
    precision = -np.ones((n_t, n_f, len(REC_THRS), n_area, len(MAX_DETS)))
    recall = -np.ones((n_t, n_f, n_area, len(MAX_DETS)))
    for a in range(n_area):
        if n_gt[a] == 0:
            continue
        for mi, max_det in enumerate(MAX_DETS):
            keep = np.flatnonzero(ranks < max_det)
            keep = keep[np.argsort(-scores[keep], kind="mergesort")]
            hit, skip = matched[a][..., keep], ignored[a][..., keep]
            q, r = precision_at_recalls((hit & ~skip).reshape(n_t * n_f, -1),
                                        (~hit & ~skip).reshape(n_t * n_f, -1), int(n_gt[a]))
            precision[:, :, :, a, mi] = q.reshape(n_t, n_f, -1)
            recall[:, :, a, mi] = r.reshape(n_t, n_f)
    return precision, recall


def summary_value(values: np.ndarray, with_attributes: Sequence[bool], cats: Sequence[int], *, recall: bool,
                  iou_thr: float | None = None, f1_thr: float | None = None, use_f1: bool = True,
                  use_iou: bool = True, area: str = "all", max_dets: int = 100) -> float:
    """One summary number, as FPEval._summarize selects and averages it (-1: nothing defined).

    Args:
        values: precision ``[T, F, R, K, A, M]`` or, with ``recall``, recall ``[T, F, K, A, M]``.
        with_attributes: per category index, whether it is scored with F1.
        cats: the category indices averaged over.
    """
    s = values[..., AREA_LABELS.index(area), MAX_DETS.index(max_dets)]  # [T, F, (R,) K]
    if use_iou:
        s = s[np.flatnonzero(IOU_THRS == iou_thr)] if iou_thr is not None else s[:-1]
    else:
        s = s[-1:]
    parts = []
    for c in cats:
        sc = s[..., c]
        if not use_f1 or not with_attributes[c]:
            parts.append(sc[:, -1:])
        elif f1_thr is not None:
            parts.append(sc[:, np.flatnonzero(F1_THRS == f1_thr)])
        else:
            parts.append(sc[:, :-1])
    flat = np.concatenate([p.ravel() for p in parts]) if parts else np.zeros(0)
    flat = flat[flat > -1]
    return float(flat.mean()) if flat.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray, with_attributes: Sequence[bool],
              groups: Sequence[tuple[str, Sequence[int]]], *, use_f1: bool = True, use_iou: bool = True,
              cat: int | None = None) -> dict[str, float]:
    """FPEval's summary dict (its key names and order): ``AP<group>`` per category group (the
    accessory group, whose categories have no attributes, only without F1), ``AP``, ``AP_IOU50``,
    ``AP_IOU75``, ``AP_F150``, ``AP_F175``, ``AP_IOU50_F150``..., ``APs/m/l``, ``AR@1/10/100``,
    ``ARs/m/l@100``; with ``cat`` (a category index) for that category alone."""
    k_all = range(precision.shape[3])
    out: dict[str, float] = {}

    def ap(cats: Sequence[int], **kw: Any) -> float:
        return summary_value(precision, with_attributes, cats, recall=False, use_f1=use_f1, use_iou=use_iou, **kw)

    def ar(cats: Sequence[int], **kw: Any) -> float:
        return summary_value(recall, with_attributes, cats, recall=True, use_f1=use_f1, use_iou=use_iou, **kw)

    cats = list(k_all) if cat is None else [cat]
    if cat is None:
        for letter, members in groups:
            if use_f1 and letter == "a":
                continue
            out["AP" + letter] = ap([c for c in k_all if c in set(members)])
    out["AP"] = ap(cats)
    if use_iou:
        out["AP_IOU50"], out["AP_IOU75"] = ap(cats, iou_thr=0.5), ap(cats, iou_thr=0.75)
    if use_f1:
        out["AP_F150"], out["AP_F175"] = ap(cats, f1_thr=0.5), ap(cats, f1_thr=0.75)
    if use_f1 and use_iou:
        for t in (0.5, 0.75):
            for f in (0.5, 0.75):
                out[f"AP_IOU{int(t * 100)}_F1{int(f * 100)}"] = ap(cats, iou_thr=t, f1_thr=f)
    for label in ("small", "medium", "large"):
        out[f"AP{label[0]}"] = ap(cats, area=label)
    for max_det in MAX_DETS:
        out[f"AR@{max_det}"] = ar(cats, max_dets=max_det)
    for label in ("small", "medium", "large"):
        out[f"AR{label[0]}@100"] = ar(cats, area=label)
    return out
