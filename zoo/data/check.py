"""``zoo data check``: find every defect of a dataset, count it, show the first examples.

Unlike the reader (which stops at the first malformed row), the checker reads everything and
reports all problems at once. Errors make ``zoo data check`` exit non-zero; warnings are defects
the reader works around (Height/Width swapped relative to the JPEG: masks are transposed).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from zoo.data.decode import image_size
from zoo.data.rle import KAGGLE_RLE_BASE, coco_rle_runs, parse_kaggle_rle, run_problems
from zoo.data.sources import (CACHE_ANNOTATIONS, CACHE_MANIFEST, parse_class_id, read_json, read_label_descriptions,
                              read_train_csv, safe_image_path)
from zoo.errors import DataError

EXAMPLES = 3


class Findings:
    """Defect counts and their first examples."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.warning_kinds: set[str] = set()

    def add(self, kind: str, example: str, *, warning: bool = False) -> None:
        self.counts[kind] += 1
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < EXAMPLES:
            self.examples[kind].append(example)
        if warning:
            self.warning_kinds.add(kind)

    @property
    def errors(self) -> int:
        return sum(c for k, c in self.counts.items() if k not in self.warning_kinds)

    def print(self, console: Console, what: str) -> None:
        if not self.counts:
            console.print(f"[green]OK[/green] {what}: no problems found")
            return
        table = Table(title=f"problems in {what}")
        for col in ("defect", "level", "count", "first examples"):
            table.add_column(col, overflow="fold")
        for kind, count in self.counts.most_common():
            level = "warning" if kind in self.warning_kinds else "error"
            table.add_row(kind, level, str(count), "\n".join(self.examples[kind]))
        console.print(table)
        console.print(f"{self.errors} error(s), {sum(self.counts.values()) - self.errors} warning(s) in {what}")


def _check_image(findings: Findings, folder: Path, name: str, hw: tuple[int, int], where: str,
                 sizes: dict[str, tuple[int, int] | None]) -> None:
    """Image name, file presence and size against the annotation's ``(H, W)``; once per image."""
    if name in sizes:
        return
    sizes[name] = None
    try:
        path = safe_image_path(folder, name, where)
    except DataError:
        findings.add("image name escapes the image folder", f"{where}: {name!r}")
        return
    if not path.is_file():
        findings.add("missing image file", f"{where}: {path}")
        return
    try:
        actual = sizes[name] = image_size(path)
    except DataError as err:
        findings.add("unreadable image", str(err))
        return
    if actual != hw:
        if actual == hw[::-1]:
            findings.add("Height/Width swapped (masks transposed)", f"{name}: {hw[0]}x{hw[1]} vs JPEG "
                         f"{actual[0]}x{actual[1]}", warning=True)
        else:
            findings.add("size mismatch", f"{name}: annotation {hw[0]}x{hw[1]} vs image {actual[0]}x{actual[1]}")


def _check_csv_row(findings: Findings, row: tuple, where: str, known: tuple[set[int], set[int]], base: int,
                   image_dir: Path, sizes: dict, first_size: dict[str, tuple[int, int]]) -> None:
    name, rle, height, width, class_id = row
    try:
        hw = int(height), int(width)
        if min(hw) < 1:
            raise ValueError
    except ValueError:
        findings.add("bad Height/Width", f"{where}: {height!r}x{width!r}")
        return
    if first_size.setdefault(name, hw) != hw:
        findings.add("inconsistent image size", f"{where}: {name} is {first_size[name]} in an earlier row, {hw} here")
    _check_image(findings, image_dir, name, hw, where, sizes)
    if not rle.strip() and not class_id.strip():
        return  # an image listed without masks
    try:
        category, attributes = parse_class_id(class_id, where)
        if category not in known[0]:
            findings.add("unknown category", f"{where}: ClassId {class_id!r}")
        for attribute in attributes:
            if attribute not in known[1]:
                findings.add("unknown attribute", f"{where}: ClassId {class_id!r} (attribute {attribute})")
    except DataError:
        findings.add("bad ClassId", f"{where}: {class_id!r}")
    try:
        starts, lengths = parse_kaggle_rle(rle, base=base, where=where)
    except DataError as err:
        kind = "odd number of values" if "odd number" in str(err) else "malformed EncodedPixels"
        findings.add(kind, str(err))
        return
    for problem in run_problems(starts, lengths, *hw):
        findings.add(problem, f"{where}: {name}")


