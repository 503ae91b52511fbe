"""Decode one image record at the training size: the JPEG near its target size (Pillow's draft
mode), every mask straight at that size (never a full-resolution mask when the target is smaller).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps
from pycocotools import mask as mask_util

from zoo.boxes import mask_boxes
from zoo.data.rle import KAGGLE_RLE_BASE, TargetGrid, coco_rle_runs, decode_runs_at_size, polygons_to_rle
from zoo.data.sources import ImageRecord
from zoo.data.validate import ERROR, LEVELS, StrictReport, kaggle_runs, photo_grid_problem, segmentation_problem
from zoo.errors import DataError


class DataWarning(UserWarning):
    """A defect the reader works around (e.g. Height/Width swapped in train.csv)."""


@dataclass(frozen=True)
class ResizeSpec:
    """How images are sized for training.

    * ``"max_side"``: keep the aspect ratio, longest side ``max_size``; images already smaller are
      **not** upscaled (upscaling adds no information and only costs compute), ``max_size=None``
      keeps the source size.
    * ``"square"`` (Matterport ``resize_image``): scale up so the short side is at least
      ``min_size`` (only if ``min_size`` > 0), then down so the long side is at most ``max_size``;
      zero-pad bottom/right to ``max_size x max_size``. Boxes stay valid because padding is at the end.
    """

    max_size: int | None = 1024
    mode: Literal["max_side", "square"] = "max_side"
    min_size: int = 0

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        """``(out_h, out_w)`` of the resized image, before any padding."""
        if self.max_size is None:
            return height, width
        if self.mode == "square":
            scale = max(1.0, self.min_size / min(height, width)) if self.min_size else 1.0
            if round(max(height, width) * scale) > self.max_size:
                scale = self.max_size / max(height, width)
        else:
            scale = min(1.0, self.max_size / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def canvas_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` of what the model receives (the padded square in ``"square"`` mode)."""
        if self.mode == "square" and self.max_size is not None:
            return self.max_size, self.max_size
        return self.scaled_size(height, width)


EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that turn the stored bitmap by 90 degrees
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PNG 16-bit greyscale opens as I;16 or I


@dataclass(frozen=True)
class PhotoHeader:
    """What a photo's header says: its size upright (``shown``, EXIF orientation applied), the size
    of its stored bitmap (``stored``), the EXIF orientation (1: none) and its Pillow mode."""

    shown: tuple[int, int]
    stored: tuple[int, int]
    orientation: int
    mode: str

    @property
    def sixteen_bit(self) -> bool:
        return self.mode in SIXTEEN_BIT_MODES


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError, struct.error):  # a broken EXIF block: read as untagged
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _open_error(path: Path, err: Exception) -> DataError:
    if isinstance(err, FileNotFoundError):
        return DataError(f"{path}: image file not found")
    return DataError(f"{path}: unreadable image ({err})")


def photo_header(path: Path) -> PhotoHeader:
    """The photo's :class:`PhotoHeader`, from the file header only (no pixel is decoded).

    Raises:
        DataError: missing or unreadable file, or a size over Pillow's decompression-bomb limit.
    """
    try:
        with Image.open(path) as img:
            orientation = _orientation(img)
            stored = (img.height, img.width)
            shown = stored[::-1] if orientation in QUARTER_TURNS else stored
            return PhotoHeader(shown, stored, orientation, img.mode)
    except (OSError, Image.DecompressionBombError) as err:
        raise _open_error(path, err) from None


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of the upright photo (EXIF orientation applied), from the header only."""
    return photo_header(path).shown


def to_rgb8(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB; 16-bit greyscale is scaled (65535 -> 255), not clipped to white."""
    if img.mode in SIXTEEN_BIT_MODES:
        values = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def load_image(path: Path, spec: ResizeSpec) -> tuple[np.ndarray, tuple[int, int]]:
    """The upright RGB image resized by ``spec`` (unpadded) as uint8 ``[h, w, 3]``, and its ``(H, W)``.

    Upright: the EXIF orientation is applied (``ImageOps.exif_transpose``), so the image, its size
    and every mask read on it are those of the photo as viewers and labelling tools show it.
    JPEGs are decoded with Pillow's draft mode: the DCT scales by 1/2, 1/4 or 1/8 while decoding,
    so a 6000x4000 photo read for a 1024 target never exists at full size.
    """
    try:
        with Image.open(path) as img:
            orientation = _orientation(img)
            quarter = orientation in QUARTER_TURNS
            src = (img.width, img.height) if quarter else (img.height, img.width)
            out_h, out_w = spec.scaled_size(*src)
            img.draft("RGB", (out_h, out_w) if quarter else (out_w, out_h))  # the stored bitmap's axes
            rgb = to_rgb8(ImageOps.exif_transpose(img) if orientation != 1 else img)
            if rgb.size != (out_w, out_h):
                rgb = rgb.resize((out_w, out_h), Image.BILINEAR)
            return np.asarray(rgb), src
    except (OSError, Image.DecompressionBombError) as err:
        raise _open_error(path, err) from None


