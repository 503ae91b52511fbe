"""`zoo eval` on files: score a results file against a ground-truth file (a trained run is
scored by :mod:`zoo.evaluate_run`, beside the other commands that load runs).

metrics.json layout (fractions in [0, 1]; -1 where COCO cannot define a value, e.g. APl when no
ground-truth object is large, or a category's AP when it has no ground truth)::

    {"segm": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"},
     "bbox": {... same keys ...},
     "per_category": {name: {"id", "n_gt", "n_det", "AP", "AP50", "AP75",
                             "bbox_AP", "bbox_AP50", "bbox_AP75", "IoU" (runs only)}},
     "semantic": {"mIoU", "pixel_acc", "score_threshold", "n_categories"},      (runs only)
     "confusion": {"correct", "wrong_category", "missed", "spurious", ...},      (runs only)
     "resolution": {"scored_at": "original" | "input" | "cache", "input_max_size", "n_resized", "note"},
     "attributes": {"scored": true, "iou_f1", "iou", "f1": {"AP", "AP_IOU50", "AP_F150", ...},
                    "per_category", "per_attribute", "mean_f1", ...}   (ground truth with attributes:
                    Fashionpedia's AP with mask IoU and attribute F1, zoo.metrics.attributes;
                    {"scored": false, "reason"} when the predictions carry no attribute_ids)
     "at_input_size": {"segm": {...}, "bbox": {...}},  (runs scored at the original resolution
                                                        whose photos were resized for the network)
     ...provenance: "backend", "gt"/"pred" or "run"/"split"/"data", "n_images", "time_s"}

``--gt`` may be a COCO JSON, an iMaterialist CSV or dataset folder; ``--pred`` a COCO results list,
a COCO dataset with scored annotations (``zoo predict``'s ``predictions.json``) or an iMaterialist
submission CSV.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.data.rle import KAGGLE_RLE_BASE
from zoo.errors import DataError
from zoo.metrics.attributes import attribute_metrics
from zoo.metrics.coco import STAT_NAMES, check_results, evaluate_coco, prepare_gt


def load_json_file(path: Path, what: str) -> Any:
    """Parsed JSON of ``path``; a missing or malformed file is a one-line DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def _fmt(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return str(value)
    return "n/a" if value < 0 else f"{value:.3f}"


def resolution_label(metrics: dict[str, Any]) -> str:
    """Where the numbers were scored, in words: ``original resolution`` or ``input size (N px)``."""
    info = metrics.get("resolution") or {}
    if info.get("scored_at") == "original":
        return "original resolution"
    if info.get("scored_at") == "input":
        return f"input size ({info.get('input_max_size')} px)"
    if info.get("scored_at") == "cache":
        return str(info.get("note"))
    return str(info.get("scored_at", "resolution not recorded"))


def print_metrics(metrics: dict[str, Any], title: str = "COCO scores", max_categories: int = 60) -> None:
    """Rich tables: the summary scores (segm and bbox side by side), then per category."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    kinds = [k for k in ("segm", "bbox") if k in metrics]
    table = Table(title=title)
    table.add_column("metric")
    for kind in kinds:
        table.add_column("mask" if kind == "segm" else "box", justify="right")
    for name in STAT_NAMES:
        table.add_row(name, *(_fmt(metrics[k][name]) for k in kinds))
    console.print(table)
    rows = sorted(metrics.get("per_category", {}).items(), key=lambda kv: (-kv[1]["n_gt"], kv[0]))
    if rows:
        cat_table = Table(title="per category (n/a: no ground truth)")
        extra = ["IoU"] if any("IoU" in r for _, r in rows) else []
        for col in ["category", "gt", "det", "mask AP", "mask AP50", "box AP", *extra]:
            cat_table.add_column(col, justify="left" if col == "category" else "right")
        for name, r in rows[:max_categories]:
            cells = [r.get("AP"), r.get("AP50"), r.get("bbox_AP", "-"), *(r.get(c, "-") for c in extra)]
            cat_table.add_row(name, str(r["n_gt"]), str(r["n_det"]), *map(_fmt, cells))
        console.print(cat_table)
    if "at_input_size" in metrics:
        small, full = metrics["at_input_size"]["segm"]["AP"], metrics["segm"]["AP"]
        console.print(f"scored at the input size ({metrics['resolution'].get('input_max_size')} px) instead, "
                      f"mask AP would be {_fmt(small)}: {'over' if small > full else 'under'}stated by "
                      f"{abs(small - full):.3f}")
    if metrics.get("attributes") is not None:
        print_attribute_metrics(console, metrics)
    if "semantic" in metrics:
        s = metrics["semantic"]
        console.print(f"semantic: mIoU {_fmt(s['mIoU'])}  pixel accuracy {_fmt(s['pixel_acc'])}  "
                      f"(score >= {s['score_threshold']}, {s['n_categories']} categories present)")


def print_attribute_metrics(console: Any, metrics: dict[str, Any], max_attributes: int = 30) -> None:
    """Fashionpedia's AP with mask IoU and attribute F1 beside mask AP, then F1 per attribute."""
    from rich.table import Table

    attrs = metrics["attributes"]
    if not attrs.get("scored"):
        console.print(f"attributes: not scored ({attrs.get('reason')})")
        return
    table = Table(title="Fashionpedia AP: mask IoU and attribute F1 (F1 on "
                        f"{len(attrs['categories_with_f1'])} categories with attributes)")
    for col in ("metric", "IoU+F1", "IoU only", "F1 only"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key in ("AP", "AP_IOU50", "AP_IOU75", "AP_F150", "AP_F175", "APs", "APm", "APl", "AR@100"):
        table.add_row(key, *(_fmt(attrs[v].get(key, "-")) for v in ("iou_f1", "iou", "f1")))
    console.print(table)
    console.print(f"mask AP {_fmt(metrics['segm']['AP'])}  AP (IoU+F1) {_fmt(attrs['iou_f1']['AP'])}  "
                  f"mean attribute F1 {_fmt(attrs['mean_f1'])}")
    rows = sorted(((n, r) for n, r in attrs["per_attribute"].items() if r["n_gt"] or r["n_pred"]),
                  key=lambda nr: (-nr[1]["n_gt"], nr[0]))
    if rows:
        per = Table(title="per attribute, on ground truths matched at mask IoU >= 0.5 (n/a: undefined)")
        for col in ("attribute", "gt", "matched", "predicted", "precision", "recall", "F1"):
            per.add_column(col, justify="left" if col == "attribute" else "right")
        for name, r in rows[:max_attributes]:
            per.add_row(name, str(r["n_gt"]), str(r["n_matched"]), str(r["n_pred"]),
                        *(_fmt(r[k]) for k in ("precision", "recall", "f1")))
        console.print(per)


def metrics_path(out: Path | None, default_dir: Path | None) -> Path | None:
    """``out`` ending in .json is the metrics file; any other ``out`` is a folder for metrics.json."""
    if out is None:
        return None if default_dir is None else default_dir / "metrics.json"
    return out if out.suffix == ".json" else out / "metrics.json"


def load_ground_truth(gt: Path, *, rle_base: int = KAGGLE_RLE_BASE) -> dict[str, Any]:
    """A scorable COCO ground truth from a COCO JSON, an iMaterialist CSV (any subset of
    ``train.csv``, with ``label_descriptions.json`` beside it) or a dataset folder.

    iMaterialist rows become what ``zoo data export`` writes: full-size RLE, image ids 1, 2, ... in
    CSV order, ``file_name`` = ``ImageId``.
    """
    from zoo.data.export import coco_dataset
    from zoo.data.sources import read_imaterialist_csv, read_source
    from zoo.data.validate import check_coco_annotations

    gt = Path(gt)
    if gt.suffix.lower() == ".csv":
        if not gt.is_file():
            raise DataError(f"{gt}: ground-truth file not found")
        source = read_imaterialist_csv(gt, gt.parent / "label_descriptions.json", gt.parent / "train",
                                       rle_base=rle_base)
        data = coco_dataset(source)[0]
    elif gt.is_dir():
        data = coco_dataset(read_source(gt, rle_base=rle_base))[0]
    else:
        data = load_json_file(gt, "ground-truth")
        if not isinstance(data, dict):
            raise DataError(f"{gt}: expected a COCO object with images/annotations/categories")
        check_coco_annotations(data, str(gt))  # before pycocotools rasterises a malformed polygon
    return prepare_gt(data, source=str(gt))


def load_predictions(pred: Path, gt: dict[str, Any], *, rle_base: int = KAGGLE_RLE_BASE) -> list[dict[str, Any]]:
    """COCO results rows from a results list (JSON), a COCO dataset whose annotations carry scores
    (``zoo predict``'s ``predictions.json``: images matched to ``gt`` by ``file_name``), or an
    iMaterialist submission CSV (:mod:`zoo.metrics.submission`)."""
    from zoo.metrics.submission import read_submission

    pred = Path(pred)
    if pred.suffix.lower() == ".csv":
        if not pred.is_file():
            raise DataError(f"{pred}: results file not found")
        return read_submission(pred, gt, base=rle_base)
    data = load_json_file(pred, "results")
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        return dataset_to_results(data, gt, str(pred))
    return data


def dataset_to_results(data: dict[str, Any], gt: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Scored annotations of a COCO dataset as results rows, their images renumbered to ``gt``'s ids
    by ``file_name``."""
    gt_ids = {str(img["file_name"]): img["id"] for img in gt["images"]}
    names = {img.get("id"): str(img.get("file_name")) for img in data.get("images", [])}
    results = []
    for i, ann in enumerate(data["annotations"]):
        if "score" not in ann:
            raise DataError(f"{source}: annotations[{i}] has no score (a ground-truth file, not predictions?)")
        name = names.get(ann.get("image_id"))
        if name not in gt_ids:
            raise DataError(f"{source}: annotations[{i}] is on image {name!r}, which the ground truth does not have")
        row = {k: ann[k] for k in ("category_id", "segmentation", "bbox", "score", "attribute_ids") if k in ann}
        results.append({**row, "image_id": gt_ids[name]})
    return results


def eval_files(gt: Path, pred: Path, *, out: Path | None, backend: str,
               rle_base: int = KAGGLE_RLE_BASE) -> dict[str, Any]:
    """Score the predictions ``pred`` against the ground truth ``gt`` (see :func:`load_ground_truth`
    and :func:`load_predictions` for what each may be); print; write ``out``."""
    from zoo.data.validate import check_result_rows

    gt_data = load_ground_truth(gt, rle_base=rle_base)
    results = load_predictions(pred, gt_data, rle_base=rle_base)
    # Checked here first so that errors name the files.
    check_result_rows(results, gt_data, str(pred))
    check_results(results, gt_data, source=str(pred))
    metrics = evaluate_coco(gt_data, results, backend=backend)
    attributes = attribute_metrics(gt_data, results)
    if attributes is not None:
        metrics["attributes"] = attributes
    metrics.update(gt=str(gt), pred=str(pred), backend=backend,
                   resolution={"scored_at": "the ground truth's own size"})
    print_metrics(metrics, title=f"{pred.name} vs {gt.name}")
    path = metrics_path(out, None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=1))
        print(f"wrote {path}")
    return metrics
