"""A dataset opened once into a compact, immutable index that processes share instead of copying.

Reading a large iMaterialist ``train.csv`` into Python objects costs about twice the file in
memory, in every process that opens it (each ``torchrun`` rank), and DataLoader workers then
copy those objects page by page as reference counts change. The index instead holds:

* ``segments.bin``: every kept instance's undecoded segmentation (the ``EncodedPixels`` text, or
  a COCO segmentation as JSON), back to back. It is never mapped: a record reads its own byte
  ranges with ``os.pread``, so a process holds only the rows it decoded.
* ``images.arrow`` and ``instances.arrow``: small Arrow tables (name, size, image id and the
  offsets of each image's instances; per instance its category, attributes, byte range and
  origin), memory-mapped read-only, so every process and worker shares the same page-cache pages.
* ``meta.json``: format version, the stamp (size, mtime and a sampled hash) of every file the
  index came from, and the counted skips of the build. A changed source is rebuilt.

The index lives beside the data (``<folder>/.zoo-index/<file>/``, inside a ``zoo data prepare``
cache for a cache), or in ``$ZOO_HOME/index/`` when that folder cannot be written. A build goes
to a temporary folder that is renamed into place, so a reader never sees half an index and two
builders racing leave one complete copy. The records it gives are exactly those of
:mod:`zoo.data.sources`' readers, with the same errors and counted skips.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence, overload

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from zoo.data.sources import ImageRecord, InstanceRecord

INDEX_VERSION = 2
INDEX_FOLDER = ".zoo-index"
SAMPLE_BYTES = 1 << 20  # hashed at the start and at the end of each source file
HASH_PIECE = 1 << 16


def file_stamp(path: Path) -> dict[str, Any]:
    """What identifies a source file's content cheaply: resolved path, size, mtime (ns) and the
    BLAKE2b of its first and last MiB (a rewrite with the same size and mtime is still seen when
    it changes either end)."""
    path = Path(path).resolve()
    stat = path.stat()
    digest = hashlib.blake2b(digest_size=16)
    buffer = bytearray(HASH_PIECE)  # read in small pieces: a 1 MiB read would stay in every rank's heap
    with open(path, "rb", buffering=0) as fh:
        for start in sorted({0, max(SAMPLE_BYTES, stat.st_size - SAMPLE_BYTES)}):
            fh.seek(start)
            left = min(SAMPLE_BYTES, stat.st_size - start)
            while left > 0:
                got = fh.readinto(memoryview(buffer)[:min(left, HASH_PIECE)])
                if not got:
                    break
                digest.update(memoryview(buffer)[:got])
                left -= got
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sample_blake2b": digest.hexdigest()}


def _writable(folder: Path) -> bool:
    """Whether zoo may write into ``folder``: the user can, and its mode is not read-only (a
    folder marked ``r-x`` is left alone even by root, whom ``os.access`` always allows)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def index_location(main_file: Path) -> Path:
    """Where the index of ``main_file`` (a ``train.csv`` or a COCO JSON) lives: beside it when its
    folder is writable, else under ``$ZOO_HOME/index/`` keyed by its resolved path (a read-only
    dataset, such as a shared mount, is never written to)."""
    main_file = Path(main_file).resolve()
    if _writable(main_file.parent):
        return main_file.parent / INDEX_FOLDER / main_file.name
    from zoo.data.dataset import zoo_home

    key = hashlib.blake2b(str(main_file).encode(), digest_size=8).hexdigest()
    return zoo_home() / "index" / f"{main_file.name}-{key}"


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The index's ``meta.json``, or None when there is no complete index there."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_current(folder: Path, kind: str, files: Sequence[Path]) -> bool:
    """Whether ``folder`` holds a complete index of this format, built from ``files`` as they are now."""
    meta = read_meta(folder)
    if meta is None or meta.get("version") != INDEX_VERSION or meta.get("kind") != kind:
        return False
    try:
        return meta.get("stamps") == [file_stamp(f) for f in files]
    except OSError:
        return False


