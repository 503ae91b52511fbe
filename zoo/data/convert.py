"""Turn one image record into COCO entries (compressed RLE masks), at the source size or smaller.

Shared by ``zoo data export`` (a COCO file) and ``zoo data prepare`` (a cache at training size).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_util

from zoo.data.decode import ResizeSpec, decode_masks, image_size
from zoo.data.rle import mask_to_coco_rle, runs_to_coco_rle
from zoo.data.sources import ImageRecord, Source
from zoo.data.validate import StrictReport, kaggle_runs


def coco_header(source: Source, description: str) -> dict[str, Any]:
    """``info``, ``categories`` (the source's ids and names) and ``attributes`` of a COCO file."""
    return {
        "info": {"description": description, "source": str(source.path)},
        "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in source.categories],
        "attributes": [{"id": k, "name": v} for k, v in sorted(source.attributes.items())],
    }


def _source_hw(record: ImageRecord) -> tuple[int, int]:
    """The JPEG's real size when the file is there (it decides about swapped Height/Width)."""
    return image_size(record.path) if record.path.is_file() else (record.height, record.width)


def record_rles(record: ImageRecord, source: Source, max_size: int | None,
                source_hw: tuple[int, int] | None = None) -> tuple[tuple[int, int], list[dict | None]]:
    """The output ``(height, width)`` and one compressed RLE per instance (None: empty at that size).

    At the annotation's own size, Kaggle runs go straight to COCO counts (no mask is built);
    otherwise masks are decoded at the output size (see :func:`zoo.data.decode.decode_masks`).
    """
    source_hw = source_hw or _source_hw(record)
    out_h, out_w = ResizeSpec(max_size, "max_side").scaled_size(*source_hw)
    direct = (out_h, out_w) == (record.height, record.width) == source_hw
    if direct and all(isinstance(i.segmentation, str) for i in record.instances):
        rles: list[dict | None] = []
        for inst in record.instances:
            starts, lengths = kaggle_runs(inst.segmentation, base=source.rle_base, hw=(out_h, out_w),
                                          where=inst.where, report=StrictReport())
            rle = runs_to_coco_rle(starts, lengths, out_h, out_w)
            rles.append(rle if mask_util.area(_bytes_rle(rle)) > 0 else None)
        return (out_h, out_w), rles
    masks = decode_masks(record, out_h, out_w, source_hw, rle_base=source.rle_base)
    return (out_h, out_w), [mask_to_coco_rle(m) if m.any() else None for m in masks]


def _bytes_rle(rle: dict) -> dict:
    return {"size": rle["size"], "counts": rle["counts"].encode("ascii")}


def record_to_coco(record: ImageRecord, source: Source, image_id: int, max_size: int | None,
                   source_hw: tuple[int, int] | None = None) -> tuple[dict, list[dict], int]:
    """COCO ``image`` entry, its ``annotations`` (ids from 0, renumbered by the caller) and the number
    of instances dropped because their mask is empty at the output size."""
    (height, width), rles = record_rles(record, source, max_size, source_hw)
    image = {"id": image_id, "file_name": record.name, "height": height, "width": width}
    annotations = []
    for inst, rle in zip(record.instances, rles):
        if rle is None:
            continue
        encoded = _bytes_rle(rle)
        annotations.append({
            "id": len(annotations), "image_id": image_id, "category_id": inst.category_id,
            "segmentation": rle, "area": int(mask_util.area(encoded)),
            "bbox": [float(v) for v in np.asarray(mask_util.toBbox(encoded)).tolist()],
            "iscrowd": 0, "attribute_ids": list(inst.attributes),
        })
    return image, annotations, len(rles) - len(annotations)
