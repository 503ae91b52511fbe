"""``zoo data prepare``: a one-time, resumable, parallel conversion to a cache at the training size.

Cache layout (a COCO dataset, so any COCO tool reads it too)::

    CACHE/prepare.json     settings (source, max_size, rle_base, the annotations' SHA-256): a resumed
                           run must match them, so changed labels are never mixed with stale ones
    CACHE/images/NAME      images resized so the longest side is at most max_size (JPEG q95, full chroma)
    CACHE/parts/NNNNNNN.json  one finished image (its COCO entry and annotations); the resume marker
    CACHE/annotations.json COCO instances (compressed RLE, attribute_ids), merged from parts/
    CACHE/zoo_cache.json   written last: the cache is complete

An interrupted run leaves finished images in ``parts/``; running the same command again skips them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console

from zoo.data.convert import coco_header, record_to_coco
from zoo.data.decode import ResizeSpec, load_image
from zoo.data.rle import KAGGLE_RLE_BASE
from zoo.data.sources import (CACHE_ANNOTATIONS, CACHE_MANIFEST, ImageRecord, Source, read_json, read_source,
                              safe_image_path)
from zoo.data.validate import describe_skips
from zoo.errors import DataError, UserError
from zoo.progress import progress_bar


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # a reader never sees half a file; a crash leaves no fake "done" marker


def _prepare_one(job: tuple[int, ImageRecord, Source, int, str]) -> int:
    """Resize one image into the cache and write its part file. Returns the number of dropped masks."""
    index, record, source, max_size, out = job
    out_dir = Path(out)
    pixels, source_hw = load_image(record.path, ResizeSpec(max_size, "max_side"))
    target = safe_image_path(out_dir / "images", record.name, f"{record.name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    save_args = {"quality": 95, "subsampling": 0} if target.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(pixels).save(target, **save_args)
    image, annotations, dropped = record_to_coco(record, source, index + 1, max_size, source_hw)
    _write_json_atomic(out_dir / "parts" / f"{index:07d}.json", {"image": image, "annotations": annotations,
                                                                   "dropped": dropped})
    return dropped


_JOB: dict[str, Any] = {}  # a worker's source and settings (set once by _start_worker)


def _start_worker(source: Source, max_size: int, out: str) -> None:
    """A worker's copy of the source: an indexed one arrives as its paths and is mapped here."""
    _JOB.update(source=source, max_size=max_size, out=out)


def _prepare_at(index: int) -> int:
    """:func:`_prepare_one` of image ``index`` of the worker's source (its record alone is read)."""
    source = _JOB["source"]
    return _prepare_one((index, source.records[index], source, _JOB["max_size"], _JOB["out"]))


def annotations_digest(source: Source) -> str:
    """SHA-256 of the files the labels come from (train.csv and its label file, or the COCO JSON):
    a cache resumed after they changed would mix old and new labels."""
    files = [source.path / "train.csv", source.path / "label_descriptions.json"] if source.path.is_dir() else [source.path]
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / "prepare.json"
    if path.is_file():
        previous = read_json(path)
        if not isinstance(previous, dict):
            raise DataError(f"{path}: not a zoo prepare settings file; use another --out")
        if previous.get("annotations_sha256") != settings["annotations_sha256"]:
            raise DataError(f"{out}: the annotations of {settings['source']} changed since this cache was started "
                            f"(or it predates the check); prepare into another --out, or delete {out}")
        if previous != settings:
            changed = ", ".join(f"{k}: {previous.get(k)!r} -> {v!r}" for k, v in settings.items()
                                if previous.get(k) != v)
            raise DataError(f"{out}: cache was prepared with other settings ({changed}); use another --out")
    else:
        _write_json_atomic(path, settings)


def _merge(out: Path, source: Source, settings: dict[str, Any], n: int) -> tuple[int, int]:
    doc = coco_header(source, f"zoo cache at max_size {settings['max_size']}")
    doc["images"], doc["annotations"] = [], []
    dropped = 0
    for index in range(n):
        part = json.loads((out / "parts" / f"{index:07d}.json").read_text())
        doc["images"].append(part["image"])
        for ann in part["annotations"]:
            ann["id"] = len(doc["annotations"]) + 1
            doc["annotations"].append(ann)
        dropped += part["dropped"]
    _write_json_atomic(out / CACHE_ANNOTATIONS, doc)
    _write_json_atomic(out / CACHE_MANIFEST, {**settings, "annotations": len(doc["annotations"]),
                                              "dropped_empty": dropped})
    return len(doc["annotations"]), dropped


def prepare_cache(data: str | Path, out: str | Path, *, max_size: int, workers: int = 2, images: str | None = None,
                  rle_base: int = KAGGLE_RLE_BASE, console: Console | None = None) -> Path:
    """Convert ``data`` once into a cache at ``max_size`` (see the module docstring); returns ``out``.

    Args:
        data: an iMaterialist folder or a COCO JSON (see :func:`zoo.data.sources.read_source`).
        out: the cache folder (created; resumed when it holds parts from an earlier run).
        max_size: longest side of the cached images and masks (smaller images keep their size).
        workers: parallel processes (``<= 1`` works in this process).
    """
    if max_size < 1:
        raise UserError(f"--max-size must be positive, got {max_size}")
    console = console or Console()
    source = read_source(data, images=images, rle_base=rle_base)
    if source.kind == "cache":
        raise DataError(f"{data}: is already a cache; prepare from the original dataset")
    out = Path(out)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    settings = {"source": str(Path(data).resolve()), "kind": source.kind, "max_size": max_size,
                "rle_base": rle_base, "images": len(source.records), "annotations_sha256": annotations_digest(source)}
    _check_settings(out, settings)
    # Jobs are image positions: each worker reads its own records from the source's index.
    todo = [i for i in range(len(source.records)) if not (out / "parts" / f"{i:07d}.json").is_file()]
    done = len(source.records) - len(todo)
    if done:
        console.print(f"resuming: {done} of {len(source.records)} images already in {out}")
    started = time.perf_counter()
    with progress_bar(eta=True) as progress:
        task = progress.add_task("prepare", total=len(source.records), completed=done)
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker,
                                     initargs=(source, max_size, str(out))) as pool:
                for _ in pool.map(_prepare_at, todo, chunksize=max(1, min(16, len(todo) // (4 * workers)))):
                    progress.advance(task)
        else:
            _start_worker(source, max_size, str(out))
            for index in todo:
                _prepare_at(index)
                progress.advance(task)
    if todo:
        rate = len(todo) / max(1e-9, time.perf_counter() - started)
        console.print(f"{len(todo)} images in {time.perf_counter() - started:.1f} s: {rate:.2f} images/s, "
                      f"{rate / max(1, min(workers, len(todo))):.2f} per process")
    n_annotations, dropped = _merge(out, source, settings, len(source.records))
    console.print(f"cache {out}: {len(source.records)} images, {n_annotations} annotations at max side {max_size}"
                  + (f" ({dropped} masks empty at that size, dropped)" if dropped else ""))
    if describe_skips(source.skipped):
        console.print(f"{source.path}: {describe_skips(source.skipped)}")
    return out
