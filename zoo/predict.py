"""`zoo predict`: annotate photos that have no labels with a trained run.

For every photo: an overlay PNG (translucent masks, outlines, category and score, and the names of
the predicted attributes for a model with an attribute head). Predictions are
mapped back through the exact resize and padding that made the network input and pasted at the
photo's own size straight into RLE (:func:`zoo.data.paste.paste_rle`: no full-size mask exists).
With ``--format coco`` (the default) they are written twice: ``results.json``, a standard COCO
results list (``image_id``, ``category_id``, compressed-RLE ``segmentation``, ``bbox``, ``score``;
the image ids are those of ``predictions.json``; ``attribute_ids`` per row for a model that
predicts attributes), and ``predictions.json``, a COCO dataset (``images``, ``categories``, scored
``annotations``, and Fashionpedia's ``attributes`` list when there are attributes) that any COCO tool, and ``zoo`` itself, reads
as an annotated dataset (auto-annotation), and that ``zoo eval --pred`` scores against any ground
truth with the same file names. With ``--format imaterialist-csv``: ``submission.csv`` in the
Kaggle 2019 layout (:mod:`zoo.metrics.submission`). Then what was found: ``counts_per_image.csv``,
``counts.csv`` (instances and images per category) and ``cooccurrence.csv`` (images in which two
categories appear together), with the counts and co-occurrence printed as tables.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zoo.data.rle import KAGGLE_RLE_BASE
from zoo.errors import DataError, UserError
from zoo.types import Category, InstancePred

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FORMATS = ("coco", "imaterialist-csv")
OVERLAY_MAX_SIDE = 1280  # overlays of large photos are drawn at this longest side
OVERLAY_ATTRIBUTES = 4  # attribute names written under an instance's label (the rest counted)


def find_images(inputs: Sequence[Path]) -> list[tuple[Path, str]]:
    """``(path, name)`` of every photo: files as given, folders searched recursively (sorted).

    ``name`` is the path relative to the folder it was found in (a file's own name when given
    directly); it becomes the COCO ``file_name``. A missing path or a folder without photos is a
    one-line error naming it.
    """
    found: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            photos = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not photos:
                raise UserError(f"{item}: no photos ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            found += [(p, p.relative_to(item).as_posix()) for p in photos]
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"{item}: not a photo (expected one of {', '.join(IMAGE_SUFFIXES)})")
            found.append((item, item.name))
        else:
            raise UserError(f"{item}: no such file or folder")
    names = [n for _, n in found]
    # Two photos with the same relative name (from two folders) keep their full paths instead.
    return [(p, n if names.count(n) == 1 else p.as_posix()) for p, n in found]


@dataclass
class PhotoResult:
    """One annotated photo: ``labels`` 1..C, ``scores``, ``masks`` bool ``[N, h, w]`` at the model's
    resolution (the photo's ``height`` x ``width`` scaled to the run's size, unpadded, for the
    overlay), ``attributes`` the predicted attribute names per instance (empty lists for a model
    without attributes) and ``rows``, its COCO results at the photo's own size (image id 0 until
    numbered).
    """

    path: Path
    name: str
    height: int
    width: int
    labels: list[int]
    scores: list[float]
    masks: np.ndarray
    rows: list[dict[str, Any]] = field(default_factory=list)
    attributes: list[list[str]] = field(default_factory=list)


@dataclass
class PredictSummary:
    """What `zoo predict` wrote and found."""

    out: Path
    n_photos: int
    n_instances: int
    skipped: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def upscale_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """One bool mask ``[h, w]`` -> bool ``[height, width]`` (bilinear, then > 0.5: smooth edges)."""
    if mask.shape == (height, width):
        return mask
    up = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=(height, width), mode="bilinear",
                       align_corners=False)
    return (up[0, 0] > 0.5).numpy()


def predict_photo(adapter: Any, path: Path, name: str, spec: Any, device: torch.device,
                  score_threshold: float, label_to_cat: dict[int, int]) -> PhotoResult:
    """Read ``path`` at the run's training size, predict, keep scores >= threshold, and map the
    instances back to the photo's own resolution (:func:`zoo.metrics.original.original_results`)."""
    from zoo.data.decode import load_image
    from zoo.metrics.original import OriginalImage, original_results
    from zoo.transforms import InputGeometry

    pixels, (height, width) = load_image(path, spec)
    geometry = InputGeometry.of(spec, height, width)
    canvas = np.zeros((*geometry.canvas, 3), dtype=np.uint8)
    canvas[: pixels.shape[0], : pixels.shape[1]] = pixels  # square mode pads bottom/right, as in training
    image = torch.from_numpy(canvas).permute(2, 0, 1).to(device).float().div_(255.0)
    pred: InstancePred = adapter.predict([image])[0].to("cpu")
    pred = pred.select(pred.scores >= score_threshold)
    entry = {"id": 0, "file_name": name, "height": height, "width": width}
    rows = original_results(pred, OriginalImage(entry, [], geometry), label_to_cat)
    space = getattr(adapter, "attribute_space", None)
    attribute_names = space.name_of() if space is not None else {}
    named = [[attribute_names.get(a, str(a)) for a in ids] for ids in (pred.attributes or [[] for _ in range(len(pred))])]
    return PhotoResult(path, name, height, width, pred.labels.tolist(), pred.scores.tolist(),
                       geometry.unpad(pred.masks).numpy().astype(bool), rows, named)


