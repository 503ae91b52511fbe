"""One set of rules for what a dataset may hold, shared by the readers and ``zoo data check``.

Every defect has a *kind* (the name ``zoo data check`` prints) and one *level*, the same for the
readers and for ``check``:

* ``error``: the readers refuse the dataset with a :class:`~zoo.errors.DataError` naming the file
  and the row or key; ``check`` counts an error (and exits non-zero);
* ``skip``: the readers leave the row out and count it (the count is printed by ``zoo data
  export``, ``zoo data prepare`` and training); ``check`` lists it as skipped;
* ``warning``: the readers work around it by a stated rule (Height/Width swapped relative to the
  photo: masks transposed; unsorted or overlapping runs: read as their union; 16-bit images:
  scaled to 8 bits) and ``check`` lists it as a warning.

A reader hands every defect it meets to a *report*: :class:`StrictReport` (raise on the first
error, count skips) when reading for use, or ``check``'s table, which collects them all. So what
``check`` calls an error is exactly what the readers refuse.

Values are checked before they reach pycocotools: a NaN or string polygon coordinate crashes its
rasteriser (a segfault, not an exception).
"""

from __future__ import annotations

import math
import re
from typing import Any, Protocol

import numpy as np

from zoo.data.rle import Runs, coco_rle_runs, parse_kaggle_rle, run_problems
from zoo.errors import DataError

ERROR, SKIP, WARNING = "error", "skip", "warning"

LEVELS: dict[str, str] = {
    # the file and its entries
    "no images": ERROR,
    "bad image entry": ERROR,
    "duplicate image id": ERROR,
    "bad category": ERROR,
    "duplicate category id": ERROR,
    "bad annotation": ERROR,
    "unknown image_id": ERROR,
    "duplicate annotation id": ERROR,
    "unknown category": ERROR,
    "unknown attribute": ERROR,
    "bad Height/Width": ERROR,
    "inconsistent image size": ERROR,
    "bad ClassId": ERROR,
    "image name escapes the image folder": ERROR,
    # masks and boxes
    "bad polygon": ERROR,
    "empty segmentation": ERROR,
    "bad segmentation": ERROR,
    "bad RLE": ERROR,
    "bad bbox": ERROR,
    "odd number of values": ERROR,
    "malformed EncodedPixels": ERROR,
    "non-positive run length": ERROR,
    "run out of bounds": ERROR,
    # the photos
    "missing image file": ERROR,
    "unreadable image": ERROR,
    "size mismatch": ERROR,
    "annotation in the stored orientation of an EXIF-rotated photo": ERROR,
    # left out, counted
    "duplicate row": SKIP,
    "crowd annotation": SKIP,
    "empty mask": SKIP,
    # worked around by a stated rule
    "Height/Width swapped (masks transposed)": WARNING,
    "unsorted runs": WARNING,
    "overlapping runs": WARNING,
    "16-bit image (scaled to 8 bits)": WARNING,
}

# What the readers do with a skipped kind, in the printed count ("2 duplicate rows left out").
SKIP_NOTES = {
    "duplicate row": "left out (same image, mask and class as an earlier one)",
    "crowd annotation": "not trained on (kept as evaluation ignore regions)",
    "empty mask": "left out (no pixels)",
}


class Report(Protocol):
    """Where a reader sends each defect: ``add(kind, message)``, ``message`` naming file and row."""

    def add(self, kind: str, message: str) -> None: ...


class StrictReport:
    """The readers' report: raise :class:`DataError` on an error, count skips, let warnings pass."""

    def __init__(self) -> None:
        self.skipped: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        level = LEVELS[kind]
        if level == ERROR:
            raise DataError(message)
        if level == SKIP:
            self.skipped[kind] = self.skipped.get(kind, 0) + 1


def describe_skips(skipped: dict[str, int]) -> str:
    """``"skipped: 2 duplicate row(s) left out (...); 1 crowd annotation(s) ..."``, or ``""``."""
    parts = [f"{n} {kind}(s) {SKIP_NOTES.get(kind, 'skipped')}" for kind, n in skipped.items() if n]
    return "skipped: " + "; ".join(parts) if parts else ""


