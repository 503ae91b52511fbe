"""Building a dataset index (see :mod:`zoo.data.index`): an iMaterialist CSV in one streaming
pass, or a COCO JSON through its reader.

The CSV is parsed by pyarrow piece by piece (:func:`csv_batches`): a piece's ``EncodedPixels``
go from Arrow's buffer straight to ``segments.bin`` and never become Python strings, so the
build holds one piece (plus one small entry per kept row) at a time. Each row passes the checks of
:func:`zoo.data.sources.read_imaterialist_csv`, in the same order and with the same messages,
and its defects go to the same report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from zoo.data.index import INDEX_VERSION, write_table
from zoo.data.sources import (CSV_COLUMNS, ImageRecord, Source, _csv_instance, read_coco, read_label_descriptions,
                              safe_image_path)
from zoo.data.validate import Report, StrictReport, image_size_of
from zoo.errors import DataError
from zoo.types import Category

CSV_BLOCK_BYTES = 16 << 20  # the CSV is parsed this much at a time


@dataclasses.dataclass
class _Columns:
    """The instances table being built, one entry per kept instance (in source order)."""

    image: list[int] = dataclasses.field(default_factory=list)  # position of its image
    category: list[int] = dataclasses.field(default_factory=list)
    attributes: list[list[int]] = dataclasses.field(default_factory=list)
    where: list[str] = dataclasses.field(default_factory=list)  # after the source path: " row 12"
    offset: list[int] = dataclasses.field(default_factory=list)
    length: list[int] = dataclasses.field(default_factory=list)
    ann_id: list[int | None] = dataclasses.field(default_factory=list)
    area: list[float | None] = dataclasses.field(default_factory=list)
    bbox: list[list[float] | None] = dataclasses.field(default_factory=list)
    crowd: list[bool] = dataclasses.field(default_factory=list)

    def add(self, image: int, category: int, attributes: list[int], where: str, offset: int, length: int, *,
            ann_id: int | None = None, area: float | None = None, bbox: list[float] | None = None,
            crowd: bool = False) -> None:
        for name, value in (("image", image), ("category", category), ("attributes", attributes), ("where", where),
                            ("offset", offset), ("length", length), ("ann_id", ann_id), ("area", area),
                            ("bbox", bbox), ("crowd", crowd)):
            getattr(self, name).append(value)


def _write_tables(folder: Path, names: list[str], sizes: list[tuple[int, int]], image_ids: list[int],
                  cols: _Columns) -> None:
    """``images.arrow`` and ``instances.arrow``: instances grouped by image (stable, so each
    image keeps its source order), each image holding ``[start, stop)`` of them."""
    image = np.asarray(cols.image, dtype=np.int64)
    order = np.argsort(image, kind="stable")
    counts = np.bincount(image, minlength=len(names)) if len(image) else np.zeros(len(names), np.int64)
    stop = np.cumsum(counts).astype(np.int64)
    height, width = (np.asarray([s[i] for s in sizes], dtype=np.int32).reshape(-1) for i in (0, 1))
    write_table(folder / "images.arrow", pa.table({
        "name": pa.array(names, pa.string()), "height": height, "width": width,
        "image_id": pa.array(image_ids, pa.int64()), "start": stop - counts, "stop": stop}))

    def pick(values: list, kind: pa.DataType) -> pa.Array:
        return pa.array([values[i] for i in order], kind)

    write_table(folder / "instances.arrow", pa.table({
        "category_id": pick(cols.category, pa.int32()),
        "attributes": pick(cols.attributes, pa.list_(pa.int64())),
        "where": pick(cols.where, pa.string()),
        "seg_offset": pick(cols.offset, pa.int64()), "seg_length": pick(cols.length, pa.int64()),
        "ann_id": pa.array([cols.ann_id[i] or 0 for i in order], pa.int64()),
        "has_ann_id": pa.array([cols.ann_id[i] is not None for i in order], pa.bool_()),
        "area": pa.array([cols.area[i] or 0.0 for i in order], pa.float64()),
        "has_area": pa.array([cols.area[i] is not None for i in order], pa.bool_()),
        "bbox": pick(cols.bbox, pa.list_(pa.float64())),
        "has_bbox": pa.array([cols.bbox[i] is not None for i in order], pa.bool_()),
        "crowd": pa.array(np.asarray(cols.crowd, dtype=np.uint8)[order], pa.uint8())}))  # uint8, not bit-packed bool: mapped as a numpy view


def _write_meta(folder: Path, kind: str, stamps: list[dict[str, Any]], categories: list[Category],
                attributes: dict[int, str], skipped: dict[str, int], json_segments: bool, n_images: int) -> None:
    meta = {"version": INDEX_VERSION, "kind": kind, "stamps": stamps, "json_segments": json_segments,
            "images": n_images, "skipped": skipped, "categories": [dataclasses.asdict(c) for c in categories],
            "attributes": [[k, v] for k, v in attributes.items()]}
    (folder / "meta.json").write_text(json.dumps(meta))


def _read_header(csv_path: Path) -> list[str]:
    """The CSV's column names, with :func:`zoo.data.sources.read_train_csv`'s errors."""
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            first = fh.readline()
    except FileNotFoundError:
        raise DataError(f"{csv_path}: file not found") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{csv_path}: unreadable CSV ({err})") from None
    if not first.strip():
        raise DataError(f"{csv_path}: empty file (no header, no rows)")
    header = next(csv.reader(io.StringIO(first)))
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
    return header


def _row_chunks(fh: BinaryIO) -> Iterator[bytes]:
    """The file's bytes after the header in pieces of about ``CSV_BLOCK_BYTES`` that end at a row
    boundary: a newline outside quotes (an even count of ``"`` before it, as RFC 4180 escapes
    a quote by doubling it)."""
    carry = b""
    while True:
        block = fh.read(CSV_BLOCK_BYTES)
        data = carry + block
        if not block:
            if data:
                yield data
            return
        cut = data.rfind(b"\n") + 1
        while cut and data.count(b'"', 0, cut) % 2:  # that newline is inside a quoted field
            cut = data.rfind(b"\n", 0, cut - 1) + 1
        if cut:
            yield data[:cut]
        carry = data[cut:]


def csv_batches(csv_path: Path) -> Iterator[pa.RecordBatch]:
    """The five columns of ``csv_path`` as record batches, every value a string (``""`` for empty).

    Each piece of the file is parsed by pyarrow on its own (with the header in front), so at
    most one piece and its columns are in memory; pyarrow's streaming reader reads ahead of
    its consumer and held most of a 370 MB file at once.
    """
    _read_header(csv_path)
    options = dict(read_options=pacsv.ReadOptions(use_threads=False),
                   convert_options=pacsv.ConvertOptions(include_columns=list(CSV_COLUMNS),
                                                        column_types={c: pa.string() for c in CSV_COLUMNS},
                                                        strings_can_be_null=False, quoted_strings_can_be_null=False))
    with open(csv_path, "rb") as fh:
        header = fh.readline()
        for chunk in _row_chunks(fh):
            try:
                table = pacsv.read_csv(pa.py_buffer(header + chunk), **options)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                raise DataError(f"{csv_path}: unreadable CSV ({str(err).splitlines()[0]})") from None
            yield from table.to_batches()


def _rle_bytes(column: pa.Array) -> tuple[np.ndarray, memoryview]:
    """A string column's value offsets ``[n + 1]`` and its data buffer, without copying."""
    buffers = column.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[column.offset: column.offset + len(column) + 1]
    data = memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")
    return offsets, data


