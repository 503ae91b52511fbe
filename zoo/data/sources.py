"""Read dataset descriptions into plain records, without decoding any mask or image.

A DATA argument is one of:

* an **iMaterialist 2019 folder**: ``train.csv`` (``ImageId,EncodedPixels,Height,Width,ClassId``),
  ``label_descriptions.json`` and ``train/`` with the JPEGs;
* a **COCO instance JSON** (Fashionpedia included), images in ``images/`` beside it unless
  ``images`` says otherwise;
* a **zoo cache** folder written by ``zoo data prepare`` (a COCO JSON at the training size).

Every reader returns a :class:`Source`: categories (labels ``1..C`` in sorted category-id order),
attribute names and one :class:`ImageRecord` per image holding its undecoded segmentations, with
the ids the source gives them (what standard results files and evaluation refer to).
"""

from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from zoo.data.rle import KAGGLE_RLE_BASE
from zoo.data.validate import (Report, StrictReport, as_int, bbox_problem, image_size_of, segmentation_key,
                               segmentation_problem)
from zoo.errors import DataError
from zoo.types import Category

CACHE_MANIFEST = "zoo_cache.json"
CACHE_ANNOTATIONS = "annotations.json"
CSV_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width", "ClassId")


@dataclass
class InstanceRecord:
    """One undecoded instance.

    ``segmentation`` is a Kaggle RLE string (iMaterialist), a list of polygons or a COCO RLE dict.
    ``where`` names the source row or annotation for error messages. ``ann_id``, ``area`` and
    ``bbox`` are the COCO file's own values when it has them (standard evaluation keeps them).
    """

    category_id: int
    attributes: list[int]
    segmentation: Any
    where: str
    ann_id: int | None = None
    area: float | None = None
    bbox: list[float] | None = None


@dataclass
class ImageRecord:
    """One image: its file and the grid (``height x width``) its annotations are drawn on.

    ``image_id`` is the COCO file's id, or for iMaterialist the image's 1-based position in
    ``train.csv`` (the id ``zoo data export`` gives it). ``crowd`` holds COCO crowd regions: not
    trained on, but kept as ground truth (COCO evaluation ignores detections inside them).
    """

    name: str  # ImageId / file_name as written in the source
    path: Path
    height: int
    width: int
    instances: list[InstanceRecord] = field(default_factory=list)
    image_id: int = 0
    crowd: list[InstanceRecord] = field(default_factory=list)


@dataclass
class Source:
    """A dataset description: what the records mean and where they came from."""

    kind: str  # "imaterialist", "coco" or "cache"
    path: Path
    categories: list[Category]
    attributes: dict[int, str]
    records: list[ImageRecord]
    rle_base: int = KAGGLE_RLE_BASE
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (counted, reported skips)


def make_categories(raw: Any, where: str, report: Report | None = None) -> list[Category]:
    """Categories with contiguous labels ``1..C`` in sorted id order.

    Each needs an integer ``id`` and a ``name``; ids must be unique (a repeated id would build an
    extra class).
    """
    report = report or StrictReport()
    if not isinstance(raw, list):
        raise DataError(f"{where}: 'categories' must be a list, got {type(raw).__name__}")
    first: dict[int, int] = {}
    for i, c in enumerate(raw):
        cat_id = as_int(c.get("id")) if isinstance(c, dict) else None
        if cat_id is None or "name" not in c:
            report.add("bad category", f"{where}: categories[{i}] needs an integer 'id' and a 'name'")
        elif cat_id in first:
            report.add("duplicate category id", f"{where}: categories[{i}] repeats id {cat_id} "
                       f"(categories[{first[cat_id]}])")
        else:
            first[cat_id] = i
    ordered = sorted(first.items())
    return [Category(id=cat_id, label=k + 1, name=str(raw[i]["name"]),
                     supercategory=str(raw[i].get("supercategory", ""))) for k, (cat_id, i) in enumerate(ordered)]


