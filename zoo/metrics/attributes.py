"""Attribute-aware scoring: the Fashionpedia AP with IoU and F1, and per-attribute precision/recall/F1.

A detection counts as a true positive only when its mask IoU with a ground truth reaches the IoU
threshold *and* the F1 of its attribute set against that ground truth's reaches the F1 threshold,
exactly as the official Fashionpedia API (``fashionpedia.fp_eval.FPEval``) scores it: IoU
thresholds .50:.95 and F1 thresholds .50:.95, each extended by -1 ("ignore"), so AP(IoU+F1),
AP(IoU) and AP(F1) come from one run. The F1 of a pair is sklearn's ``binary_macro`` F1 of the
two multi-hot vectors over the whole attribute list (the mean of the F1 of "has it" and of "lacks
it"), here computed for all pairs of a cell at once from set counts.

F1 applies to the categories with attributes: for the Fashionpedia taxonomy (the 13 garments at
ids 0-12) FPEval's own list, for any other source the categories whose ground truth carries
attributes. Other categories are scored on IoU alone. IoUs are pycocotools' (``maskUtils.iou``),
areas the mask areas (as zoo's mask AP).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from zoo.errors import DataError
from zoo.metrics.attribute_ap import (AREA_RANGES, F1_THRS, IOU_THRS, MAX_DETS, REC_THRS, accumulate_category,
                                      match_in_chunks, out_of_range, summarize, summary_value)
from zoo.metrics.coco import prepare_gt
from zoo.metrics.original import rle_of

# FPEval's FPParams: the Fashionpedia categories scored with F1, and its category groups (indices).
FASHIONPEDIA_CATS_WITH_ATTRIBUTES: tuple[int, ...] = (10, 7, 0, 6, 5, 4, 9, 31, 33, 3, 12, 11, 1, 2, 8, 32, 29, 28)
FASHIONPEDIA_GROUPS: tuple[tuple[str, str, range], ...] = (("o", "outerwear", range(0, 13)),
                                                            ("a", "accessory", range(13, 27)),
                                                            ("p", "part", range(27, 46)))
FASHIONPEDIA_GARMENTS: tuple[str, ...] = ("shirt, blouse", "top, t-shirt, sweatshirt", "sweater", "cardigan", "jacket",
                                          "vest", "pants", "shorts", "skirt", "coat", "dress", "jumpsuit", "cape")
VARIANTS: tuple[str, ...] = ("iou_f1", "iou", "f1")  # IoU and F1, IoU alone (F1 ignored), F1 alone (IoU ignored)


def has_attributes(gt: dict[str, Any]) -> bool:
    """Whether any ground-truth annotation carries attribute ids."""
    return any(a.get("attribute_ids") for a in gt.get("annotations", []))


def predicts_attributes(results: Sequence[dict[str, Any]]) -> bool:
    """Whether the results rows carry ``attribute_ids`` (a model with an attribute head)."""
    return any("attribute_ids" in r for r in results)


def is_fashionpedia_taxonomy(categories: Sequence[dict[str, Any]]) -> bool:
    """Categories numbered 0..K-1 (K >= 46) whose first 13 are Fashionpedia's garments (Fashionpedia
    itself, its preliminary 48-category list, iMaterialist 2019)."""
    by_id = {int(c["id"]): str(c.get("name", "")) for c in categories}
    return (sorted(by_id) == list(range(len(by_id))) and len(by_id) >= 46
            and tuple(by_id[i] for i in range(13)) == FASHIONPEDIA_GARMENTS)


def categories_with_attributes(gt: dict[str, Any]) -> set[int]:
    """Category ids scored with F1 (see the module docstring)."""
    if is_fashionpedia_taxonomy(gt["categories"]):
        return set(FASHIONPEDIA_CATS_WITH_ATTRIBUTES)
    return {int(a["category_id"]) for a in gt["annotations"] if a.get("attribute_ids")}


def attribute_list(gt: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Attribute id -> name: the ground truth's ``attributes`` list (the F1 vector's length), or,
    without one, every id the ground truth or the results use. An unknown id is a DataError."""
    if gt.get("attributes"):
        names = {int(a["id"]): str(a.get("name", a["id"])) for a in gt["attributes"]}
    else:
        ids = {int(i) for rows in (gt["annotations"], results) for r in rows for i in r.get("attribute_ids") or []}
        names = {i: str(i) for i in sorted(ids)}
    for what, rows in (("annotations", gt["annotations"]), ("results row", results)):
        for i, r in enumerate(rows):
            unknown = [a for a in r.get("attribute_ids") or [] if int(a) not in names]
            if unknown:
                raise DataError(f"{what} {i}: attribute id {unknown[0]} is not in the ground truth's attributes")
    return names