# ---------------------------------------------------------------- values
def as_int(value: Any) -> int | None:
    """An integer written as a JSON number or a decimal string; None for anything else (bools,
    fractions, NaN, lists)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value.strip())
    return None


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that a C double holds finitely (not NaN, not infinite)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond a double's range
        return False


def image_size_of(height: Any, width: Any) -> tuple[int, int] | None:
    """``(height, width)`` when both are integers >= 1, else None."""
    h, w = as_int(height), as_int(width)
    return (h, w) if h is not None and w is not None and h >= 1 and w >= 1 else None


# ---------------------------------------------------------------- segmentations and boxes
def polygon_problem(polygons: Any) -> str | None:
    """What is wrong with a COCO polygon list ``[[x0, y0, x1, y1, ...], ...]`` (None: valid)."""
    if not isinstance(polygons, list):
        return f"a polygon list must be a list, got {type(polygons).__name__}"
    for k, poly in enumerate(polygons):
        if not isinstance(poly, (list, tuple)):
            return f"polygon {k} is a {type(poly).__name__}, not a list of coordinates"
        if len(poly) < 6 or len(poly) % 2:
            return f"polygon {k} has {len(poly)} coordinates; a polygon needs an even number (>= 6)"
        if _finite_sum(poly):
            continue  # the common case, checked in C (a large file holds millions of coordinates)
        bad = [v for v in poly if not is_finite_number(v)]
        if bad:
            return f"polygon {k} holds {bad[0]!r}, not a finite number"
    return None


def _finite_sum(values: list | tuple) -> bool:
    """True when ``values`` are numbers whose sum is finite: no string, None, NaN or infinity (one
    pass in C; a False is followed by the per-value check that names the culprit)."""
    try:
        return math.isfinite(sum(values, 0.0))
    except (TypeError, OverflowError):
        return False


def segmentation_key(seg: Any) -> Any:
    """A hashable form of a valid segmentation: two annotations with equal keys draw the same mask."""
    if isinstance(seg, list):
        return tuple(tuple(poly) for poly in seg)
    counts = seg.get("counts")
    return tuple(seg.get("size")), counts if isinstance(counts, str) else tuple(counts)


def rle_problem(rle: dict, hw: tuple[int, int] | None) -> tuple[str, str] | None:
    """``(kind, detail)`` of what is wrong with a COCO RLE on an image of ``hw`` (None: valid).

    Checked: ``size`` two integers >= 1 that equal the image's (a mask of another size is refused,
    never stretched), ``counts`` non-negative integers (a list, or pycocotools' compressed string)
    covering exactly ``height * width`` pixels (pycocotools would read or write past its buffer).
    """
    size = rle.get("size")
    dims = image_size_of(*size) if isinstance(size, (list, tuple)) and len(size) == 2 else None
    if dims is None:
        return "bad RLE", f"RLE 'size' must be [height, width], got {size!r}"
    if hw is not None and dims != tuple(hw):
        return "size mismatch", f"RLE size {dims[0]}x{dims[1]} differs from its image's {hw[0]}x{hw[1]}"
    try:
        coco_rle_runs(rle)
    except DataError as err:
        return "bad RLE", str(err).removeprefix("segmentation: ")
    return None


def segmentation_problem(seg: Any, hw: tuple[int, int] | None) -> tuple[str, str] | None:
    """``(kind, detail)`` of what is wrong with a COCO ``segmentation`` (None: valid)."""
    if isinstance(seg, list):
        if not seg:
            return "empty segmentation", "segmentation is an empty list (no polygon)"
        problem = polygon_problem(seg)
        return ("bad polygon", problem) if problem else None
    if isinstance(seg, dict):
        return rle_problem(seg, hw)
    return "bad segmentation", f"segmentation must be a polygon list or an RLE object, got {type(seg).__name__}"


def bbox_problem(bbox: Any) -> str | None:
    """What is wrong with a COCO ``bbox`` ``[x, y, width, height]`` (None: valid)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not _finite_sum(bbox):
        return f"bbox must be 4 finite numbers [x, y, width, height], got {bbox!r}"
    if bbox[2] < 0 or bbox[3] < 0:
        return f"bbox {list(bbox)} has a negative width or height"
    return None


def kaggle_runs(text: str, *, base: int, hw: tuple[int, int], where: str, report: Report) -> Runs | None:
    """Parse an iMaterialist ``EncodedPixels`` on an image of ``hw`` and report its defects; None
    when it cannot be read (an error: :class:`StrictReport` has raised already)."""
    try:
        starts, lengths = parse_kaggle_rle(text, base=base, where=where)
    except DataError as err:
        report.add("odd number of values" if "odd number" in str(err) else "malformed EncodedPixels", str(err))
        return None
    broken = False
    for kind in run_problems(starts, lengths, *hw):
        report.add(kind, f"{where}: {kind} in EncodedPixels on a {hw[0]}x{hw[1]} image")
        broken |= LEVELS[kind] == ERROR
    return None if broken else (starts, lengths)


# ---------------------------------------------------------------- photos
def photo_grid_problem(name: str, grid: tuple[int, int], shown: tuple[int, int],
                       stored: tuple[int, int]) -> tuple[str, str] | None:
    """``(kind, detail)`` when an annotation's ``grid`` (H, W) does not fit its photo (None: fits).

    ``shown`` is the photo's size upright (its EXIF orientation applied), ``stored`` the size of
    its pixel rows as stored. Annotations are read on the upright photo, as labelling tools show
    it; one whose size is that of a quarter-turned stored bitmap cannot be told from a swap, so it
    is refused rather than transposed.
    """
    if grid == shown:
        return None
    if grid == stored and stored != shown:
        return ("annotation in the stored orientation of an EXIF-rotated photo",
                f"{name}: annotation Height/Width {grid[0]}x{grid[1]} are the photo's stored orientation, but "
                f"its EXIF orientation turns it to {shown[0]}x{shown[1]}; zoo reads photos upright (EXIF "
                f"applied, as labelling tools show them): annotate the upright photo, or drop the EXIF "
                f"orientation tag if the annotation was drawn on the stored pixels")
    if grid == shown[::-1]:
        return ("Height/Width swapped (masks transposed)",
                f"{name}: annotation Height/Width {grid[0]}x{grid[1]} are swapped relative to the image "
                f"({shown[0]}x{shown[1]}); masks are read transposed")
    return "size mismatch", f"{name}: annotation {grid[0]}x{grid[1]} vs image {shown[0]}x{shown[1]}"


# ---------------------------------------------------------------- results files
def result_row_problem(row: Any, sizes: dict[Any, tuple[int, int] | None]) -> str | None:
    """What is wrong with one COCO results row (None: valid); ``sizes``: image id -> (H, W).

    Every row needs its ``segmentation``: ``zoo eval`` scores masks (and boxes), and a row
    without one cannot be scored for masks.
    """
    if not isinstance(row, dict):
        return f"is a {type(row).__name__}, not an object"
    missing = [k for k in ("image_id", "category_id", "score", "segmentation") if k not in row]
    if missing:
        return f"lacks {', '.join(missing)}" + (" (zoo eval scores masks)" if "segmentation" in missing else "")
    if not is_finite_number(row["score"]):
        return f"score {row['score']!r} is not a finite number"
    problem = segmentation_problem(row["segmentation"], sizes.get(row["image_id"]))
    if problem:
        return problem[1]
    return bbox_problem(row["bbox"]) if "bbox" in row else None


def check_result_rows(rows: Any, gt: dict[str, Any], source: str) -> None:
    """Raise :class:`DataError` naming ``source`` and the row for the first malformed results row."""
    if not isinstance(rows, list):
        return  # the evaluator's own check names what it expected
    sizes = {img.get("id"): image_size_of(img.get("height"), img.get("width"))
             for img in gt.get("images", []) if isinstance(img, dict)}
    for i, row in enumerate(rows):
        problem = result_row_problem(row, sizes)
        if problem:
            raise DataError(f"{source}: row {i} {problem}")


def check_coco_annotations(data: Any, source: str) -> None:
    """Raise :class:`DataError` for the first COCO annotation whose segmentation or bbox is malformed
    (what must be refused before pycocotools rasterises it)."""
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        return  # the evaluator's own check names the missing lists
    sizes = {img.get("id"): image_size_of(img.get("height"), img.get("width"))
             for img in data.get("images", []) or [] if isinstance(img, dict)}
    for i, ann in enumerate(data["annotations"]):
        where = f"{source}: annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataError(f"{where} is a {type(ann).__name__}, not an object")
        problem = segmentation_problem(ann["segmentation"], sizes.get(ann.get("image_id"))) \
            if "segmentation" in ann else None
        detail = problem[1] if problem else (bbox_problem(ann["bbox"]) if "bbox" in ann else None)
        if detail:
            raise DataError(f"{where} (id {ann.get('id', '?')}): {detail}")