def make_attributes(raw: Any, where: str) -> dict[int, str]:
    """Attribute id -> name from a label file's or COCO file's ``attributes`` list (may be absent)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise DataError(f"{where}: 'attributes' must be a list, got {type(raw).__name__}")
    names = {}
    for i, a in enumerate(raw):
        attr_id = as_int(a.get("id")) if isinstance(a, dict) else None
        if attr_id is None:
            raise DataError(f"{where}: attributes[{i}] needs an integer 'id'")
        names[attr_id] = str(a.get("name", attr_id))
    return names


def safe_image_path(folder: Path, name: str, where: str) -> Path:
    """``folder/name``, refusing names that escape ``folder`` (``../``, absolute paths)."""
    if not name or Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
        raise DataError(f"{where}: image name {name!r} escapes the image folder {folder}")
    return folder / name


def parse_class_id(value: str, where: str) -> tuple[int, list[int]]:
    """``"6_28_77"`` -> ``(6, [28, 77])``: the category and its attribute ids."""
    try:
        parts = [int(p) for p in str(value).strip().split("_")]
    except ValueError:
        raise DataError(f"{where}: ClassId {value!r} is not category[_attribute...] integers") from None
    return parts[0], parts[1:]


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text JSON file (it is not UTF-8)") from None


def read_label_descriptions(path: Path, report: Report | None = None) -> tuple[list[Category], dict[int, str]]:
    """Categories and attribute names from an iMaterialist ``label_descriptions.json``."""
    data = read_json(path)
    if not isinstance(data, dict) or "categories" not in data:
        raise DataError(f"{path}: expected a 'categories' list")
    return make_categories(data["categories"], str(path), report), make_attributes(data.get("attributes"), str(path))


def read_train_csv(path: Path) -> pd.DataFrame:
    """``train.csv`` as strings (ids and RLEs untouched), with the header checked."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
    return frame


def read_imaterialist(folder: Path, *, rle_base: int = KAGGLE_RLE_BASE, images: str | None = None,
                      report: Report | None = None) -> Source:
    """An iMaterialist 2019 folder (``train.csv``, ``label_descriptions.json``, ``train/``)."""
    image_dir = Path(images) if images else folder / "train"
    return read_imaterialist_csv(folder / "train.csv", folder / "label_descriptions.json", image_dir,
                                 rle_base=rle_base, path=folder, report=report)


def read_imaterialist_csv(csv_path: Path, labels_path: Path, image_dir: Path, *, rle_base: int = KAGGLE_RLE_BASE,
                          path: Path | None = None, report: Report | None = None) -> Source:
    """An iMaterialist 2019 CSV (any subset of ``train.csv``) with its label file.

    Rows with an empty ``EncodedPixels`` (and ``ClassId``) mark an image without masks. Images are
    numbered 1, 2, ... in the order they first appear. Each row's defects go to ``report``
    (:mod:`zoo.data.validate`; by default the first error is raised, skips are counted in
    ``Source.skipped``): rows of one image must agree on a positive Height/Width, a row repeating
    an earlier one (image, mask and ClassId) is left out and counted, categories and attributes
    must be in the label file.
    """
    strict = report or StrictReport()
    categories, attributes = read_label_descriptions(labels_path, strict)
    known = {c.id for c in categories}
    frame = read_train_csv(csv_path)
    records: dict[str, ImageRecord] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for row, (name, rle, height, width, class_id) in enumerate(
            frame[list(CSV_COLUMNS)].itertuples(index=False, name=None)):
        line = row + 2  # header line and 1-based lines
        where = f"{csv_path} row {line}"
        hw = image_size_of(height, width)
        if hw is None:
            strict.add("bad Height/Width", f"{where}: Height/Width {height!r}/{width!r} must be positive integers")
            continue
        record = records.get(name)
        if record is None:
            try:
                image_path = safe_image_path(image_dir, name, where)
            except DataError as err:
                strict.add("image name escapes the image folder", str(err))
                continue
            record = records[name] = ImageRecord(name, image_path, *hw, image_id=len(records) + 1)
        elif (record.height, record.width) != hw:
            strict.add("inconsistent image size", f"{where}: {name} is {hw[0]}x{hw[1]} here but "
                       f"{record.height}x{record.width} in an earlier row")
            continue
        if not rle.strip():
            if class_id.strip():
                strict.add("empty mask", f"{where}: ClassId {class_id!r} with an empty EncodedPixels")
            continue
        key = (name, rle.strip(), class_id.strip())
        if key in seen:
            strict.add("duplicate row", f"{where}: {name}, same EncodedPixels and ClassId as row {seen[key]}")
            continue
        seen[key] = line
        instance = _csv_instance(rle, class_id, where, known, attributes, strict)
        if instance is not None:
            record.instances.append(instance)
    if not records:
        strict.add("no images", f"{csv_path}: no rows (a header and no images)")
    skipped = strict.skipped if isinstance(strict, StrictReport) else {}
    return Source("imaterialist", path or csv_path, categories, attributes, list(records.values()), rle_base,
                  skipped)