class _CsvRows:
    """The images and kept instances of a CSV, one row at a time, with the record reader's checks."""

    def __init__(self, csv_path: Path, image_dir: Path, known: set[int], attributes: dict[int, str],
                 report: Report, segments: BinaryIO) -> None:
        self.csv_path, self.image_dir, self.known, self.attributes = csv_path, image_dir, known, attributes
        self.report, self.segments = report, segments
        self.codes: dict[str, int] = {}
        self.names: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.seen: dict[tuple[str, bytes, str], int] = {}
        self.cols = _Columns()

    def _image(self, name: str, hw: tuple[int, int], where: str) -> int | None:
        """The position of row's image (new images appended), or None when the row is reported."""
        code = self.codes.get(name)
        if code is None:
            try:
                safe_image_path(self.image_dir, name, where)
            except DataError as err:
                self.report.add("image name escapes the image folder", str(err))
                return None
            code = self.codes[name] = len(self.names)
            self.names.append(name)
            self.sizes.append(hw)
        elif self.sizes[code] != hw:
            old = self.sizes[code]
            self.report.add("inconsistent image size", f"{where}: {name} is {hw[0]}x{hw[1]} here but "
                            f"{old[0]}x{old[1]} in an earlier row")
            return None
        return code

    def add(self, line: int, name: str, raw: bytes, height: str, width: str, class_id: str) -> None:
        """Check CSV line ``line`` (``raw``: its EncodedPixels bytes) and keep its instance."""
        where = f"{self.csv_path} row {line}"
        hw = image_size_of(height, width)
        if hw is None:
            self.report.add("bad Height/Width", f"{where}: Height/Width {height!r}/{width!r} must be positive integers")
            return
        code = self._image(name, hw, where)
        if code is None:
            return
        stripped = raw.strip() if raw.isascii() else raw.decode("utf-8").strip().encode("utf-8")
        if not stripped:
            if class_id.strip():
                self.report.add("empty mask", f"{where}: ClassId {class_id!r} with an empty EncodedPixels")
            return
        key = (name, hashlib.blake2b(stripped, digest_size=16).digest(), class_id.strip())
        if key in self.seen:
            self.report.add("duplicate row", f"{where}: {name}, same EncodedPixels and ClassId as row {self.seen[key]}")
            return
        self.seen[key] = line
        instance = _csv_instance("", class_id, where, self.known, self.attributes, self.report)
        if instance is not None:
            self.cols.add(code, instance.category_id, instance.attributes, f" row {line}", self.segments.tell(),
                          len(raw))
            self.segments.write(raw)