def publish(built: Path, folder: Path) -> None:
    """Move the complete index ``built`` to ``folder`` in one rename (replacing an outdated one).

    Processes that still read the old index keep their open files; a concurrent builder that
    published first wins and ``built`` is discarded.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
        try:
            os.replace(folder, old / "index")
        except OSError:
            pass  # another process moved it first
    try:
        os.replace(built, folder)
    except OSError:  # another builder's complete index is in place
        shutil.rmtree(built, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_table(path: Path, table: pa.Table) -> None:
    """One uncompressed Arrow IPC file with a single record batch (memory-mapped zero-copy later)."""
    table = table.combine_chunks()
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(1, table.num_rows))


def map_table(path: Path) -> pa.Table:
    """An Arrow IPC file memory-mapped read-only: its pages are shared by every process mapping it."""
    # The system allocator for the little a mapped read allocates: pyarrow's default one would
    # reserve an arena of several MB in every process that opens the index.
    return ipc.open_file(pa.memory_map(str(path), "r"), memory_pool=pa.system_memory_pool()).read_all()


def _column_numpy(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    chunk = column.chunk(0) if column.num_chunks else pa.array([], type=column.type)
    return chunk.to_numpy(zero_copy_only=chunk.null_count == 0 and not pa.types.is_boolean(chunk.type))


class IndexedRecords(Sequence[ImageRecord]):
    """The images of an index as a read-only sequence of :class:`ImageRecord`, built on access.

    ``records[i]`` reads image ``i``'s instances alone (its byte ranges of ``segments.bin``);
    nothing is cached, so a DataLoader worker's memory does not grow with what it has read.
    Pickles as its paths (a spawned worker reopens the index).

    Args:
        folder: the index folder (see :mod:`zoo.data.index`).
        origin: the source file named in each instance's ``where`` (``"<origin> row 12"``).
        image_dir: the folder image names are relative to.
        positions: the images of the index this sequence shows, in order (default: all).
    """

    def __init__(self, folder: Path, origin: Path, image_dir: Path, positions: np.ndarray | None = None) -> None:
        self.folder, self.origin, self.image_dir = Path(folder), Path(origin), Path(image_dir)
        self.meta = read_meta(self.folder) or {}
        self.json_segments = bool(self.meta.get("json_segments"))
        self._images = map_table(self.folder / "images.arrow")
        self._instances = map_table(self.folder / "instances.arrow")
        self._start = _column_numpy(self._images, "start")
        self._stop = _column_numpy(self._images, "stop")
        self._category = _column_numpy(self._instances, "category_id")
        self._crowd = _column_numpy(self._instances, "crowd").view(np.bool_)
        self._seg_offset = _column_numpy(self._instances, "seg_offset")
        self._seg_length = _column_numpy(self._instances, "seg_length")
        self._fd = os.open(self.folder / "segments.bin", os.O_RDONLY)
        self._total = self._images.num_rows
        # None: every image in index order, with no position array (a rank or worker viewing the
        # whole index holds nothing of its own per image).
        self._positions = None if positions is None else np.asarray(positions, np.int64)

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "origin": self.origin, "image_dir": self.image_dir, "positions": self._positions}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["origin"], state["image_dir"], state["positions"])  # type: ignore[misc]

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def positions(self) -> np.ndarray:
        """int64 ``[N]``: the index rows this sequence shows, in order (a new array for the whole index)."""
        return np.arange(self._total, dtype=np.int64) if self._positions is None else self._positions

    def _position(self, index: int) -> int:
        if self._positions is not None:
            return int(self._positions[index])
        if not -self._total <= index < self._total:
            raise IndexError(f"image {index} out of range ({self._total} images)")
        return index % self._total

    def __len__(self) -> int:
        return self._total if self._positions is None else len(self._positions)

    @overload
    def __getitem__(self, index: int) -> ImageRecord: ...

    @overload
    def __getitem__(self, index: slice) -> IndexedRecords: ...

    def __getitem__(self, index: int | slice) -> ImageRecord | IndexedRecords:
        if isinstance(index, slice):
            return self.subset(self.positions[index])
        return self._record(self._position(int(index)))

    def __iter__(self) -> Iterator[ImageRecord]:
        for position in (range(self._total) if self._positions is None else self._positions):
            yield self._record(int(position))

    def subset(self, positions: Sequence[int] | np.ndarray) -> IndexedRecords:
        """A sequence over ``positions`` of the *whole index* (sharing its open tables)."""
        view = object.__new__(IndexedRecords)
        view.__dict__.update(self.__dict__)
        view._fd = os.dup(self._fd)
        view._positions = np.asarray(positions, dtype=np.int64)
        return view

    def take(self, indices: Sequence[int]) -> IndexedRecords:
        """The records at ``indices`` of this sequence, as a sequence (no record is built)."""
        return self.subset(self.positions[np.asarray(indices, dtype=np.int64)])

    def category_ids(self, index: int) -> np.ndarray:
        """Category ids of image ``index``'s instances (crowd regions left out), int32 ``[N]``;
        no segmentation is read."""
        position = self._position(int(index))
        lo, hi = int(self._start[position]), int(self._stop[position])
        return self._category[lo:hi][~self._crowd[lo:hi]]

    def names(self) -> list[str]:
        """The image names (``ImageId`` / ``file_name``) of this sequence; no segmentation is read."""
        return self._images.column("name").take(pa.array(self.positions)).to_pylist()

    def instance_counts(self) -> np.ndarray:
        """Instances (crowd regions left out) of every image in this sequence, int64 ``[N]``."""
        crowd_before = np.concatenate([[0], np.cumsum(self._crowd, dtype=np.int64)])
        positions = self.positions
        start, stop = self._start[positions], self._stop[positions]
        return (stop - start) - (crowd_before[stop] - crowd_before[start])

    def attribute_usage(self) -> tuple[set[int], set[int]]:
        """``(category ids, attribute ids)`` of the instances (crowd regions left out) that carry
        attributes, over this sequence's images; no segmentation is read."""
        positions = self.positions
        start, stop = self._start[positions], self._stop[positions]
        rows = np.repeat(stop - (stop - start).cumsum(), stop - start) + np.arange(int((stop - start).sum()))
        attrs = self._instances.column("attributes").chunk(0) if self._instances.num_rows else None
        if attrs is None or not len(rows):
            return set(), set()
        offsets = attrs.offsets.to_numpy()
        carrying = rows[((offsets[rows + 1] - offsets[rows]) > 0) & ~self._crowd[rows]]
        values = attrs.values.to_numpy()
        used = {int(values[k]) for row in carrying for k in range(offsets[row], offsets[row + 1])}
        return {int(c) for c in np.unique(self._category[carrying])}, used

    def _segmentation(self, row: int) -> Any:
        raw = os.pread(self._fd, int(self._seg_length[row]), int(self._seg_offset[row])).decode("utf-8")
        return json.loads(raw) if self.json_segments else raw

    def _instance(self, row: int) -> InstanceRecord:
        table = self._instances
        has_bbox = table.column("has_bbox")[row].as_py()
        return InstanceRecord(
            category_id=int(self._category[row]),
            attributes=table.column("attributes")[row].as_py(),
            segmentation=self._segmentation(row),
            where=f"{self.origin}{table.column('where')[row].as_py()}",
            ann_id=table.column("ann_id")[row].as_py() if table.column("has_ann_id")[row].as_py() else None,
            area=table.column("area")[row].as_py() if table.column("has_area")[row].as_py() else None,
            bbox=table.column("bbox")[row].as_py() if has_bbox else None)

    def _record(self, position: int) -> ImageRecord:
        images = self._images
        name = images.column("name")[position].as_py()
        record = ImageRecord(name, self.image_dir / name, int(images.column("height")[position].as_py()),
                             int(images.column("width")[position].as_py()),
                             image_id=int(images.column("image_id")[position].as_py()))
        for row in range(int(self._start[position]), int(self._stop[position])):
            (record.crowd if self._crowd[row] else record.instances).append(self._instance(row))
        return record