def _decode_polygons(polygons: list, grid_h: int, grid_w: int, out_h: int, out_w: int, where: str) -> np.ndarray:
    problem = segmentation_problem(polygons, None)  # before pycocotools: a NaN crashes its rasteriser
    if problem:
        raise DataError(f"{where}: {problem[1]}")
    sx, sy = out_w / grid_w, out_h / grid_h
    scaled = [(np.asarray(poly, dtype=np.float64).reshape(-1, 2) * (sx, sy)).ravel().tolist() for poly in polygons]
    rle = polygons_to_rle(scaled, out_h, out_w)
    with warnings.catch_warnings():  # pycocotools' own numpy-2 deprecation notice, once per polygon
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode(rle)


def decode_segmentation(segmentation: Any, grid: tuple[int, int], out_hw: tuple[int, int], *,
                        rle_base: int, where: str, grids: dict) -> np.ndarray:
    """One instance's mask uint8 ``[out_h, out_w]`` from its source encoding.

    ``grid`` is the ``(H, W)`` the encoding is drawn on (a COCO RLE of another size is refused, not
    stretched); ``grids`` caches :class:`TargetGrid` objects so the masks of one image share their
    sampling positions. Defects are those of :mod:`zoo.data.validate`: errors raise
    :class:`DataError` naming ``where``.
    """
    out_h, out_w = out_hw
    if isinstance(segmentation, str):
        runs = kaggle_runs(segmentation, base=rle_base, hw=grid, where=where, report=StrictReport())
        starts, lengths = runs if runs is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        grid_h, grid_w = grid
    elif isinstance(segmentation, dict):
        # Also at the source size (a cache read at the size it was prepared at): pycocotools' C
        # decoder plus the row-major copy it needs is no faster from 512 px up (docs/benchmarks.md).
        problem = segmentation_problem(segmentation, grid)
        if problem:
            raise DataError(f"{where}: {problem[1]}")
        (starts, lengths), grid_h, grid_w = coco_rle_runs(segmentation, where)
    elif isinstance(segmentation, list):
        return _decode_polygons(segmentation, grid[0], grid[1], out_h, out_w, where)
    else:
        raise DataError(f"{where}: unsupported segmentation of type {type(segmentation).__name__}")
    key = (grid_h, grid_w, out_h, out_w)
    if key not in grids:
        grids[key] = TargetGrid(*key)
    return decode_runs_at_size(starts, lengths, grids[key])


def decode_masks(record: ImageRecord, out_h: int, out_w: int, source_hw: tuple[int, int], *,
                 rle_base: int = KAGGLE_RLE_BASE) -> np.ndarray:
    """All masks of ``record`` as uint8 ``[N, out_h, out_w]``, aligned with the image.

    ``source_hw`` is the upright photo's real ``(H, W)``. When the record's grid is that size
    transposed (a known iMaterialist defect) the masks are decoded transposed and turned back, with
    a :class:`DataWarning` naming the image; any other mismatch, or a grid that is the stored size
    of an EXIF-rotated photo, is refused (:func:`zoo.data.validate.photo_grid_problem`).
    """
    grid = (record.height, record.width)
    swapped = False
    if grid != source_hw:
        stored = photo_header(record.path).stored if grid == source_hw[::-1] else source_hw
        kind, detail = photo_grid_problem(record.name, grid, source_hw, stored)
        if LEVELS[kind] == ERROR:
            raise DataError(detail)
        swapped = True
        warnings.warn(detail, DataWarning, stacklevel=2)
    out_hw = (out_w, out_h) if swapped else (out_h, out_w)
    masks = np.zeros((len(record.instances), out_h, out_w), dtype=np.uint8)
    grids: dict = {}
    for i, inst in enumerate(record.instances):
        mask = decode_segmentation(inst.segmentation, grid, out_hw, rle_base=rle_base,
                                   where=inst.where, grids=grids)
        masks[i] = mask.T if swapped else mask
    return masks


def instance_arrays(record: ImageRecord, masks: np.ndarray, label_of: dict[int, int]) -> dict[str, Any]:
    """Labels, boxes and attributes of the non-empty masks (instances that vanish at the target
    size are dropped: an empty mask has no box and only teaches the model noise)."""
    keep = masks.reshape(masks.shape[0], -1).any(axis=1) if masks.shape[0] else np.zeros(0, bool)
    labels = []
    for inst in record.instances:
        if inst.category_id not in label_of:
            raise DataError(f"{inst.where}: unknown category id {inst.category_id}")
        labels.append(label_of[inst.category_id])
    kept = [i for i in range(len(record.instances)) if keep[i]]
    masks = masks[keep]
    return {
        "masks": masks,
        "boxes": mask_boxes(masks),
        "labels": np.asarray([labels[i] for i in kept], dtype=np.int64),
        "attributes": [list(record.instances[i].attributes) for i in kept],
        "dropped": len(record.instances) - len(kept),
    }

