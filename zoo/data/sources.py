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

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from zoo.data.rle import KAGGLE_RLE_BASE
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


def make_categories(raw: list[dict], where: str) -> list[Category]:
    """Categories with contiguous labels ``1..C`` in sorted id order."""
    try:
        ordered = sorted(raw, key=lambda c: int(c["id"]))
        return [Category(id=int(c["id"]), label=i + 1, name=str(c["name"]),
                         supercategory=str(c.get("supercategory", ""))) for i, c in enumerate(ordered)]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: every category needs an integer 'id' and a 'name'") from None


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


def read_label_descriptions(path: Path) -> tuple[list[Category], dict[int, str]]:
    """Categories and attribute names from an iMaterialist ``label_descriptions.json``."""
    data = read_json(path)
    if not isinstance(data, dict) or "categories" not in data:
        raise DataError(f"{path}: expected a 'categories' list")
    attributes = {int(a["id"]): str(a["name"]) for a in data.get("attributes", [])}
    return make_categories(data["categories"], str(path)), attributes


def read_train_csv(path: Path) -> pd.DataFrame:
    """``train.csv`` as strings (ids and RLEs untouched), with the header checked."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable CSV ({str(err).splitlines()[0]})") from None
    missing = [c for c in CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
    return frame


def read_imaterialist(folder: Path, *, rle_base: int = KAGGLE_RLE_BASE, images: str | None = None) -> Source:
    """An iMaterialist 2019 folder (``train.csv``, ``label_descriptions.json``, ``train/``)."""
    image_dir = Path(images) if images else folder / "train"
    return read_imaterialist_csv(folder / "train.csv", folder / "label_descriptions.json", image_dir,
                                 rle_base=rle_base, path=folder)


def read_imaterialist_csv(csv_path: Path, labels_path: Path, image_dir: Path, *,
                          rle_base: int = KAGGLE_RLE_BASE, path: Path | None = None) -> Source:
    """An iMaterialist 2019 CSV (any subset of ``train.csv``) with its label file.

    Rows with an empty ``EncodedPixels`` mark an image without masks. Images are numbered 1, 2, ...
    in the order they first appear.
    """
    categories, attributes = read_label_descriptions(labels_path)
    frame = read_train_csv(csv_path)
    records: dict[str, ImageRecord] = {}
    for row, (name, rle, height, width, class_id) in enumerate(
            frame[list(CSV_COLUMNS)].itertuples(index=False, name=None)):
        where = f"{csv_path} row {row + 2}"  # +2: header line and 1-based lines
        record = records.get(name)
        if record is None:
            try:
                size = int(height), int(width)
            except ValueError:
                raise DataError(f"{where}: Height/Width {height!r}/{width!r} are not integers") from None
            record = records[name] = ImageRecord(name, safe_image_path(image_dir, name, where), *size,
                                                 image_id=len(records) + 1)
        if not rle.strip():
            continue
        category_id, attrs = parse_class_id(class_id, where)
        record.instances.append(InstanceRecord(category_id, attrs, rle, where))
    return Source("imaterialist", path or csv_path, categories, attributes, list(records.values()), rle_base)


def read_coco(path: Path, *, images: str | None = None, kind: str = "coco") -> Source:
    """A COCO instance JSON: polygons, uncompressed or compressed RLE, optional ``attribute_ids``.

    Crowd annotations (``iscrowd: 1``) are skipped and counted: they mark regions, not instances.
    """
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO instance file (no 'images' list)")
    categories = make_categories(data.get("categories", []), str(path))
    attributes = {int(a["id"]): str(a.get("name", a["id"])) for a in data.get("attributes", []) or []}
    image_dir = Path(images) if images else path.parent / "images"
    by_id: dict[int, ImageRecord] = {}
    for i, image in enumerate(data["images"]):
        where = f"{path} images[{i}]"
        try:
            image_id, name = int(image["id"]), str(image["file_name"])
            height, width = int(image["height"]), int(image["width"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: needs integer 'id', 'height', 'width' and a 'file_name'") from None
        by_id[image_id] = ImageRecord(name, safe_image_path(image_dir, name, where), height, width,
                                      image_id=image_id)
    skipped: dict[str, int] = {}
    for i, ann in enumerate(data.get("annotations", [])):
        where = f"{path} annotations[{i}] (id {ann.get('id', '?')})"
        record = by_id.get(ann.get("image_id"))
        if record is None:
            raise DataError(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        if "segmentation" not in ann or "category_id" not in ann:
            raise DataError(f"{where}: needs 'segmentation' and 'category_id'")
        instance = _coco_instance(ann, where)
        if ann.get("iscrowd", 0):
            skipped["crowd annotation"] = skipped.get("crowd annotation", 0) + 1
            record.crowd.append(instance)
        else:
            record.instances.append(instance)
    return Source(kind, path, categories, attributes, list(by_id.values()), 0, skipped)


def _coco_instance(ann: dict, where: str) -> InstanceRecord:
    """One COCO annotation as a record, keeping its own id, area and bbox."""
    try:
        attrs = [int(a) for a in ann.get("attribute_ids", []) or []]
        box = [float(v) for v in ann["bbox"]] if "bbox" in ann else None
        area = float(ann["area"]) if "area" in ann else None
        ann_id = int(ann["id"]) if "id" in ann else None
        return InstanceRecord(int(ann["category_id"]), attrs, ann["segmentation"], where, ann_id, area, box)
    except (TypeError, ValueError):
        raise DataError(f"{where}: category_id, id, area, bbox and attribute_ids must be numbers") from None


def read_source(data: str | Path, *, images: str | None = None, rle_base: int = KAGGLE_RLE_BASE) -> Source:
    """Read any supported DATA argument (see the module docstring)."""
    path = Path(data).expanduser()
    if path.is_file() and path.suffix.lower() == ".json":
        return read_coco(path, images=images)
    if path.is_dir() and (path / CACHE_MANIFEST).is_file():
        return read_coco(path / CACHE_ANNOTATIONS, images=images or str(path / "images"), kind="cache")
    if path.is_dir() and (path / "train.csv").is_file():
        return read_imaterialist(path, rle_base=rle_base, images=images)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"{path}: not a dataset (expected an iMaterialist folder with train.csv, "
                    f"a COCO .json file, or a `zoo data prepare` cache)")