def check_imaterialist(folder: Path, findings: Findings, *, images: str | None = None,
                       rle_base: int = KAGGLE_RLE_BASE) -> None:
    categories, attributes = read_label_descriptions(folder / "label_descriptions.json")
    known = ({c.id for c in categories}, set(attributes))
    frame = read_train_csv(folder / "train.csv")
    image_dir = Path(images) if images else folder / "train"
    sizes: dict = {}
    first_size: dict[str, tuple[int, int]] = {}
    duplicated = frame.duplicated(subset=["ImageId", "EncodedPixels"], keep="first")
    rows = frame[["ImageId", "EncodedPixels", "Height", "Width", "ClassId"]].itertuples(index=False, name=None)
    for i, row in enumerate(rows):
        where = f"train.csv row {i + 2}"
        if duplicated.iloc[i] and row[1].strip():
            findings.add("duplicate row", f"{where}: {row[0]} (same ImageId and EncodedPixels as an earlier row)")
        _check_csv_row(findings, row, where, known, rle_base, image_dir, sizes, first_size)


def _check_segmentation(findings: Findings, seg: object, hw: tuple[int, int], where: str) -> None:
    if isinstance(seg, list):
        if not seg or any(not isinstance(p, list) or len(p) < 6 or len(p) % 2 for p in seg):
            findings.add("bad polygon", f"{where}: a polygon needs an even number (>= 6) of coordinates")
        return
    if not isinstance(seg, dict):
        findings.add("bad segmentation", f"{where}: {type(seg).__name__}")
        return
    try:
        (starts, lengths), h, w = coco_rle_runs(seg, where)
    except (DataError, ValueError, IndexError) as err:
        findings.add("bad RLE", f"{where}: {err}")
        return
    if (h, w) != hw:
        findings.add("size mismatch", f"{where}: RLE size {h}x{w} vs image {hw[0]}x{hw[1]}")
    problems = run_problems(starts, lengths, h, w)
    if "empty mask" in problems:
        findings.add("empty mask", where)
    if "run out of bounds" in problems:
        findings.add("run out of bounds", f"{where}: counts exceed {h}x{w}")


def check_coco(path: Path, findings: Findings, *, images: str | None = None) -> None:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f"{path}: not a COCO instance file (no 'images' list)")
    image_dir = Path(images) if images else path.parent / "images"
    categories = {c.get("id") for c in data.get("categories", [])}
    attributes = {a.get("id") for a in data.get("attributes", []) or []}
    by_id: dict = {}
    sizes: dict = {}
    for i, image in enumerate(data["images"]):
        where = f"images[{i}]"
        if image.get("id") in by_id:
            findings.add("duplicate image id", f"{where}: id {image.get('id')}")
        hw = (image.get("height"), image.get("width"))
        by_id[image.get("id")] = hw
        _check_image(findings, image_dir, str(image.get("file_name", "")), hw, where, sizes)
    seen_ids, seen_segs = set(), set()
    for i, ann in enumerate(data.get("annotations", [])):
        where = f"annotations[{i}] (id {ann.get('id')})"
        if ann.get("id") in seen_ids:
            findings.add("duplicate annotation id", where)
        seen_ids.add(ann.get("id"))
        key = (ann.get("image_id"), str(ann.get("segmentation")))
        if key in seen_segs:
            findings.add("duplicate row", f"{where}: same image and segmentation as an earlier annotation")
        seen_segs.add(key)
        if ann.get("image_id") not in by_id:
            findings.add("unknown image_id", f"{where}: image_id {ann.get('image_id')!r}")
            continue
        if ann.get("category_id") not in categories:
            findings.add("unknown category", f"{where}: category_id {ann.get('category_id')!r}")
        if attributes and any(a not in attributes for a in ann.get("attribute_ids", []) or []):
            findings.add("unknown attribute", f"{where}: attribute_ids {ann.get('attribute_ids')}")
        _check_segmentation(findings, ann.get("segmentation"), by_id[ann["image_id"]], where)


def check_dataset(data: str | Path, *, images: str | None = None, rle_base: int = KAGGLE_RLE_BASE,
                  console: Console | None = None) -> int:
    """Check ``data`` (iMaterialist folder, COCO JSON or cache); print a report; return the error count.

    Found: missing or unreadable image files, size mismatch (swapped Height/Width is a warning), runs
    out of bounds, unsorted or overlapping runs, odd number of values, malformed values, unknown
    category or attribute, empty mask, duplicate rows, image names that escape the image folder,
    and for COCO files bad polygons/RLEs, unknown image ids and duplicate ids.
    """
    console = console or Console()
    path = Path(data).expanduser()
    findings = Findings()
    if path.is_file() and path.suffix.lower() == ".json":
        check_coco(path, findings, images=images)
    elif path.is_dir() and (path / CACHE_MANIFEST).is_file():
        check_coco(path / CACHE_ANNOTATIONS, findings, images=images or str(path / "images"))
    elif path.is_dir() and (path / "train.csv").is_file():
        check_imaterialist(path, findings, images=images, rle_base=rle_base)
    elif not path.exists():
        raise DataError(f"{path}: no such file or folder")
    else:
        raise DataError(f"{path}: not a dataset (expected an iMaterialist folder with train.csv or a COCO .json)")
    findings.print(console, str(path))
    return findings.errors
