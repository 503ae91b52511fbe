"""Decode one image record at the training size: the JPEG near its target size (Pillow's draft
mode), every mask straight at that size (never a full-resolution mask when the target is smaller).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_util

from zoo.boxes import mask_boxes
from zoo.data.rle import KAGGLE_RLE_BASE, TargetGrid, coco_rle_runs, decode_runs_at_size, parse_kaggle_rle
from zoo.data.sources import ImageRecord
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


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file header only."""
    try:
        with Image.open(path) as img:
            return img.height, img.width
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from None


def load_image(path: Path, spec: ResizeSpec) -> tuple[np.ndarray, tuple[int, int]]:
    """The RGB image resized by ``spec`` (unpadded) as uint8 ``[h, w, 3]``, and the source ``(H, W)``.

    JPEGs are decoded with Pillow's draft mode: the DCT scales by 1/2, 1/4 or 1/8 while decoding,
    so a 6000x4000 photo read for a 1024 target never exists at full size.
    """
    try:
        with Image.open(path) as img:
            src = (img.height, img.width)
            out_h, out_w = spec.scaled_size(*src)
            img.draft("RGB", (out_w, out_h))
            rgb = img.convert("RGB")
            if rgb.size != (out_w, out_h):
                rgb = rgb.resize((out_w, out_h), Image.BILINEAR)
            return np.asarray(rgb), src
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from None


def _decode_polygons(polygons: list, grid_h: int, grid_w: int, out_h: int, out_w: int, where: str) -> np.ndarray:
    sx, sy = out_w / grid_w, out_h / grid_h
    scaled = []
    for poly in polygons:
        coords = np.asarray(poly, dtype=np.float64)
        if coords.ndim != 1 or coords.size < 6 or coords.size % 2:
            raise DataError(f"{where}: a polygon needs an even number (>= 6) of coordinates")
        coords = coords.reshape(-1, 2) * (sx, sy)
        scaled.append(coords.ravel().tolist())
    rle = mask_util.merge(mask_util.frPyObjects(scaled, out_h, out_w))
    with warnings.catch_warnings():  # pycocotools' own numpy-2 deprecation notice, once per polygon
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_util.decode(rle)


def decode_segmentation(segmentation: Any, grid: tuple[int, int], out_hw: tuple[int, int], *,
                        rle_base: int, where: str, grids: dict) -> np.ndarray:
    """One instance's mask uint8 ``[out_h, out_w]`` from its source encoding.

    ``grid`` is the ``(H, W)`` the encoding is drawn on; ``grids`` caches :class:`TargetGrid` objects
    so the masks of one image share their sampling positions.
    """
    out_h, out_w = out_hw
    if isinstance(segmentation, str):
        starts, lengths = parse_kaggle_rle(segmentation, base=rle_base, where=where)
        grid_h, grid_w = grid
    elif isinstance(segmentation, dict):
        # Also at the source size (a cache read at the size it was prepared at): pycocotools' C
        # decoder plus the row-major copy it needs is no faster from 512 px up (docs/benchmarks.md).
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

    ``source_hw`` is the JPEG's real ``(H, W)``. When the record's grid is that size transposed
    (a known iMaterialist defect) the masks are decoded transposed and turned back, with a
    :class:`DataWarning` naming the image; any other mismatch stretches the grid onto the image.
    """
    grid = (record.height, record.width)
    swapped = grid != source_hw and grid == source_hw[::-1]
    if grid != source_hw:
        what = "are swapped relative to" if swapped else "differ from"
        warnings.warn(f"{record.name}: annotation Height/Width {grid[0]}x{grid[1]} {what} the image "
                      f"({source_hw[0]}x{source_hw[1]}); masks {'transposed' if swapped else 'stretched'}",
                      DataWarning, stacklevel=2)
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

