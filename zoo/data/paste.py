"""Masks predicted at the network input, pasted at a photo's own size straight into COCO RLE.

The reverse of :func:`zoo.data.rle.decode_runs_at_size`. A mask (or probability map) ``[h, w]`` is
enlarged with bilinear interpolation (``align_corners=False``, the rule of torch's
``F.interpolate`` and of torchvision's ``paste_masks_in_image``) and thresholded, but the
``height x width`` result is never built: it is written as runs, column by column.

Why this is cheap: the interpolated value inside a source *cell* (the square between four
neighbouring source pixel centres) lies between its four corner values. A cell whose corners are
all above the threshold is entirely inside the mask, one whose corners are all at or below it
entirely outside; only the *mixed* cells along the boundary need the interpolation, pixel by
pixel. So the cost grows with the output runs (columns x boundary crossings) and the boundary's
length, and memory stays flat in the photo's size: 100 instances of a 6000x4000 photo never
allocate 100 x 24 MB of dense masks (``docs/benchmarks.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.data.rle import empty_coco_rle, runs_to_coco_rle


def bilinear_samples(src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``dst`` output pixels along one axis: the lower source index ``i0`` (int64, in
    ``[0, max(src - 2, 0)]``) and the weight float64 in ``[0, 1]`` of source pixel ``i0 + 1``.

    Pixel-centre aligned: output pixel ``i`` sits at source coordinate ``(i + 0.5) * src / dst - 0.5``,
    clamped to ``[0, src - 1]`` (torch's ``align_corners=False``).
    """
    pos = np.clip((np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5, 0.0, src - 1.0)
    low = np.minimum(np.floor(pos).astype(np.int64), max(src - 2, 0))
    return low, pos - low


def _cell_range(present: np.ndarray, last_cell: int) -> tuple[int, int]:
    """First and last cell index (inclusive) whose corners include a present source index."""
    hits = np.flatnonzero(present)
    return max(int(hits[0]) - 1, 0), min(int(hits[-1]), last_cell)


def _expand(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, value)`` for every integer in each ``[starts[k], ends[k])``: int64 arrays."""
    sizes = ends - starts
    owner = np.repeat(np.arange(sizes.size), sizes)
    offset = np.arange(owner.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return owner, starts[owner] + offset


class _Cells:
    """The source cells a mask touches, and the output rows and columns each cell covers.

    A cell ``(k, j)`` has the corners ``p[k:k + 2, j:j + 2]`` (the source map cropped to the cells
    the mask touches, as float64); ``y0[k]:y0[k + 1]`` are its output rows and ``x0[j]:x0[j + 1]``
    its output columns.
    """

    def __init__(self, source: np.ndarray, above: np.ndarray, height: int, width: int) -> None:
        h, w = source.shape
        self.row_low, self.row_weight = bilinear_samples(h, height)
        self.col_low, self.col_weight = bilinear_samples(w, width)
        r_lo, r_hi = _cell_range(above.any(1), max(h - 2, 0))
        c_lo, c_hi = _cell_range(above.any(0), max(w - 2, 0))
        rows = np.minimum(np.arange(r_lo, r_hi + 2), h - 1)  # a single row or column is its own
        cols = np.minimum(np.arange(c_lo, c_hi + 2), w - 1)  # neighbour (torch clamps the same way)
        self.p = source[rows[:, None], cols[None, :]].astype(np.float64)
        a = above[rows[:, None], cols[None, :]]
        corners = (a[:-1, :-1], a[1:, :-1], a[:-1, 1:], a[1:, 1:])
        self.full = corners[0] & corners[1] & corners[2] & corners[3]  # [cell rows, cell columns]
        self.mixed = (corners[0] | corners[1] | corners[2] | corners[3]) & ~self.full
        self.y0 = np.searchsorted(self.row_low, np.arange(r_lo, r_hi + 2))
        self.x0 = np.searchsorted(self.col_low, np.arange(c_lo, c_hi + 2))


def _full_runs(cells: _Cells, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Output runs (column-major flat starts, lengths) of the cells entirely inside the mask."""
    n_rows, n_cols = cells.full.shape
    padded = np.zeros((n_cols, n_rows + 2), dtype=np.int8)
    padded[:, 1:-1] = cells.full.T
    edges = np.diff(padded, axis=1)
    col, first = np.nonzero(edges == 1)  # row-major order: by cell column, then cell row
    _, stop = np.nonzero(edges == -1)
    owner, x = _expand(cells.x0[col], cells.x0[col + 1])
    top, bottom = cells.y0[first][owner], cells.y0[stop][owner]
    return x * height + top, bottom - top


def _mixed_runs(cells: _Cells, height: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Output runs of the boundary cells: every output pixel of a mixed cell is interpolated from
    the cell's four corners (first along x, once per output column, then along y)."""
    k, j = np.nonzero(cells.mixed)
    owner, x = _expand(cells.x0[j], cells.x0[j + 1])  # one segment per (cell, output column)
    k, j = k[owner], j[owner]
    wx, p = cells.col_weight[x], cells.p
    top = (1.0 - wx) * p[k, j] + wx * p[k, j + 1]
    bottom = (1.0 - wx) * p[k + 1, j] + wx * p[k + 1, j + 1]
    segment, y = _expand(cells.y0[k], cells.y0[k + 1])
    wy = cells.row_weight[y]
    inside = (1.0 - wy) * top[segment] + wy * bottom[segment] > threshold
    flat = x[segment] * height + y
    # Consecutive inside pixels of one output column form one run.
    begins = inside & ~(np.concatenate(([False], inside[:-1])) & (np.diff(flat, prepend=-2) == 1))
    run = np.cumsum(begins) - 1
    return flat[begins], np.bincount(run[inside], minlength=int(begins.sum())).astype(np.int64)


def paste_rle(mask: np.ndarray, height: int, width: int, threshold: float = 0.5) -> dict[str, Any]:
    """A mask or probability map ``[h, w]`` enlarged (or shrunk) to ``height x width``, as COCO RLE.

    Args:
        mask: bool, 0/1 or float probabilities ``[h, w]`` (the unpadded network-input region).
        height, width: the output size in pixels (the photo's own size).
        threshold: output pixels whose interpolated value exceeds it are inside.
    Returns:
        Compressed COCO RLE ``{"size": [height, width], "counts": str}``: the same pixels as
        ``F.interpolate(mask, (height, width), mode="bilinear") > threshold`` computed in float64.
    """
    source = np.asarray(mask)
    if source.ndim != 2 or source.size == 0:
        raise ValueError(f"paste_rle expects a mask [h, w], got shape {source.shape}")
    above = source > threshold
    if not above.any():
        return empty_coco_rle(height, width)
    cells = _Cells(source, above, height, width)
    full_starts, full_lengths = _full_runs(cells, height)
    edge_starts, edge_lengths = _mixed_runs(cells, height, threshold)
    return runs_to_coco_rle(np.concatenate([full_starts, edge_starts]),
                            np.concatenate([full_lengths, edge_lengths]), height, width)


def paste_rles(masks: np.ndarray, height: int, width: int, threshold: float = 0.5) -> list[dict[str, Any]]:
    """:func:`paste_rle` of each mask in ``masks`` ``[N, h, w]``, one instance at a time."""
    return [paste_rle(m, height, width, threshold) for m in masks]