def _csv_instance(rle: str, class_id: str, where: str, known: set[int], attributes: dict[int, str],
                  report: Report) -> InstanceRecord | None:
    """One train.csv row's instance, or None when its ClassId is reported as bad."""
    try:
        category_id, attrs = parse_class_id(class_id, where)
    except DataError as err:
        report.add("bad ClassId", str(err))
        return None
    if category_id not in known:
        report.add("unknown category", f"{where}: ClassId {class_id!r}: category {category_id} is not in the label file")
        return None
    unknown = [a for a in attrs if a not in attributes]
    if unknown:
        report.add("unknown attribute", f"{where}: ClassId {class_id!r}: attribute {unknown[0]} is not in the label file")
        return None
    return InstanceRecord(category_id, attrs, rle, where)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: a parsed annotation file is millions of small
    objects that live as long as the source, and each full collection while they are being built
    traverses all of them again (about half the time of reading a 50k-annotation COCO file)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_coco(path: Path, *, images: str | None = None, kind: str = "coco", report: Report | None = None) -> Source:
    """A COCO instance JSON: polygons, uncompressed or compressed RLE, optional ``attribute_ids``.

    Every entry is checked by :mod:`zoo.data.validate` rules and its defects go to ``report`` (by
    default the first error is raised). Crowd annotations (``iscrowd: 1``) mark regions, not
    instances: they are counted in ``Source.skipped`` and kept for evaluation only; an annotation
    repeating an earlier one (image, category and segmentation) is left out and counted.
    """
    with gc_paused():
        return _read_coco(path, images, kind, report)


def _read_coco(path: Path, images: str | None, kind: str, report: Report | None) -> Source:
    strict = report or StrictReport()
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO instance file (no 'images' list)")
    categories = make_categories(data.get("categories", []), str(path), strict)
    attributes = make_attributes(data.get("attributes"), str(path))
    image_dir = Path(images) if images else path.parent / "images"
    by_id: dict[int, ImageRecord] = {}
    first: dict[int, int] = {}
    for i, image in enumerate(data["images"]):
        where = f"{path} images[{i}]"
        entry = _coco_image(image, where, image_dir, strict)
        if entry is None:
            continue
        if entry.image_id in by_id:
            strict.add("duplicate image id", f"{where}: id {entry.image_id} is also images[{first[entry.image_id]}]")
            continue
        by_id[entry.image_id], first[entry.image_id] = entry, i
    if not by_id:
        strict.add("no images", f"{path}: 'images' is empty")
    annotations = data.get("annotations", [])
    if not isinstance(annotations, list):
        raise DataError(f"{path}: 'annotations' must be a list, got {type(annotations).__name__}")
    known = ({c.id for c in categories}, set(attributes))
    seen_ids: set[int] = set()
    seen: set[tuple] = set()
    for i, ann in enumerate(annotations):
        where = f"{path} annotations[{i}]" + (f" (id {ann.get('id', '?')})" if isinstance(ann, dict) else "")
        instance = _coco_instance(ann, where, by_id, known, strict)
        if instance is None:
            continue
        if instance.ann_id is not None:
            if instance.ann_id in seen_ids:
                strict.add("duplicate annotation id", f"{where}: id {instance.ann_id} is used by an earlier annotation")
                continue
            seen_ids.add(instance.ann_id)
        crowd, record = bool(ann.get("iscrowd", 0)), by_id[as_int(ann["image_id"])]
        key = (record.image_id, instance.category_id, crowd, segmentation_key(ann["segmentation"]))
        if key in seen:
            strict.add("duplicate row", f"{where}: same image, category and segmentation as an earlier annotation")
            continue
        seen.add(key)
        if crowd:
            strict.add("crowd annotation", f"{where}: iscrowd")
            record.crowd.append(instance)
        else:
            record.instances.append(instance)
    skipped = strict.skipped if isinstance(strict, StrictReport) else {}
    return Source(kind, path, categories, attributes, list(by_id.values()), 0, skipped)


