"""COCO ground truth, COCO results and COCO scoring (segm and bbox) with two interchangeable backends.

``faster`` (faster-coco-eval, C++) is the default; ``pycocotools`` is the reference it must match.
Scores are fractions in ``[0, 1]``. A value COCO cannot define (no ground truth in an area range,
or a category without ground truth) is kept as COCO writes it: ``-1``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

from zoo.data.rle import polygons_to_rle
from zoo.errors import DataError, UserError
from zoo.types import InstancePred

BACKENDS: tuple[str, ...] = ("faster", "pycocotools")
IOU_TYPES: tuple[str, ...] = ("segm", "bbox")
# COCOeval.stats order (pycocotools and faster-coco-eval agree on the first 12).
STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                               "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


# ---------------------------------------------------------------- masks and boxes
def masks_to_rles(masks: Tensor | np.ndarray) -> list[dict[str, Any]]:
    """Compressed RLEs (``counts`` as str, JSON-ready) of bool/uint8 masks ``[N, H, W]``."""
    arr = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    if arr.shape[0] == 0:
        return []
    # pycocotools wants Fortran-ordered uint8 [H, W, N]
    rles = mask_utils.encode(np.asfortranarray(arr.astype(np.uint8).transpose(1, 2, 0)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def xyxy_to_xywh(boxes: Tensor) -> list[list[float]]:
    """COCO boxes ``[x, y, w, h]`` from XYXY float ``[N, 4]``."""
    b = boxes.detach().cpu().to(torch.float64)
    return torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1).tolist()


def segmentation_rle(segm: Any, height: int, width: int, where: str) -> dict[str, Any]:
    """One RLE from a COCO ``segmentation``: polygons, uncompressed or compressed RLE."""
    try:
        if isinstance(segm, list):  # polygons
            if not segm:
                raise ValueError("empty polygon list")
            return polygons_to_rle(segm, height, width)
        if isinstance(segm, dict) and isinstance(segm.get("counts"), list):  # uncompressed RLE
            return mask_utils.frPyObjects(segm, height, width)
        if isinstance(segm, dict) and "counts" in segm and "size" in segm:
            return segm
    except (ValueError, TypeError, IndexError) as err:
        raise DataError(f"{where}: unreadable segmentation ({err})") from None
    raise DataError(f"{where}: segmentation is neither polygons nor RLE")


# ---------------------------------------------------------------- ground truth
def target_to_annotations(target: dict[str, Any], image_id: int, label_to_cat_id: dict[int, int],
                          first_ann_id: int) -> list[dict[str, Any]]:
    """COCO annotations of one target (see :mod:`zoo.types`): masks ``[N, H, W]`` as compressed RLE.

    ``area`` is the mask's pixel count (what COCO uses for segm area ranges); ``bbox`` comes from
    the target's XYXY boxes; ids run from ``first_ann_id``.
    """
    masks = target["masks"]
    labels = target["labels"].tolist()
    rles = masks_to_rles(masks)
    areas = masks.flatten(1).sum(1).tolist() if len(labels) else []
    attrs = target.get("attributes") or [[] for _ in labels]
    return [{"id": first_ann_id + j, "image_id": int(image_id), "category_id": label_to_cat_id[lab],
             "segmentation": rle, "bbox": box, "area": float(area), "iscrowd": 0,
             "attribute_ids": list(attr)}
            for j, (lab, rle, box, area, attr) in enumerate(
                zip(labels, rles, xyxy_to_xywh(target["boxes"]), areas, attrs))]


def coco_categories(categories: Iterable[Any]) -> list[dict[str, Any]]:
    """COCO ``categories`` entries from :class:`zoo.types.Category` objects."""
    return [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in categories]


def dataset_to_coco(dataset: Any, indices: Sequence[int] | None = None) -> dict[str, Any]:
    """COCO ground truth of ``dataset`` at its loaded resolution.

    Image id = dataset index, category id = ``Category.id``, masks as compressed RLE.
    """
    label_to_cat = {c.label: c.id for c in dataset.categories}
    images, annotations = [], []
    for idx in range(len(dataset)) if indices is None else indices:
        image, target = dataset[int(idx)]
        images.append(coco_image_entry(dataset, int(idx), image.shape[-2], image.shape[-1]))
        annotations += target_to_annotations(target, int(idx), label_to_cat, len(annotations) + 1)
    return {"images": images, "annotations": annotations, "categories": coco_categories(dataset.categories)}


def coco_image_entry(dataset: Any, idx: int, height: int, width: int) -> dict[str, Any]:
    return {"id": idx, "height": int(height), "width": int(width), "file_name": str(dataset.image_ids[idx])}


def prepare_gt(gt: dict[str, Any], source: str = "ground truth") -> dict[str, Any]:
    """A scorable copy of COCO ground truth: ``iscrowd`` defaults to 0, and a missing ``bbox`` or
    ``area`` is computed from the mask (Fashionpedia files ship polygons without boxes).

    Raises DataError naming ``source`` and the annotation when a key or an image is missing.
    """
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise DataError(f"{source}: missing or malformed {key!r} list (not a COCO instance file?)")
    sizes = {}
    for i, img in enumerate(gt["images"]):
        if not all(k in img for k in ("id", "height", "width")):
            raise DataError(f"{source}: images[{i}] needs id, height and width")
        sizes[img["id"]] = (int(img["height"]), int(img["width"]))
    anns = []
    for i, ann in enumerate(gt["annotations"]):
        where = f"{source}: annotations[{i}] (id {ann.get('id', '?')})"
        missing = [k for k in ("id", "image_id", "category_id", "segmentation") if k not in ann]
        if missing:
            raise DataError(f"{where}: missing {', '.join(missing)}")
        if ann["image_id"] not in sizes:
            raise DataError(f"{where}: image_id {ann['image_id']} is not in images")
        ann = {**ann, "iscrowd": int(ann.get("iscrowd", 0))}
        if "bbox" not in ann or "area" not in ann:
            rle = segmentation_rle(ann["segmentation"], *sizes[ann["image_id"]], where)
            ann.setdefault("bbox", mask_utils.toBbox(rle).tolist())
            ann.setdefault("area", float(mask_utils.area(rle)))
        anns.append(ann)
    return {**gt, "annotations": anns}


# ---------------------------------------------------------------- results
def preds_to_results(preds: Sequence[InstancePred], image_ids: Sequence[int],
                     label_to_cat_id: dict[int, int]) -> list[dict[str, Any]]:
    """COCO results (compressed RLE ``segmentation``, xywh ``bbox``, ``score``, and
    ``attribute_ids`` for a model that predicts attributes) of predictions at their own size.

    Args:
        preds: one :class:`InstancePred` per image (masks bool ``[N, H, W]``).
        image_ids: the COCO image id of each prediction (the dataset index).
        label_to_cat_id: model label ``1..C`` -> COCO ``category_id``.
    """
    if len(preds) != len(image_ids):
        raise ValueError(f"{len(preds)} predictions for {len(image_ids)} image ids")
    results = []
    for pred, image_id in zip(preds, image_ids):
        rles = masks_to_rles(pred.masks)
        for k, (rle, lab, box, score) in enumerate(zip(rles, pred.labels.tolist(), xyxy_to_xywh(pred.boxes),
                                                       pred.scores.tolist())):
            row = {"image_id": int(image_id), "category_id": label_to_cat_id[lab], "segmentation": rle,
                   "bbox": box, "score": float(score)}
            if pred.attributes is not None:
                row["attribute_ids"] = [int(a) for a in pred.attributes[k]]
            results.append(row)
    return results


def check_results(results: Any, gt: dict[str, Any], source: str = "results") -> None:
    """Raise DataError naming the row when results do not fit ``gt`` (unknown image or category)."""
    if not isinstance(results, list):
        raise DataError(f"{source}: expected a JSON list of detections, got {type(results).__name__}")
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = {c["id"] for c in gt["categories"]}
    for i, det in enumerate(results):
        missing = [k for k in ("image_id", "category_id", "score") if k not in det]
        if missing or not ("segmentation" in det or "bbox" in det):
            raise DataError(f"{source}: row {i} lacks {', '.join(missing) or 'segmentation/bbox'}")
        if det["image_id"] not in image_ids:
            raise DataError(f"{source}: row {i} has image_id {det['image_id']}, not in the ground truth")
        if det["category_id"] not in cat_ids:
            raise DataError(f"{source}: row {i} has category_id {det['category_id']}, not in the ground truth")


# ---------------------------------------------------------------- scoring
@dataclass
class CocoScores:
    """Scores plus what the plots need.

    ``precision[iou_type]`` is COCOeval's ``eval["precision"]`` ``[T=10, R=101, K, A=4, M=3]``
    (IoU .50:.05:.95, recall 0:.01:1, categories ``cat_ids``, area all/s/m/l, maxDets 1/10/100);
    -1 where a category has no ground truth.
    """

    metrics: dict[str, Any]
    precision: dict[str, np.ndarray]
    cat_ids: list[int]


def _backend_api(backend: str) -> tuple[type, type]:
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise UserError(f"unknown evaluation backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _coco_api(coco_cls: type, dataset: dict[str, Any]) -> Any:
    api = coco_cls()
    api.dataset = dataset
    api.createIndex()
    return api


def _eval_one(gt: dict[str, Any], results: list[dict[str, Any]], iou_type: str,
              backend: str) -> tuple[np.ndarray, np.ndarray]:
    """(stats [12], precision [T, R, K, A, M]) of one IoU type."""
    coco_cls, eval_cls = _backend_api(backend)
    # Both libraries write into the annotation dicts (ids, areas, cached RLEs): score copies.
    gt_anns = [dict(a) for a in gt["annotations"]]
    dets = [dict(d) for d in results]
    if iou_type == "segm":
        # With a bbox present, loadRes takes the box area as the detection's area; mask AP must
        # use the mask area for its small/medium/large ranges (as detectron2 does).
        for d in dets:
            d.pop("bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = _coco_api(coco_cls, {**gt, "annotations": gt_anns})
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes rejects an empty list
            coco_dt = _coco_api(coco_cls, {"images": gt["images"], "annotations": [],
                                           "categories": gt["categories"]})
        kwargs = {"print_function": lambda *a, **k: None} if backend == "faster" else {}
        ev = eval_cls(coco_gt, coco_dt, iou_type, **kwargs)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[: len(STAT_NAMES)], dtype=np.float64), np.asarray(ev.eval["precision"])


def _ap_of(precision: np.ndarray, k: int, iou_index: int | None = None) -> float:
    """AP of category index ``k`` (area all, maxDets 100); -1 when undefined."""
    p = precision[:, :, k, 0, -1] if iou_index is None else precision[iou_index, :, k, 0, -1]
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else -1.0


def score_coco(gt: dict[str, Any], results: list[dict[str, Any]], backend: str = "faster",
               iou_types: Sequence[str] = IOU_TYPES) -> CocoScores:
    """COCO scores of ``results`` against ``gt`` (both plain COCO dicts), see :func:`evaluate_coco`."""
    gt = prepare_gt(gt)
    check_results(results, gt)
    metrics: dict[str, Any] = {}
    precision: dict[str, np.ndarray] = {}
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise UserError(f"unknown IoU type {iou_type!r}; choose from {', '.join(IOU_TYPES)}")
        stats, precision[iou_type] = _eval_one(gt, results, iou_type, backend)
        metrics[iou_type] = {name: float(v) for name, v in zip(STAT_NAMES, stats)}
    cat_ids = sorted(c["id"] for c in gt["categories"])
    metrics["per_category"] = _per_category(gt, results, precision, cat_ids)
    return CocoScores(metrics=metrics, precision=precision, cat_ids=cat_ids)


def _per_category(gt: dict[str, Any], results: list[dict[str, Any]], precision: dict[str, np.ndarray],
                  cat_ids: list[int]) -> dict[str, dict[str, Any]]:
    """Category name -> id, counts and AP/AP50/AP75 (segm) and bbox_AP/... for categories that
    appear in the ground truth or the results."""
    names = {c["id"]: str(c.get("name", c["id"])) for c in gt["categories"]}
    n_gt = _count_by(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0))
    n_det = _count_by(d["category_id"] for d in results)
    table: dict[str, dict[str, Any]] = {}
    for k, cid in enumerate(cat_ids):
        if not n_gt.get(cid) and not n_det.get(cid):
            continue
        row: dict[str, Any] = {"id": cid, "n_gt": n_gt.get(cid, 0), "n_det": n_det.get(cid, 0)}
        for iou_type, prec in precision.items():
            prefix = "" if iou_type == "segm" else f"{iou_type}_"
            row[f"{prefix}AP"] = _ap_of(prec, k)
            row[f"{prefix}AP50"] = _ap_of(prec, k, 0)
            row[f"{prefix}AP75"] = _ap_of(prec, k, 5)
        table[names[cid]] = row
    return table


def _count_by(values: Iterable[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def evaluate_coco(gt: dict[str, Any], results: list[dict[str, Any]], backend: str = "faster",
                  iou_types: Sequence[str] = IOU_TYPES) -> dict[str, Any]:
    """Score COCO ``results`` against COCO ``gt``.

    Args:
        gt: COCO instance ground truth (polygons or RLE; ``bbox``/``area`` computed if absent).
        results: COCO results rows (``image_id``, ``category_id``, ``segmentation`` RLE and/or
            ``bbox`` xywh, ``score``).
        backend: ``"faster"`` (faster-coco-eval) or ``"pycocotools"``; identical numbers.
        iou_types: which of ``segm``/``bbox`` to score.
    Returns:
        ``{"segm": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
        "ARm", "ARl"}, "bbox": {...}, "per_category": {name: {"id", "n_gt", "n_det", "AP", "AP50",
        "AP75", "bbox_AP", "bbox_AP50", "bbox_AP75"}}}``; fractions in ``[0, 1]``, -1 = undefined.
    """
    return score_coco(gt, results, backend, iou_types).metrics
