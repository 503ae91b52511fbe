"""``zoo data check``: find every defect of a dataset, count it, show the first examples.

The checker runs the readers themselves (:mod:`zoo.data.sources`) with a report that collects
every defect instead of stopping at the first, then looks at what reading for training looks at
later: each photo (present, readable, its size and EXIF orientation against the annotation, 16-bit
pixels) and each iMaterialist mask's runs. The rules and their levels are those of
:mod:`zoo.data.validate`: an error here is what the readers refuse, a skip what they leave out and
count, a warning what they work around by a stated rule. Errors make ``zoo data check`` exit
non-zero.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from zoo.data.decode import photo_header
from zoo.data.rle import KAGGLE_RLE_BASE, coco_rle_runs
from zoo.data.sources import ImageRecord, read_source
from zoo.data.validate import ERROR, LEVELS, SKIP, kaggle_runs, photo_grid_problem
from zoo.errors import DataError

EXAMPLES = 3
LEVEL_NAMES = {ERROR: "error", SKIP: "skipped", "warning": "warning"}


class Findings:
    """Defect counts and their first examples; a report (:class:`zoo.data.validate.Report`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, example: str) -> None:
        if kind not in LEVELS:  # every kind has one level for check and the readers alike
            raise KeyError(f"defect kind {kind!r} has no level in zoo.data.validate.LEVELS")
        self.counts[kind] += 1
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)

    def total(self, level: str) -> int:
        return sum(c for k, c in self.counts.items() if LEVELS[k] == level)

    @property
    def errors(self) -> int:
        return self.total(ERROR)

    def print(self, console: Console, what: str) -> None:
        if not self.counts:
            console.print(f"[green]OK[/green] {what}: no problems found")
            return
        table = Table(title=f"problems in {what}")
        for col in ("defect", "level", "count"):
            table.add_column(col, no_wrap=True)
        table.add_column("first examples", overflow="fold")
        for kind, count in self.counts.most_common():
            table.add_row(kind, LEVEL_NAMES[LEVELS[kind]], str(count), "\n".join(self.examples[kind]))
        console.print(table)
        console.print(f"{self.errors} error(s), {self.total(SKIP)} skipped by the readers, "
                      f"{self.total('warning')} warning(s) in {what}")


def check_photo(findings: Findings, record: ImageRecord) -> None:
    """The photo of ``record``: present, readable, its size (upright) against the annotation's."""
    if not record.path.is_file():
        findings.add("missing image file", f"{record.name}: {record.path}")
        return
    try:
        header = photo_header(record.path)
    except DataError as err:
        findings.add("unreadable image", str(err))
        return
    if header.sixteen_bit:
        findings.add("16-bit image (scaled to 8 bits)", f"{record.path}: Pillow mode {header.mode}")
    problem = photo_grid_problem(record.name, (record.height, record.width), header.shown, header.stored)
    if problem:
        findings.add(*problem)


def check_masks(findings: Findings, record: ImageRecord, rle_base: int) -> None:
    """Each instance's runs (iMaterialist) or pixels (COCO RLE): what decoding would meet."""
    for inst in record.instances:
        if isinstance(inst.segmentation, str):
            kaggle_runs(inst.segmentation, base=rle_base, hw=(record.height, record.width), where=inst.where,
                        report=findings)
        elif isinstance(inst.segmentation, dict):  # its size and counts were checked by the reader
            (_, lengths), _, _ = coco_rle_runs(inst.segmentation, inst.where)
            if not lengths.any():
                findings.add("empty mask", f"{inst.where}: the RLE has no pixels")


def check_dataset(data: str | Path, *, images: str | None = None, rle_base: int = KAGGLE_RLE_BASE,
                  console: Console | None = None) -> int:
    """Check ``data`` (iMaterialist folder, COCO JSON or cache); print a report; return the error count.

    Every rule of :mod:`zoo.data.validate` is applied to every row: file entries (ids, sizes,
    categories, attributes, duplicates, image names), masks (polygons, RLE sizes and counts, runs),
    boxes and photos (missing, unreadable or too large, size and EXIF orientation, 16-bit). A file
    that cannot be read at all (not JSON, no ``images`` list, no CSV header) is a :class:`DataError`.
    """
    console = console or Console()
    path = Path(data).expanduser()
    findings = Findings()
    source = read_source(path, images=images, rle_base=rle_base, report=findings)
    for record in source.records:
        check_photo(findings, record)
        check_masks(findings, record, source.rle_base)
    findings.print(console, str(path))
    return findings.errors