def _coco_image(image: Any, where: str, image_dir: Path, report: Report) -> ImageRecord | None:
    """One ``images`` entry as a record, or None when it is reported as bad."""
    if not isinstance(image, dict):
        report.add("bad image entry", f"{where}: is a {type(image).__name__}, not an object")
        return None
    image_id, hw = as_int(image.get("id")), image_size_of(image.get("height"), image.get("width"))
    if image_id is None or hw is None or not isinstance(image.get("file_name"), str):
        report.add("bad image entry", f"{where}: needs an integer 'id', a 'file_name' and positive integer "
                   f"'height' and 'width'")
        return None
    try:
        image_path = safe_image_path(image_dir, image["file_name"], where)
    except DataError as err:
        report.add("image name escapes the image folder", str(err))
        return None
    return ImageRecord(image["file_name"], image_path, *hw, image_id=image_id)


def _coco_instance(ann: Any, where: str, by_id: dict[int, ImageRecord], known: tuple[set[int], set[int]],
                   report: Report) -> InstanceRecord | None:
    """One COCO annotation as a record keeping its own id, area and bbox; None when reported as bad."""
    if not isinstance(ann, dict):
        report.add("bad annotation", f"{where}: is a {type(ann).__name__}, not an object")
        return None
    if "segmentation" not in ann or "category_id" not in ann:
        report.add("bad annotation", f"{where}: needs 'segmentation' and 'category_id'")
        return None
    record = by_id.get(as_int(ann.get("image_id")))
    if record is None:
        report.add("unknown image_id", f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        return None
    category_id, ann_id = as_int(ann["category_id"]), as_int(ann["id"]) if "id" in ann else None
    attrs = ann.get("attribute_ids", []) or []
    area = ann.get("area")
    if (category_id is None or ("id" in ann and ann_id is None) or not isinstance(attrs, list)
            or any(as_int(a) is None for a in attrs) or (area is not None and not isinstance(area, (int, float)))):
        report.add("bad annotation", f"{where}: category_id, id, area and attribute_ids must be numbers")
        return None
    problem = segmentation_problem(ann["segmentation"], (record.height, record.width))
    if problem is None and "bbox" in ann and bbox_problem(ann["bbox"]):
        problem = "bad bbox", bbox_problem(ann["bbox"])
    if problem is None and category_id not in known[0]:
        problem = "unknown category", f"category_id {category_id} is not in 'categories'"
    if problem is None and known[1] and any(as_int(a) not in known[1] for a in attrs):
        problem = "unknown attribute", f"attribute_ids {attrs} hold an id that is not in 'attributes'"
    if problem is not None:
        report.add(problem[0], f"{where}: {problem[1]}")
        return None
    box = [float(v) for v in ann["bbox"]] if "bbox" in ann else None
    return InstanceRecord(category_id, [as_int(a) for a in attrs], ann["segmentation"], where, ann_id,
                          None if area is None else float(area), box)


def read_source(data: str | Path, *, images: str | None = None, rle_base: int = KAGGLE_RLE_BASE,
                report: Report | None = None) -> Source:
    """Read any supported DATA argument (see the module docstring); defects go to ``report``
    (default: the first error is raised, skips are counted in ``Source.skipped``).

    The records come from the dataset index (:mod:`zoo.data.index`), built on the first open
    and memory-mapped by the next ones; they equal what :func:`read_coco` and
    :func:`read_imaterialist` give, with the same errors and counted skips.
    """
    from zoo.data.index import index_coco, index_imaterialist

    path = Path(data).expanduser()
    if path.is_file() and path.suffix.lower() == ".json":
        return index_coco(path, images=images, report=report)
    if path.is_dir() and (path / CACHE_MANIFEST).is_file():
        return index_coco(path / CACHE_ANNOTATIONS, images=images or str(path / "images"), kind="cache", report=report)
    if path.is_dir() and (path / "train.csv").is_file():
        return index_imaterialist(path, rle_base=rle_base, images=images, report=report)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"{path}: not a dataset (expected an iMaterialist folder with train.csv, "
                    f"a COCO .json file, or a `zoo data prepare` cache)")