def category_colors(categories: Sequence[Category]) -> dict[int, tuple[int, int, int]]:
    """A fixed colour per label (tab20, cycled)."""
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {c.label: tuple(int(255 * v) for v in cmap((c.label - 1) % 20)[:3]) for c in categories}


def draw_overlay(photo: Image.Image, result: PhotoResult, names: dict[int, str],
                 colors: dict[int, tuple[int, int, int]]) -> Image.Image:
    """Translucent masks, outlines and ``category score`` labels on the photo (at most
    :data:`OVERLAY_MAX_SIDE` px on the long side); below each label, the instance's predicted
    attribute names (at most :data:`OVERLAY_ATTRIBUTES`)."""
    from scipy.ndimage import binary_erosion

    scale = min(1.0, OVERLAY_MAX_SIDE / max(result.height, result.width))
    size = (max(1, round(result.width * scale)), max(1, round(result.height * scale)))
    photo.draft("RGB", size)  # JPEG: decode at a reduced scale when the overlay is smaller
    arr = np.asarray(photo.convert("RGB").resize(size, Image.BILINEAR), dtype=np.float32)
    masks = np.stack([upscale_mask(m, size[1], size[0]) for m in result.masks]) if len(result.masks) \
        else np.zeros((0, size[1], size[0]), dtype=bool)
    width = max(1, size[0] // 300)
    # Largest first, so small parts (pockets, necklines) are painted over their garment, not under it.
    order = np.argsort([-int(m.sum()) for m in masks], kind="stable")
    masks = masks[order]
    labels = [result.labels[i] for i in order]
    scores = [result.scores[i] for i in order]
    attributes = [result.attributes[i] if i < len(result.attributes) else [] for i in order]
    for mask, label in zip(masks, labels):
        color = np.asarray(colors[label], dtype=np.float32)
        arr[mask] = 0.55 * arr[mask] + 0.45 * color
        arr[mask & ~binary_erosion(mask, iterations=width)] = color
    image = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(11, size[0] // 60))
    for mask, label, score, attrs in zip(masks, labels, scores, attributes):
        ys, xs = np.nonzero(mask)
        if xs.size:
            text = f"{names[label]} {score:.2f}"
            if attrs:
                more = len(attrs) - OVERLAY_ATTRIBUTES
                text += "\n" + ", ".join(attrs[:OVERLAY_ATTRIBUTES]) + (f" +{more}" if more > 0 else "")
            box = draw.textbbox((int(xs.min()), int(ys.min())), text, font=font)
            draw.rectangle(box, fill=colors[label])
            draw.text((int(xs.min()), int(ys.min())), text, fill="white", font=font)
    return image


def coco_annotations(result: PhotoResult, image_id: int, first_id: int) -> list[dict[str, Any]]:
    """The photo's results rows as scored COCO annotations: ``image_id``, ids from ``first_id``, the
    mask's pixel ``area`` and tight ``bbox`` (what an annotation file holds), ``iscrowd`` 0."""
    from pycocotools import mask as mask_utils

    anns = []
    for row in result.rows:
        coded = {"size": row["segmentation"]["size"], "counts": row["segmentation"]["counts"].encode("ascii")}
        anns.append({**row, "id": first_id + len(anns), "image_id": image_id, "score": round(row["score"], 5),
                     "bbox": [float(v) for v in mask_utils.toBbox(coded)], "area": float(mask_utils.area(coded)),
                     "iscrowd": 0})
    return anns


# ---------------------------------------------------------------- counts and co-occurrence
def count_tables(per_image: list[list[str]],
                 categories: Sequence[str]) -> tuple[dict[str, int], dict[str, int], np.ndarray]:
    """Instances per category, images per category, and the co-occurrence matrix ``[K, K]``
    (images containing both categories; the diagonal is images containing the category).

    Args:
        per_image: category names found in each image (repeats = several instances).
        categories: the K categories to count, in table order.
    """
    index = {c: k for k, c in enumerate(categories)}
    instances = {c: 0 for c in categories}
    images = {c: 0 for c in categories}
    co = np.zeros((len(categories), len(categories)), dtype=np.int64)
    for found in per_image:
        for name in found:
            instances[name] += 1
        present = sorted({index[n] for n in found})
        for k in present:
            images[categories[k]] += 1
        co[np.ix_(present, present)] += 1
    return instances, images, co


def write_counts(out: Path, results: list[PhotoResult],
                 names: dict[int, str]) -> tuple[list[str], dict[str, int], np.ndarray]:
    """``counts_per_image.csv``, ``counts.csv`` and ``cooccurrence.csv``; categories found, most first."""
    per_image = [[names[lab] for lab in r.labels] for r in results]
    totals: dict[str, int] = {}
    for found in per_image:
        for n in found:
            totals[n] = totals.get(n, 0) + 1
    found_cats = sorted(totals, key=lambda c: (-totals[c], c))
    instances, images, co = count_tables(per_image, found_cats)
    with (out / "counts_per_image.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "width", "height", "instances", *found_cats])
        for r, found in zip(results, per_image):
            w.writerow([r.name, r.width, r.height, len(found), *(found.count(c) for c in found_cats)])
    with (out / "counts.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["category", "instances", "images", "share_of_images"])
        for c in found_cats:
            w.writerow([c, instances[c], images[c], f"{images[c] / max(1, len(results)):.3f}"])
    with (out / "cooccurrence.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["category", *found_cats])
        for c, row in zip(found_cats, co):
            w.writerow([c, *row.tolist()])
    return found_cats, instances, co


def print_counts(console: Console, cats: list[str], instances: dict[str, int], co: np.ndarray,
                 n_photos: int, max_columns: int = 10) -> None:
    """The per-dataset counts and the co-occurrence table (most frequent categories first)."""
    table = Table(title=f"categories found in {n_photos} photos")
    for col, just in (("category", "left"), ("instances", "right"), ("images", "right")):
        table.add_column(col, justify=just)
    for k, c in enumerate(cats):
        table.add_row(c, str(instances[c]), str(int(co[k, k])))
    console.print(table)
    shown = cats[:max_columns]
    if len(shown) < 2:
        return
    # Columns are numbered (the row labels carry the names) so long category names stay whole.
    co_table = Table(title="images in which two categories appear together"
                     + (f" (top {max_columns}; all in cooccurrence.csv)" if len(cats) > max_columns else ""))
    co_table.add_column("category")
    for k in range(len(shown)):
        co_table.add_column(str(k + 1), justify="right")
    for k, c in enumerate(shown):
        co_table.add_row(f"{k + 1} {c}", *(str(int(v)) for v in co[k, : len(shown)]))
    console.print(co_table)


# ---------------------------------------------------------------- the command
@dataclass
class Annotated:
    """Everything predicted so far: photo results, COCO images and annotations, skip reasons."""

    results: list[PhotoResult] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # COCO results, image ids of ``images``
    skipped: list[str] = field(default_factory=list)


def annotate_photos(run: Any, photos: list[tuple[Path, str]], out: Path, score_threshold: float,
                    console: Console) -> Annotated:
    """Predict every photo with a progress bar; write its overlay; collect its COCO entries."""
    from zoo.data.decode import ResizeSpec, load_image
    from zoo.train.api import resolve_device

    device = resolve_device(run.cfg.device)
    adapter = run.adapter.to(device)
    spec = ResizeSpec(run.cfg.data.max_size, run.cfg.data.resize, run.cfg.data.min_size)
    names = {c.label: c.name for c in run.categories}
    colors = category_colors(run.categories)
    label_to_cat = {c.label: c.id for c in run.categories}
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    done = Annotated()
    columns = (TextColumn("[bold]predict[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[name]}"))
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("", total=len(photos), name="")
        for path, name in photos:
            bar.update(task, name=name)
            try:
                result = predict_photo(adapter, path, name, spec, device, score_threshold, label_to_cat)
            except DataError as err:  # an unreadable photo is skipped and reported, not fatal
                done.skipped.append(str(err))
                bar.advance(task)
                continue
            image_id = len(done.images) + 1
            done.images.append({"id": image_id, "file_name": name, "height": result.height, "width": result.width})
            done.annotations += coco_annotations(result, image_id, len(done.annotations) + 1)
            done.rows += [{**row, "image_id": image_id} for row in result.rows]
            overlay = out / "overlays" / (Path(name).with_suffix("").as_posix().replace("/", "__") + ".png")
            photo = Image.fromarray(load_image(path, ResizeSpec(OVERLAY_MAX_SIDE))[0])  # upright, 8-bit RGB
            draw_overlay(photo, result, names, colors).save(overlay)
            # Only names and labels are needed from here on (counts); the masks are in ``rows``.
            done.results.append(replace(result, masks=np.zeros((0, 0, 0), dtype=bool), rows=[]))
            bar.advance(task)
    return done


def write_predictions(out: Path, done: Annotated, run: Any, score_threshold: float, fmt: str,
                      rle_base: int) -> list[Path]:
    """The standard files of ``fmt`` (see the module docstring); returns their paths."""
    if fmt == "imaterialist-csv":
        from zoo.metrics.submission import write_submission

        per_image = {im["id"]: (im["file_name"], []) for im in done.images}
        for row in done.rows:
            per_image[row["image_id"]][1].append(row)
        return [write_submission(out / "submission.csv", list(per_image.values()), base=rle_base)]
    categories = [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in run.categories]
    (out / "results.json").write_text(json.dumps(done.rows))
    dataset = {"info": {"description": f"predictions of {run.path}", "score_threshold": score_threshold},
               "images": done.images, "categories": categories, "annotations": done.annotations}
    space = getattr(run.adapter, "attribute_space", None)
    if space is not None:
        dataset["attributes"] = [{"id": i, "name": n} for i, n in zip(space.ids, space.names)]
    (out / "predictions.json").write_text(json.dumps(dataset))
    return [out / "results.json", out / "predictions.json"]


def predict_photos(run_dir: Path, inputs: Sequence[Path], *, out: Path, score_threshold: float = 0.5,
                   console: Console | None = None, format: str = "coco",
                   rle_base: int = KAGGLE_RLE_BASE) -> PredictSummary:
    """Annotate every photo in ``inputs`` with the run's best weights; see the module docstring.

    Unreadable photos are skipped, counted and listed (in the summary and ``skipped.txt``).
    ``format`` is ``coco`` or ``imaterialist-csv``; ``rle_base`` the CSV's start base.
    """
    from zoo.train.run import load_run

    console = console or Console(stderr=True)
    if not 0.0 <= score_threshold <= 1.0:
        raise UserError(f"--score-threshold {score_threshold}: must be in [0, 1]")
    if format not in FORMATS:
        raise UserError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    photos = find_images(inputs)
    run = load_run(run_dir)
    done = annotate_photos(run, photos, out, score_threshold, console)
    written = write_predictions(out, done, run, score_threshold, format, rle_base)
    if done.skipped:
        (out / "skipped.txt").write_text("\n".join(done.skipped) + "\n")
    names = {c.label: c.name for c in run.categories}
    cats, instances, co = write_counts(out, done.results, names)
    print_counts(console, cats, instances, co, len(done.results))
    for line in done.skipped:
        console.print(f"[yellow]skipped[/] {line}")
    console.print(f"{len(done.results)} photos, {len(done.annotations)} instances, {len(done.skipped)} skipped "
                  f"-> [bold]{out}[/] ({', '.join(p.name for p in written)})")
    return PredictSummary(out, len(done.results), len(done.annotations), done.skipped, dict(instances))


def predict_from_cli(run: Path, inputs: Sequence[Path], *, out: Path, score_threshold: float, format: str = "coco",
                     rle_base: int = KAGGLE_RLE_BASE) -> PredictSummary:
    """`zoo predict`: see :func:`predict_photos`."""
    return predict_photos(Path(run), list(inputs), out=Path(out), score_threshold=score_threshold, format=format,
                          rle_base=rle_base)