def build_csv_index(folder: Path, csv_path: Path, labels_path: Path, stamps: list[dict[str, Any]],
                    report: Report | None = None, image_dir: Path = Path(".")) -> None:
    """Write the index of an iMaterialist CSV into ``folder`` (an empty folder).

    Rows are numbered, checked, skipped and counted exactly as
    :func:`zoo.data.sources.read_imaterialist_csv` does (``report`` gets the same defects).
    """
    strict = report or StrictReport()
    categories, attributes = read_label_descriptions(labels_path, strict)
    line = 1
    with open(folder / "segments.bin", "wb") as segments:
        rows = _CsvRows(csv_path, image_dir, {c.id for c in categories}, attributes, strict, segments)
        for batch in csv_batches(csv_path):
            text = [batch.column(c).to_pylist() for c in ("ImageId", "Height", "Width", "ClassId")]
            offsets, data = _rle_bytes(batch.column("EncodedPixels"))
            for j, (name, height, width, class_id) in enumerate(zip(*text)):
                line += 1
                rows.add(line, name, bytes(data[offsets[j]:offsets[j + 1]]), height, width, class_id)
    if not rows.names:
        strict.add("no images", f"{csv_path}: no rows (a header and no images)")
    _write_tables(folder, rows.names, rows.sizes, list(range(1, len(rows.names) + 1)), rows.cols)
    skipped = strict.skipped if isinstance(strict, StrictReport) else {}
    _write_meta(folder, "imaterialist", stamps, categories, attributes, skipped, False, len(rows.names))


def _add_instances(cols: _Columns, segments: BinaryIO, image: int, record: ImageRecord, origin: str) -> None:
    for crowd, group in ((False, record.instances), (True, record.crowd)):
        for inst in group:
            raw = json.dumps(inst.segmentation, separators=(",", ":")).encode("utf-8")
            where = inst.where[len(origin):] if inst.where.startswith(origin) else inst.where
            cols.add(image, inst.category_id, list(inst.attributes), where, segments.tell(), len(raw),
                     ann_id=inst.ann_id, area=inst.area, bbox=inst.bbox, crowd=crowd)
            segments.write(raw)


def write_records_index(folder: Path, source: Source, kind: str, stamps: list[dict[str, Any]]) -> None:
    """Write the index of records read by a reader (COCO and caches: the JSON is parsed once,
    the next opens map the index). Instances and crowd regions keep their order."""
    cols = _Columns()
    origin = str(source.path)
    with open(folder / "segments.bin", "wb") as segments:
        for position, record in enumerate(source.records):
            _add_instances(cols, segments, position, record, origin)
    records = list(source.records)
    _write_tables(folder, [r.name for r in records], [(r.height, r.width) for r in records],
                  [r.image_id for r in records], cols)
    _write_meta(folder, kind, stamps, source.categories, source.attributes, dict(source.skipped), True, len(records))


def build_coco_index(folder: Path, path: Path, image_dir: Path, kind: str, stamps: list[dict[str, Any]],
                     report: Report | None = None) -> None:
    """Write the index of a COCO JSON (``kind`` ``"coco"`` or ``"cache"``) read by
    :func:`zoo.data.sources.read_coco` with ``report``."""
    source = read_coco(path, images=str(image_dir), kind=kind, report=report)
    write_records_index(folder, source, kind, stamps)
