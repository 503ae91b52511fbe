"""Scoring at the original resolution, with the source's own ids: ground truth and results that
can be set beside published numbers and checked with the official tools.

* **Ground truth** is the source's own annotation at full size, nothing dropped: a COCO or
  Fashionpedia file's annotations as written (polygons or RLE, its ``id``, ``area``, ``bbox``,
  crowd regions), an iMaterialist CSV's runs as COCO RLE at the photo's size (the entries
  ``zoo data export`` writes, image ids 1, 2, ... in CSV order). A ``zoo data prepare`` cache is
  scored against the dataset it was prepared from (or, when that is not reachable, at the cache's
  size, and ``metrics["resolution"]`` says so).
* **Predictions** are mapped back through the exact resize and padding that made the network
  input (:class:`zoo.transforms.InputGeometry`): boxes are scaled, masks are pasted at the photo's
  size straight into RLE (:func:`zoo.data.paste.paste_rle`), and each row carries the source's
  ``image_id`` and ``category_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence


from zoo.data.convert import record_to_coco
from zoo.data.decode import image_size
from zoo.data.paste import paste_rle
from zoo.data.sources import ImageRecord, Source, read_source
from zoo.errors import UserError
from zoo.metrics.coco import segmentation_rle, xyxy_to_xywh
from zoo.transforms import InputGeometry
from zoo.types import InstancePred


@dataclass
class OriginalImage:
    """One image's ground truth at full size and how its network input was made.

    ``image`` is the COCO ``images`` entry (source id, file name, full height and width),
    ``annotations`` its COCO annotations (crowd regions included), ``geometry`` the photo-to-input
    mapping.
    """

    image: dict[str, Any]
    annotations: list[dict[str, Any]]
    geometry: InputGeometry

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` at which predictions are pasted: the ground truth's own grid."""
        return int(self.image["height"]), int(self.image["width"])

    @property
    def resized(self) -> bool:
        """True when the network input is not the image at the ground truth's size."""
        return self.geometry.scaled != self.size or self.geometry.canvas != self.size


def original_records(dataset: Any) -> tuple[Source, list[ImageRecord], str | None]:
    """The source holding the full-size annotations of ``dataset``, its record per index, and a note
    when they are not at full size.

    An InstanceDataset read from a dataset is its own source. One read from a ``zoo data prepare``
    cache is matched by image name to the dataset the cache was prepared from; when that dataset is
    not reachable, the cache's own annotations (at its size) are used and the note says so.
    """
    source = getattr(dataset, "source", None)
    records = getattr(dataset, "records", None)
    if source is None or records is None:
        raise UserError(f"{type(dataset).__name__} has no source records, so it cannot be scored at the "
                        "original resolution; score it at the input size (resolution='input')")
    if source.kind != "cache":
        return source, list(records), None
    settings_path = Path(source.path).parent / "prepare.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    origin = settings.get("source")
    if not origin or not Path(origin).exists():
        return source, list(records), (f"at the cache's size: {origin or 'the dataset it was prepared from'} "
                                       "is not reachable")
    full = read_source(origin, rle_base=int(settings.get("rle_base", source.rle_base)))
    by_name = {r.name: r for r in full.records}
    missing = [r.name for r in records if r.name not in by_name]
    if missing:
        raise UserError(f"{origin}: has no image {missing[0]!r} of the cache {source.path}")
    return full, [by_name[r.name] for r in records], None


def _coco_annotations(record: ImageRecord) -> list[dict[str, Any]]:
    """A COCO record's annotations as its file writes them (``bbox``/``area`` only where given)."""
    anns = []
    for crowd, instances in ((0, record.instances), (1, record.crowd)):
        for inst in instances:
            ann = {"id": inst.ann_id, "image_id": record.image_id, "category_id": inst.category_id,
                   "segmentation": inst.segmentation, "iscrowd": crowd, "attribute_ids": list(inst.attributes)}
            if inst.area is not None:
                ann["area"] = inst.area
            if inst.bbox is not None:
                ann["bbox"] = inst.bbox
            anns.append(ann)
    return anns


def original_image(source: Source, record: ImageRecord, photo: ImageRecord, spec: Any) -> OriginalImage:
    """Ground truth and geometry of one image.

    Args:
        source, record: where the full-size annotations are (see :func:`original_records`).
        photo: the record the network input was read from (its file decides the geometry).
        spec: the dataset's :class:`~zoo.data.decode.ResizeSpec`.
    """
    photo_hw = image_size(photo.path)
    geometry = InputGeometry.of(spec, *photo_hw)
    if source.kind == "imaterialist":
        full_hw = photo_hw if photo is record else None
        image, annotations, _ = record_to_coco(record, source, record.image_id, None, full_hw)
    else:
        image = {"id": record.image_id, "file_name": record.name, "height": record.height, "width": record.width}
        annotations = _coco_annotations(record)
    return OriginalImage(image, annotations, geometry)


def original_images(dataset: Any, indices: Sequence[int]) -> tuple[dict[int, OriginalImage], str | None]:
    """:func:`original_image` of every dataset index in ``indices``, and the note of
    :func:`original_records` (``None``: at full size).

    Annotation ids are the source's (COCO); iMaterialist rows, which have none, are numbered from 1
    (COCOeval reads id 0 as "unmatched").
    """
    source, records, note = original_records(dataset)
    out = {int(i): original_image(source, records[int(i)], dataset.records[int(i)], dataset.resize)
           for i in indices}
    next_id = 1 + max((a["id"] for o in out.values() for a in o.annotations
                       if source.kind != "imaterialist" and a.get("id") is not None), default=0)
    for o in out.values():
        for ann in o.annotations:
            if source.kind == "imaterialist" or ann.get("id") is None:
                ann["id"], next_id = next_id, next_id + 1
    return out, note


def original_results(pred: InstancePred, original: OriginalImage,
                     label_to_cat_id: dict[int, int]) -> list[dict[str, Any]]:
    """COCO results rows of one prediction, mapped back to the full-size photo.

    Args:
        pred: the adapter's output on the network input (masks bool ``[N, Hc, Wc]`` on the canvas).
        original: the image's ground-truth entry and input geometry.
        label_to_cat_id: model label ``1..C`` -> the source's ``category_id``.
    Returns:
        ``{"image_id", "category_id", "segmentation" (compressed RLE at full size), "bbox" (xywh,
        full-size pixels), "score"}`` per instance, plus ``"attribute_ids"`` when the model
        predicts attributes.
    """
    height, width = original.size
    masks = original.geometry.unpad(pred.masks).cpu().numpy()
    boxes = xyxy_to_xywh(original.geometry.boxes_to(pred.boxes, (height, width)))
    rows = []
    for k, (mask, label, box, score) in enumerate(zip(masks, pred.labels.tolist(), boxes, pred.scores.tolist())):
        row = {"image_id": original.image["id"], "category_id": label_to_cat_id[label],
               "segmentation": paste_rle(mask, height, width), "bbox": box, "score": float(score)}
        if pred.attributes is not None:
            row["attribute_ids"] = [int(a) for a in pred.attributes[k]]
        rows.append(row)
    return rows


def rle_of(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A compressed RLE (bytes counts, pycocotools' form) of any COCO segmentation."""
    rle = segmentation_rle(segmentation, height, width, "segmentation")
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
