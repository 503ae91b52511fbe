"""``zoo data export``: any readable dataset as a standard COCO instance file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from zoo.data.convert import coco_header, record_to_coco
from zoo.data.rle import KAGGLE_RLE_BASE
from zoo.data.sources import Source, read_source
from zoo.data.validate import describe_skips
from zoo.errors import UserError
from zoo.progress import progress_bar


def coco_dataset(source: Source, max_size: int | None = None,
                 on_image: Callable[[], None] | None = None) -> tuple[dict[str, Any], int]:
    """``source`` as a COCO instance dict, and the number of masks dropped as empty at that size.

    Image ids are the source's (see :func:`export_coco`); annotation ids run from 1.
    ``on_image`` is called after each image (a progress bar).
    """
    doc = coco_header(source, f"exported by zoo from {source.kind}")
    doc["images"], doc["annotations"] = [], []
    dropped = 0
    for i, record in enumerate(source.records):
        image, annotations, n_dropped = record_to_coco(record, source, record.image_id or i + 1, max_size)
        for ann in annotations:
            ann["id"] = len(doc["annotations"]) + 1
            doc["annotations"].append(ann)
        doc["images"].append(image)
        dropped += n_dropped
        if on_image is not None:
            on_image()
    return doc, dropped


def export_coco(data: str | Path, out: str | Path, *, max_size: int | None = None, images: str | None = None,
                rle_base: int = KAGGLE_RLE_BASE, console: Console | None = None) -> Path:
    """Write ``data`` as a COCO instance JSON at ``out``.

    Masks are compressed RLE; categories keep the label file's ids and names; each annotation has
    Fashionpedia's ``attribute_ids``. Without ``max_size`` masks keep the original resolution (and
    iMaterialist runs are converted without building a mask, read with ``rle_base``); with it, the
    longest side is at most ``max_size``. Image ids are the source's: a COCO file's own, an
    iMaterialist image's 1-based position in the CSV, the ids that ``zoo eval`` and ``zoo compare``
    results files refer to. So the file at the original size is the ground truth to check those
    results against with any COCO tool.
    """
    if max_size is not None and max_size < 1:
        raise UserError(f"--max-size must be positive, got {max_size}")
    console = console or Console()
    source = read_source(data, images=images, rle_base=rle_base)
    with progress_bar(eta=True) as progress:
        task = progress.add_task("export", total=len(source.records))
        doc, dropped = coco_dataset(source, max_size, lambda: progress.advance(task))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc))
    console.print(f"wrote {out}: {len(doc['images'])} images, {len(doc['annotations'])} annotations"
                  + (f", {dropped} empty masks dropped" if dropped else ""))
    if describe_skips(source.skipped):
        console.print(f"{source.path}: {describe_skips(source.skipped)}")
    return out
