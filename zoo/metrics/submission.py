"""The iMaterialist (Fashion) 2019 submission CSV: written from predictions, read back for scoring.

Layout (Kaggle 2019): ``ImageId,EncodedPixels,ClassId``, one row per instance. ``EncodedPixels``
are column-major ``start length`` runs with the same start base the reader uses
(:data:`zoo.data.rle.KAGGLE_RLE_BASE`, 1); ``ClassId`` is the category id, followed by the
predicted attribute ids when the model predicts them (``10_3_20``). The competition required the
masks of one image not to overlap: where two predictions overlap, the higher-scoring one keeps the
pixels, and a mask left empty is not written. The layout has no score column, so an image's rows
are written best first; read back, they get falling scores (1, 1 - 1/n, ...) in file order, which
keeps their ranking for COCO AP. An image without any prediction gets one row with an empty
``EncodedPixels`` and ``ClassId``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from zoo.data.rle import KAGGLE_RLE_BASE, coco_rle_runs, complement_coco_rle, parse_kaggle_rle, runs_to_coco_rle
from zoo.data.sources import parse_class_id
from zoo.errors import DataError

SUBMISSION_COLUMNS = ("ImageId", "EncodedPixels", "ClassId")


def _bytes(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def without_overlaps(rles: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each RLE less the pixels of the ones before it (pass them best first); RLE set operations
    on the runs, so no full-size mask is built."""
    taken: dict[str, Any] | None = None
    out = []
    for rle in rles:
        rle = _bytes(rle)
        own = rle if taken is None else mask_utils.merge([rle, _bytes(complement_coco_rle(taken))], intersect=True)
        out.append(own)
        taken = rle if taken is None else mask_utils.merge([taken, rle], intersect=False)
    return out


def rle_to_kaggle(rle: dict[str, Any], base: int = KAGGLE_RLE_BASE) -> str:
    """A COCO RLE as Kaggle ``"start length ..."`` (column-major, ``base``-based starts)."""
    (starts, lengths), _, _ = coco_rle_runs(rle)
    pairs = np.stack([starts + base, lengths], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))


def class_id(category_id: int, attribute_ids: Iterable[int] | None) -> str:
    """``ClassId``: the category, then the attributes in increasing order (``10_3_20``)."""
    return "_".join(str(v) for v in [int(category_id), *sorted(int(a) for a in attribute_ids or [])])


def submission_rows(image_name: str, results: Sequence[dict[str, Any]],
                    base: int = KAGGLE_RLE_BASE) -> list[tuple[str, str, str]]:
    """The CSV rows of one image from its COCO results rows (RLE at the photo's size)."""
    ranked = sorted(results, key=lambda r: -float(r.get("score", 1.0)))
    rows = []
    for row, rle in zip(ranked, without_overlaps([r["segmentation"] for r in ranked])):
        if mask_utils.area(rle) > 0:
            rows.append((image_name, rle_to_kaggle(rle, base), class_id(row["category_id"], row.get("attribute_ids"))))
    return rows or [(image_name, "", "")]


def write_submission(path: Path, images: Sequence[tuple[str, Sequence[dict[str, Any]]]],
                     base: int = KAGGLE_RLE_BASE) -> Path:
    """Write ``(ImageId, results rows)`` per image as a Kaggle 2019 submission CSV at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SUBMISSION_COLUMNS)
        for name, results in images:
            writer.writerows(submission_rows(name, results, base))
    return path


def read_submission(path: Path, gt: dict[str, Any], base: int = KAGGLE_RLE_BASE) -> list[dict[str, Any]]:
    """COCO results rows of a submission CSV, matched to ``gt``'s images by ``ImageId`` = ``file_name``.

    Raises DataError naming the file and row for a missing column, an image the ground truth does
    not have, or malformed runs or ClassId.
    """
    by_name = {str(img["file_name"]): img for img in gt["images"]}
    with Path(path).open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in SUBMISSION_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected {','.join(SUBMISSION_COLUMNS)}")
        rows = list(reader)
    per_image: dict[str, list[dict[str, Any]]] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path} row {line}"
        if not row["EncodedPixels"].strip():
            continue
        image = by_name.get(row["ImageId"])
        if image is None:
            raise DataError(f"{where}: ImageId {row['ImageId']!r} is not in the ground truth")
        category, attributes = parse_class_id(row["ClassId"], where)
        starts, lengths = parse_kaggle_rle(row["EncodedPixels"], base=base, where=where)
        height, width = int(image["height"]), int(image["width"])
        if starts.size and (starts.min() < 0 or (starts + lengths).max() > height * width):
            raise DataError(f"{where}: runs leave the {height}x{width} image (wrong --rle-base?)")
        per_image.setdefault(row["ImageId"], []).append(
            {"image_id": image["id"], "category_id": category, "attribute_ids": attributes,
             "segmentation": runs_to_coco_rle(starts, lengths, height, width)})
    results = []
    for found in per_image.values():
        for rank, det in enumerate(found):
            results.append({**det, "score": 1.0 - rank / len(found)})
    return results