def multi_hot(rows: Sequence[dict[str, Any]], column: dict[int, int]) -> np.ndarray:
    """Float32 ``[len(rows) + 1, N]`` multi-hot attribute vectors; the last row is all zeros (padding)."""
    out = np.zeros((len(rows) + 1, len(column)), dtype=np.float32)
    pairs = [(i, column[int(a)]) for i, r in enumerate(rows) for a in r.get("attribute_ids") or []]
    if pairs:
        out[tuple(np.array(pairs).T)] = 1.0
    return out


def binary_macro_f1(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``[..., D, G]`` sklearn ``f1_score(gt, det, average="macro")`` of every detection/ground-truth
    pair of multi-hot vectors ``det [..., D, N]`` and ``gt [..., G, N]``.

    Macro F1 over the labels present in either vector: F1(1) = 2 tp / (|gt| + |det|) and F1(0) the
    same for the zeros; a label absent from both vectors is left out of the mean (two empty sets
    score 1).
    """
    n = det.shape[-1]
    tp = np.matmul(det, np.swapaxes(gt, -1, -2)).astype(np.float64)  # [..., D, G], exact small integers
    n_det = det.sum(-1, dtype=np.float64)[..., :, None]
    n_gt = gt.sum(-1, dtype=np.float64)[..., None, :]
    tn = n - n_det - n_gt + tp
    pos_sum, neg_sum = n_gt + n_det, (n - n_gt) + (n - n_det)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_pos = np.where(pos_sum > 0, 2.0 * tp / pos_sum, 0.0)
        f_neg = np.where(neg_sum > 0, 2.0 * tn / neg_sum, 0.0)
    has_pos, has_neg = pos_sum > 0, neg_sum > 0
    return np.where(has_pos & has_neg, (f_neg + f_pos) / 2, np.where(has_pos, f_pos, f_neg))


@dataclass
class Cell:
    """One (image, category) pair: ground-truth rows and detection rows (score order, at most 100)."""

    k: int  # category index
    position: int  # image index in sorted image-id order
    gts: list[int]
    dets: list[int]
    iou: np.ndarray  # [D, G]


def build_cells(gt: dict[str, Any], results: Sequence[dict[str, Any]]) -> list[Cell]:
    """Every (image, category) pair with a ground truth or a detection, in category then image order."""
    positions = {img["id"]: i for i, img in enumerate(sorted(gt["images"], key=lambda im: im["id"]))}
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in gt["images"]}
    cat_index = {cid: k for k, cid in enumerate(sorted(c["id"] for c in gt["categories"]))}
    gts: dict[tuple[int, int], list[int]] = defaultdict(list)
    dets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, a in enumerate(gt["annotations"]):
        gts[(a["image_id"], a["category_id"])].append(i)
    for j, r in enumerate(results):
        dets[(r["image_id"], r["category_id"])].append(j)
    cells = []
    for key in sorted(set(gts) | set(dets), key=lambda kc: (cat_index[kc[1]], positions[kc[0]])):
        g, d = gts.get(key, []), dets.get(key, [])
        d = [d[i] for i in np.argsort([-results[j]["score"] for j in d], kind="mergesort")][: MAX_DETS[-1]]
        iou = np.zeros((len(d), len(g)))
        if g and d:
            h, w = sizes[key[0]]
            g_rles = [rle_of(gt["annotations"][i]["segmentation"], h, w) for i in g]
            d_rles = [rle_of(results[j]["segmentation"], h, w) for j in d]
            crowd = [int(gt["annotations"][i].get("iscrowd", 0)) for i in g]
            iou = np.asarray(mask_utils.iou(d_rles, g_rles, crowd), dtype=np.float64).reshape(len(d), len(g))
        cells.append(Cell(cat_index[key[1]], positions[key[0]], g, d, iou))
    return cells


@dataclass
class Matches:
    """Matching of every cell with detections: per cell ``matched``/``ignored`` bool ``[A, T, F, D]``
    (``F`` = 1 for a category scored on IoU alone) and ``gt_at_50`` int ``[D]``, the position in the
    cell of the ground truth each detection took at area "all", IoU .50, F1 ignored (-1: none)."""

    matched: dict[int, np.ndarray]
    ignored: dict[int, np.ndarray]
    gt_at_50: dict[int, np.ndarray]


def match_all(cells: list[Cell], with_f1: np.ndarray, gt_rows: Sequence[dict[str, Any]], det_area: np.ndarray,
              det_hot: np.ndarray, gt_hot: np.ndarray) -> Matches:
    """Match the cells that have detections, batched by (F1 or not, number of ground truths)."""
    groups: dict[tuple[bool, int], list[int]] = defaultdict(list)
    for c, cell in enumerate(cells):
        if cell.dets:
            groups[(bool(with_f1[cell.k]), len(cell.gts))].append(c)
    out = Matches({}, {}, {})
    for (f1_on, n_gt), members in groups.items():
        n_det = max(len(cells[c].dets) for c in members)
        iou = np.full((len(members), n_det, n_gt), -np.inf)
        det_idx = np.full((len(members), n_det), len(det_hot) - 1)
        gt_idx = np.array([cells[c].gts for c in members], dtype=np.int64).reshape(len(members), n_gt)
        for p, c in enumerate(members):
            iou[p, : len(cells[c].dets)] = cells[c].iou
            det_idx[p, : len(cells[c].dets)] = cells[c].dets
        gt_area = np.array([[float(gt_rows[i]["area"]) for i in row] for row in gt_idx]).reshape(len(members), n_gt)
        gt_crowd = np.array([[bool(gt_rows[i].get("iscrowd", 0)) for i in row] for row in gt_idx],
                            dtype=bool).reshape(len(members), n_gt)
        gt_ids = np.array([[int(gt_rows[i]["id"]) for i in row] for row in gt_idx],
                          dtype=np.int64).reshape(len(members), n_gt)
        f1 = binary_macro_f1(det_hot[det_idx], gt_hot[gt_idx]) if f1_on else None
        matched, ignored, at_50 = match_in_chunks(iou, f1, gt_area, gt_crowd, gt_ids, det_area[det_idx])
        for p, c in enumerate(members):
            d = len(cells[c].dets)
            out.matched[c], out.ignored[c] = matched[p, ..., :d], ignored[p, ..., :d]
            out.gt_at_50[c] = at_50[p, :d]
    return out


def accumulate_all(cells: list[Cell], matches: Matches, with_f1: np.ndarray, gt_rows: Sequence[dict[str, Any]],
                   scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision ``[T, F, R, K, A, M]`` and recall ``[T, F, K, A, M]`` (FPEval's ``eval`` arrays)."""
    n_k = len(with_f1)
    shape_t, shape_f, n_a = len(IOU_THRS), len(F1_THRS), len(AREA_RANGES)
    precision = -np.ones((shape_t, shape_f, len(REC_THRS), n_k, n_a, len(MAX_DETS)))
    recall = -np.ones((shape_t, shape_f, n_k, n_a, len(MAX_DETS)))
    by_cat: dict[int, list[int]] = defaultdict(list)
    for c, cell in enumerate(cells):
        by_cat[cell.k].append(c)
    for k, members in by_cat.items():
        n_f = shape_f if with_f1[k] else 1
        regular = [i for c in members for i in cells[c].gts if not gt_rows[i].get("iscrowd", 0)]
        areas = np.array([float(gt_rows[i]["area"]) for i in regular]).reshape(-1)
        n_gt = (~out_of_range(areas)).sum(0) if len(regular) else np.zeros(n_a, dtype=int)
        with_dets = [c for c in members if cells[c].dets]
        dets = np.array([j for c in with_dets for j in cells[c].dets], dtype=np.int64)
        ranks = np.array([r for c in with_dets for r in range(len(cells[c].dets))], dtype=np.int64)
        empty = np.zeros((n_a, shape_t, n_f, 0), dtype=bool)
        matched = np.concatenate([matches.matched[c] for c in with_dets], -1) if with_dets else empty
        ignored = np.concatenate([matches.ignored[c] for c in with_dets], -1) if with_dets else empty
        p, r = accumulate_category(matched, ignored, scores[dets] if len(dets) else np.zeros(0), ranks, n_gt)
        f_slice = slice(None) if with_f1[k] else slice(-1, None)
        precision[:, f_slice, :, k] = p
        recall[:, f_slice, k] = r
    return precision, recall


def per_attribute(cells: list[Cell], matches: Matches, with_f1: np.ndarray, gt_rows: Sequence[dict[str, Any]],
                  names: dict[int, str], det_hot: np.ndarray, gt_hot: np.ndarray) -> dict[str, dict[str, Any]]:
    """Attribute name -> ``id``, ``n_gt`` (ground truths carrying it in categories scored with F1),
    ``n_matched``/``n_pred`` (on ground truths matched at mask IoU >= 0.5, F1 ignored: how many of
    them carry it and how many of their detections predict it), ``precision``, ``recall``, ``f1``
    over those pairs (-1: undefined)."""
    det_rows, gt_idx = [], []
    t50 = int(np.flatnonzero(IOU_THRS == 0.5)[0])
    for c, cell in enumerate(cells):
        if not with_f1[cell.k] or c not in matches.matched:
            continue
        hit = matches.matched[c][0, t50, -1] & ~matches.ignored[c][0, t50, -1]  # area all, F1 ignored
        for d in np.flatnonzero(hit):
            det_rows.append(cell.dets[d])
            gt_idx.append(cell.gts[int(matches.gt_at_50[c][d])])
    pred, true = det_hot[det_rows].astype(np.int64), gt_hot[gt_idx].astype(np.int64)
    scored = [i for cell in cells if with_f1[cell.k] for i in cell.gts if not gt_rows[i].get("iscrowd", 0)]
    support = gt_hot[scored].astype(np.int64).sum(0)
    tp, n_pred, n_true = (pred * true).sum(0), pred.sum(0), true.sum(0)
    table = {}
    for col, (aid, name) in enumerate(names.items()):
        t, p, g = int(tp[col]), int(n_pred[col]), int(n_true[col])
        table[name] = {"id": aid, "n_gt": int(support[col]), "n_matched": g, "n_pred": p,
                       "precision": t / p if p else -1.0, "recall": t / g if g else -1.0,
                       "f1": 2 * t / (p + g) if p + g else -1.0}
    return table


def evaluate_attributes(gt: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Fashionpedia scoring of ``results`` (COCO rows with ``attribute_ids``) against ``gt``.

    Returns:
        ``{"iou_f1", "iou", "f1"}``: FPEval's summary dicts (``results``, ``resultDet``,
        ``resultF1``; keys ``AP``, ``AP_IOU50``, ``AP_F150``, ``AP_IOU50_F175``, ``APs``, ``AR@100``,
        ... and, for the Fashionpedia taxonomy, its category groups ``APo``/``APa``/``APp``);
        ``per_category`` (name -> ``id``, ``with_f1`` and AP of each variant, ``None`` where F1
        does not apply); ``per_attribute`` (see :func:`per_attribute`); ``mean_f1`` (mean F1 of
        the attributes matched ground truths carry); ``n_attributes``; ``categories_with_f1``.
        Fractions in ``[0, 1]``; -1 where undefined.
    """
    gt = prepare_gt(gt)
    for i, r in enumerate(results):
        if "segmentation" not in r:
            raise DataError(f"results row {i}: no segmentation (AP with IoU and F1 scores masks)")
    names = attribute_list(gt, results)
    column = {aid: i for i, aid in enumerate(names)}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    attr_ids = categories_with_attributes(gt)
    with_f1 = np.array([cid in attr_ids for cid in cat_ids])
    gt_rows = gt["annotations"]
    cells = build_cells(gt, results)
    det_area = detection_areas(gt, results)
    det_hot, gt_hot = multi_hot(results, column), multi_hot(gt_rows, column)
    matches = match_all(cells, with_f1, gt_rows, det_area, det_hot, gt_hot)
    scores = np.array([float(r["score"]) for r in results])
    precision, recall = accumulate_all(cells, matches, with_f1, gt_rows, scores)
    fashionpedia = is_fashionpedia_taxonomy(gt["categories"])
    groups = [(letter, list(members)) for letter, _, members in FASHIONPEDIA_GROUPS] if fashionpedia else []
    out: dict[str, Any] = {
        variant: summarize(precision, recall, with_f1, groups, use_f1=variant != "iou", use_iou=variant != "f1")
        for variant in VARIANTS}
    cat_names = {c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]}
    out["per_category"] = {}
    for k, cid in enumerate(cat_ids):
        row: dict[str, Any] = {"id": cid, "with_f1": bool(with_f1[k])}
        for variant in VARIANTS:  # FPEval's per-class "AP" of each variant
            row[variant] = (summary_value(precision, with_f1, [k], recall=False, use_f1=variant != "iou",
                                          use_iou=variant != "f1") if with_f1[k] or variant == "iou" else None)
        out["per_category"][cat_names[cid]] = row
    out["per_attribute"] = per_attribute(cells, matches, with_f1, gt_rows, names, det_hot, gt_hot)
    f1s = [r["f1"] for r in out["per_attribute"].values() if r["n_matched"] > 0]
    out.update(mean_f1=float(np.mean(f1s)) if f1s else -1.0, n_attributes=len(names),
               categories_with_f1=[cat_names[cid] for cid in cat_ids if cid in attr_ids],
               taxonomy="fashionpedia" if fashionpedia else "categories whose ground truth has attributes")
    return out


def detection_areas(gt: dict[str, Any], results: Sequence[dict[str, Any]]) -> np.ndarray:
    """``[len(results) + 1]`` mask areas of the detections (pixels), then 0 for the padding row."""
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in gt["images"]}
    areas = [float(mask_utils.area(rle_of(r["segmentation"], *sizes[r["image_id"]]))) for r in results]
    return np.array(areas + [0.0])


def attribute_metrics(gt: dict[str, Any], results: Sequence[dict[str, Any]],
                      predicts: bool | None = None) -> dict[str, Any] | None:
    """What ``metrics.json`` holds under ``"attributes"``: ``None`` when the ground truth has no
    attributes; ``{"scored": False, "reason"}`` when the model predicts none; otherwise
    :func:`evaluate_attributes` with ``"scored": True``. ``predicts`` says whether the model has
    an attribute head (``None``: whether the rows carry ``attribute_ids``), so a model with one
    that detected nothing scores 0, not "-". Rows without ``attribute_ids`` among rows with them
    predict no attribute."""
    if not has_attributes(gt):
        return None
    if not (predicts_attributes(results) if predicts is None else predicts):
        return {"scored": False, "reason": "the predictions carry no attribute_ids"}
    return {"scored": True, **evaluate_attributes(gt, results)}