def _build(folder: Path, kind: str, files: list[Path], image_dir: Path, report: Any, stamps: list[dict]) -> None:
    from zoo.data.index_build import build_coco_index, build_csv_index

    if kind == "imaterialist":
        build_csv_index(folder, files[0], files[1], stamps, report, image_dir)
    else:
        build_coco_index(folder, files[0], image_dir, kind, stamps, report)


def _scratch_index(kind: str, files: list[Path], image_dir: Path, origin: Path, report: Any) -> IndexedRecords:
    """An index built for one use (a collecting report, or nowhere writable): opened, then its
    files are deleted (the open descriptors and maps keep them readable)."""
    folder = Path(tempfile.mkdtemp(prefix="zoo-index-"))
    try:
        _build(folder, kind, files, image_dir, report, [file_stamp(f) for f in files])
        return IndexedRecords(folder, origin, image_dir)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ensure_index(kind: str, files: Sequence[Path], image_dir: Path) -> Path:
    """The folder of a current index of ``files`` (``[train.csv, label_descriptions.json]`` or
    ``[coco.json]``, images under ``image_dir``), built first when missing or outdated; errors of
    the source are raised."""
    files = [Path(f) for f in files]
    folder = index_location(files[0])
    if is_current(folder, kind, files):
        return folder
    stamps = [file_stamp(f) for f in files]  # before reading: a change during the build is seen next time
    folder.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{folder.name}-build-", dir=folder.parent))
    built.chmod(0o755)  # mkdtemp's 0700 would hide a shared dataset's index from its other users
    try:
        _build(built, kind, files, image_dir, None, stamps)
        publish(built, folder)
    finally:
        shutil.rmtree(built, ignore_errors=True)
        pa.default_memory_pool().release_unused()  # the build's parse buffers, back to the system
    return folder


