"""From collected results to the written report: bootstrap, charts, gallery, Markdown or HTML."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from zoo.errors import UserError
from zoo.report import charts
from zoo.report.bootstrap import BootstrapResult, bootstrap_ap
from zoo.report.collect import ModelResult, read_json
from zoo.report.content import Context, Figures, build_document
from zoo.report.html import write_html
from zoo.report.markdown import write_markdown
from zoo.runtimes import runtime_points

Progress = Callable[[int, int], None]
GALLERY_MAX_INSTANCES = 30  # highest-scoring predictions drawn per gallery cell


@dataclass(frozen=True)
class ReportSettings:
    """Report options (``zoo compare --set compare.KEY=VALUE``)."""

    resamples: int = 200  # bootstrap resamples of the validation images (0: no intervals)
    confidence: float = 0.95  # bootstrap interval coverage
    seed: int = 0  # bootstrap resampling seed
    gallery: int = 4  # validation images in the gallery (0: no gallery)
    gallery_score: float = 0.5  # predictions drawn in the gallery score at least this


def shared_ground_truth(results: Sequence[ModelResult]) -> dict[str, Any]:
    """The validation ground truth; every model must have been scored on the same images."""
    gt = read_json(results[0].eval_dir / "gt.json")
    ids = sorted(im["id"] for im in gt["images"])
    for r in results[1:]:
        other = sorted(im["id"] for im in read_json(r.eval_dir / "gt.json")["images"])
        if other != ids:
            raise UserError(f"{r.eval_dir / 'gt.json'}: scored on other images than {results[0].name}; "
                            "every model must be scored on the same validation images")
    return gt


def gallery_image_ids(gt: dict[str, Any], n: int) -> list[int]:
    """``n`` validation images with ground truth, spread evenly over the split (deterministic)."""
    with_gt = sorted({int(a["image_id"]) for a in gt["annotations"]})
    if n <= 0 or not with_gt:
        return []
    picks = np.linspace(0, len(with_gt) - 1, num=min(n, len(with_gt))).round().astype(int)
    return [with_gt[i] for i in dict.fromkeys(picks.tolist())]


def _instances(rows: list[dict[str, Any]], names: dict[int, str], with_score: bool, entry: dict[str, Any],
               canvas: tuple[int, int], region: tuple[int, int]) -> charts.Instances:
    """Instances of one gallery cell: masks (RLE or polygons on the ``entry`` image's grid) decoded
    straight at ``region`` (the photo as the dataset reads it) and placed on the ``canvas`` (the
    dataset image, padded in square mode)."""
    from zoo.data.decode import decode_segmentation

    texts = [names.get(int(r["category_id"]), str(r["category_id"])) + (f" {r['score']:.2f}" if with_score else "")
             for r in rows]
    masks = np.zeros((len(rows), *canvas), dtype=bool)
    grids: dict = {}
    for k, row in enumerate(rows):
        masks[k, : region[0], : region[1]] = decode_segmentation(
            row["segmentation"], (int(entry["height"]), int(entry["width"])), region, rle_base=1,
            where=f"image {entry['id']}", grids=grids)
    return charts.Instances(masks, texts)


def _dataset_index(dataset: Any, entry: dict[str, Any]) -> int:
    """The dataset index of a ground-truth image: by file name (the files carry the source's ids)."""
    names = {str(n): i for i, n in enumerate(dataset.image_ids)}
    return names.get(str(entry.get("file_name")), int(entry["id"]))


def draw_gallery(gt: dict[str, Any], preds: dict[str, list[dict[str, Any]]], dataset: Any, path: Path,
                 settings: ReportSettings) -> Path | None:
    """The GT-green / prediction-red grid for the same validation images for every model."""
    ids = gallery_image_ids(gt, settings.gallery)
    if not ids or dataset is None:
        return None
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    images, gts = [], []
    per_model: dict[str, list[charts.Instances]] = {m: [] for m in preds}
    entries = {im["id"]: im for im in gt["images"]}
    spec = getattr(dataset, "resize", None)
    titles = []
    for image_id in ids:
        entry = entries[image_id]
        index = _dataset_index(dataset, entry)
        image = dataset[index][0]  # uint8 [3, H, W]
        canvas = (int(image.shape[-2]), int(image.shape[-1]))
        region = spec.scaled_size(entry["height"], entry["width"]) if spec is not None else canvas
        images.append(image.as_subclass(torch.Tensor).permute(1, 2, 0).numpy())
        gts.append(_instances([a for a in gt["annotations"] if a["image_id"] == image_id and not a.get("iscrowd")],
                              names, False, entry, canvas, region))
        for model, rows in preds.items():
            kept = sorted((r for r in rows if r["image_id"] == image_id and r["score"] >= settings.gallery_score),
                          key=lambda r: -r["score"])[:GALLERY_MAX_INSTANCES]
            per_model[model].append(_instances(kept, names, True, entry, canvas, region))
        titles.append(str(dataset.image_ids[index]))
    return charts.gallery(images, gts, per_model, path, titles=titles)


def pr_curve_data(gt: dict[str, Any], preds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[float, np.ndarray]]:
    """Overall mask precision ``[101]`` at IoU .50 and .75 per model, from the one evaluator."""
    from zoo.metrics.coco import score_coco
    from zoo.metrics.plots import overall_curve

    out: dict[str, dict[float, np.ndarray]] = {}
    for name, rows in preds.items():
        precision = score_coco(gt, rows, iou_types=("segm",)).precision["segm"]
        curves = {iou: overall_curve(precision, iou) for iou in (0.5, 0.75)}
        out[name] = {iou: np.clip(c, 0, 1) for iou, c in curves.items() if c is not None}
    return out


def draw_figures(results: Sequence[ModelResult], boot: BootstrapResult | None, gt: dict[str, Any],
                 preds: dict[str, list[dict[str, Any]]], dataset: Any, out: Path,
                 settings: ReportSettings) -> Figures:
    """Every chart of the report, written as PNGs into ``out``; models are labelled as in the
    tables (derived-instance models marked)."""
    names = [r.name for r in results]
    label = {r.name: r.label for r in results}
    ap = [r.metrics["segm"]["AP"] for r in results]
    ci = [(boot.models[n].low, boot.models[n].high) for n in names] if boot else None
    figs = Figures()
    # One point per model and runtime (compare.runtimes); the first of each model is its PyTorch timing.
    points, ms, point_ap, owner = runtime_points([label[n] for n in names], [r.bench for r in results], ap)
    figs.ap_latency = charts.ap_vs_latency(points, ms, point_ap, out / "ap_vs_latency.png",
                                           ci=[ci[i] for i in owner] if ci else None,
                                           xlabel=f"latency per image, median (ms, {results[0].bench.get('device')})")
    if boot is not None and len(names) > 1:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        figs.differences = charts.bootstrap_forest(
            [f"{label[a]} - {label[b]}" for a, b in pairs], [boot.differences[p].estimate for p in pairs],
            [(boot.differences[p].low, boot.differences[p].high) for p in pairs], out / "ap_differences.png",
            xlabel="difference in mask AP", title="Pairwise mask AP differences (blue: interval excludes 0)")
    per_cat = {r.label: {c: row.get("AP", -1.0) for c, row in sorted(
        r.metrics["per_category"].items(), key=lambda kv: -kv[1].get("n_gt", 0)) if row.get("n_gt", 0) > 0}
        for r in results}
    if any(per_cat.values()):
        figs.per_category = charts.per_category_ap(per_cat, out / "per_category_ap.png")
    pr = pr_curve_data(gt, preds)
    figs.pr_curves = charts.pr_curves({label.get(n, n): c for n, c in pr.items()}, out / "pr_curves.png")
    curves = {r.label: r.loss_curves() for r in results}
    if any(curves.values()):
        figs.loss = charts.loss_curves(curves, out / "loss_curves.png")
    figs.gallery = draw_gallery(gt, {label.get(n, n): rows for n, rows in preds.items()}, dataset,
                                out / "gallery.png", settings)
    return figs


def run_bootstrap(gt: dict[str, Any], preds: dict[str, list[dict[str, Any]]], settings: ReportSettings,
                  progress: Progress | None = None) -> BootstrapResult | None:
    if settings.resamples <= 0:
        return None
    return bootstrap_ap(gt, preds, n_resamples=settings.resamples, seed=settings.seed,
                        confidence=settings.confidence, progress=progress)


def write_summary_json(results: Sequence[ModelResult], boot: BootstrapResult | None, ctx: Context, path: Path) -> Path:
    """``comparison.json``: the report's numbers for scripts (same values as the tables)."""
    data = {"context": asdict(ctx), "models": {r.name: {
        "run_dir": str(r.run_dir), "eval_dir": str(r.eval_dir), "segm": r.metrics["segm"],
        "bbox": r.metrics.get("bbox"), "semantic": r.metrics.get("semantic"), "latency": r.bench,
        "resolution": r.metrics.get("resolution"), "at_input_size": r.metrics.get("at_input_size"),
        "attributes": r.metrics.get("attributes"),
        "train_time_s": r.train_time_s} for r in results}}
    if boot is not None:
        data["bootstrap"] = {
            "metric": list(boot.metric), "n_resamples": boot.n_resamples, "confidence": boot.confidence,
            "models": {n: asdict(iv) for n, iv in boot.models.items()},
            "differences": {f"{a} - {b}": {**asdict(iv), "real": iv.excludes_zero}
                            for (a, b), iv in boot.differences.items()}}
    path.write_text(json.dumps(data, indent=1))
    return path


def write_report(results: Sequence[ModelResult], ctx: Context, out: Path, fmt: str, dataset: Any,
                 settings: ReportSettings, progress: Progress | None = None,
                 on_phase: Callable[[str], None] | None = None) -> Path:
    """Bootstrap, draw and write ``report.md`` (PNGs beside it) or a self-contained ``report.html``.

    ``progress(done, total)`` follows the bootstrap; ``on_phase(text)`` announces the later steps.
    """
    on_phase = on_phase or (lambda text: None)
    if fmt not in ("md", "html"):
        raise UserError(f"unknown report format {fmt!r}; choose md or html")
    out.mkdir(parents=True, exist_ok=True)
    gt = shared_ground_truth(results)
    preds = {r.name: read_json(r.eval_dir / "results.json") for r in results}
    tic = time.perf_counter()
    boot = run_bootstrap(gt, preds, settings, progress)
    ctx.timings["bootstrap"] = time.perf_counter() - tic
    ctx.n_resamples = settings.resamples
    ctx.gallery_score = settings.gallery_score
    on_phase("drawing the charts and the gallery")
    tic = time.perf_counter()
    figs = draw_figures(results, boot, gt, preds, dataset, out, settings)
    ctx.timings["charts"] = time.perf_counter() - tic
    doc = build_document(results, boot, figs, ctx)
    write_summary_json(results, boot, ctx, out / "comparison.json")
    if fmt == "html":
        return write_html(doc, out / "report.html")
    return write_markdown(doc, out / "report.md")