def open_indexed(kind: str, files: Sequence[Path], *, origin: Path, image_dir: Path, path: Path,
                 rle_base: int, report: Any = None) -> Any:
    """A :class:`~zoo.data.sources.Source` whose records are an :class:`IndexedRecords`.

    Args:
        kind: ``"imaterialist"`` (``files``: the CSV and its label file), ``"coco"`` or ``"cache"``
            (``files``: the JSON).
        origin: the file named in the instances' ``where``; ``image_dir``: the images' folder;
            ``path``: ``Source.path``.
        report: a collecting report (``zoo data check``): the index is built for this use only and
            gets every defect. Default: the first error is raised and the index is kept for the
            next open.
    """
    from zoo.data.sources import Source
    from zoo.types import Category

    files = [Path(f) for f in files]
    if report is not None:
        records = _scratch_index(kind, files, image_dir, origin, report)
    else:
        try:
            folder = ensure_index(kind, files, image_dir)
        except PermissionError:
            records = _scratch_index(kind, files, image_dir, origin, None)
        else:
            records = IndexedRecords(folder, origin, image_dir)
    meta = records.meta
    categories = [Category(**c) for c in meta["categories"]]
    attributes = {int(k): str(v) for k, v in meta["attributes"]}
    return Source(kind, path, categories, attributes, records, rle_base, dict(meta["skipped"]))


def index_imaterialist(folder: Path, *, rle_base: int, images: str | None = None, report: Any = None) -> Any:
    """:func:`zoo.data.sources.read_imaterialist` through the index: the same Source, records on access."""
    folder = Path(folder)
    csv_path = folder / "train.csv"
    return open_indexed("imaterialist", [csv_path, folder / "label_descriptions.json"], origin=csv_path,
                        image_dir=Path(images) if images else folder / "train", path=folder, rle_base=rle_base,
                        report=report)


def index_coco(path: Path, *, images: str | None = None, kind: str = "coco", report: Any = None) -> Any:
    """:func:`zoo.data.sources.read_coco` through the index: the same Source, records on access."""
    path = Path(path)
    return open_indexed(kind, [path], origin=path, image_dir=Path(images) if images else path.parent / "images",
                        path=path, rle_base=0, report=report)


def select_records(records: Sequence[ImageRecord], indices: Sequence[int] | None) -> Sequence[ImageRecord]:
    """``records`` at ``indices`` (all when None): a view of an index, or a list of plain records."""
    if isinstance(records, IndexedRecords):
        return records if indices is None else records.take(indices)
    return list(records) if indices is None else [records[i] for i in indices]


def record_names(records: Sequence[ImageRecord]) -> list[str]:
    """Each record's image name, read from the index's table when there is one."""
    return records.names() if isinstance(records, IndexedRecords) else [r.name for r in records]


def record_category_ids(records: Sequence[ImageRecord]) -> list[list[int]]:
    """Each record's instance category ids (crowd regions left out), without reading segmentations."""
    if isinstance(records, IndexedRecords):
        return [records.category_ids(i).tolist() for i in range(len(records))]
    return [[inst.category_id for inst in r.instances] for r in records]


def record_attribute_usage(records: Sequence[ImageRecord]) -> tuple[set[int], set[int]]:
    """``(category ids, attribute ids)`` of the records' instances that carry attributes (crowd
    regions left out), read from the index's tables when there is one."""
    if isinstance(records, IndexedRecords):
        return records.attribute_usage()
    carrying = [inst for r in records for inst in r.instances if inst.attributes]
    return {inst.category_id for inst in carrying}, {int(a) for inst in carrying for a in inst.attributes}
