"""Run-length encodings, decoded straight at the size training needs.

Two encodings describe the same thing, a binary mask flattened **column-major** (top to bottom,
then left to right):

* **Kaggle / iMaterialist**: ``"start length start length ..."``. Starts are ``base``-based and
  :data:`KAGGLE_RLE_BASE` (1) is the default everywhere, for reading and for writing:

  - the competition's evaluation text says pixels are one-indexed and numbered from top to
    bottom, then left to right;
  - the winning 2019 solution decodes with ``starts -= 1`` and encodes with ``+ 1``
    (amirassov/kaggle-imaterialist, ``src/rle.py``);
  - on real 2019 photos, masks that reach the right border stop at column ``W - 2`` and never fill
    ``W - 1``; read 0-based, the same masks do reach the last row ``H - 1``, an asymmetry that
    disappears read 1-based (vertical boundary-to-edge offset less the horizontal one, over 9
    photos: +0.28 px read 1-based, -0.72 px read 0-based).

  ``--rle-base 0`` (``data.rle_base: 0``) reads a file written 0-based.
* **COCO**: ``counts`` alternating zeros and ones, starting with zeros; a list (uncompressed) or
  pycocotools' LEB128-like string (compressed).

Both are turned into ``(starts, lengths)`` arrays (0-based) and decoded by
:func:`decode_runs_at_size`, whose cost grows with the output size and the number of runs, never
with the source resolution: a 10717x6824 mask read at 1024 px never exists at full size.
"""

from __future__ import annotations

import warnings

import numpy as np
from pycocotools import mask as mask_util

from zoo.errors import DataError

Runs = tuple[np.ndarray, np.ndarray]  # (starts int64 [R], lengths int64 [R]), 0-based starts
KAGGLE_RLE_BASE = 1  # iMaterialist EncodedPixels starts are 1-based (see the module docstring)


def parse_kaggle_rle(text: str, *, base: int = KAGGLE_RLE_BASE, where: str = "EncodedPixels") -> Runs:
    """Parse ``"start length ..."`` into 0-based ``(starts, lengths)`` int64 ``[R]``.

    Raises:
        DataError: odd number of values or a value that is not an integer (``where`` names the row).
    """
    text = text.strip()
    if not text:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        # np.fromstring's C parser is ~10x faster than split(); it warns (or raises) on junk.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise DataError(f"{where}: EncodedPixels holds a value that is not an integer") from None
    if values.size % 2:
        raise DataError(f"{where}: EncodedPixels has an odd number of values ({values.size})")
    return values[0::2] - base, values[1::2].copy()


def run_problems(starts: np.ndarray, lengths: np.ndarray, height: int, width: int) -> list[str]:
    """Defects of 0-based runs over a ``height x width`` image (empty list: valid).

    Checked: empty mask, negative/zero lengths, runs out of bounds, unsorted runs, overlapping runs.
    """
    problems = []
    if starts.size == 0 or int(lengths.clip(min=0).sum()) == 0:
        problems.append("empty mask")
    if (lengths <= 0).any():
        problems.append("non-positive run length")
    pixels = height * width  # starts and lengths are bounded first, so their sum cannot overflow
    if (starts < 0).any() or (starts >= pixels).any() or (lengths > pixels).any() or \
            (starts + lengths > pixels).any():
        problems.append("run out of bounds")
    if (np.diff(starts) < 0).any():
        problems.append("unsorted runs")
    elif starts.size > 1 and (starts[1:] < (starts + lengths)[:-1]).any():
        problems.append("overlapping runs")
    return problems


def encode_kaggle_rle(mask: np.ndarray, *, base: int = KAGGLE_RLE_BASE) -> str:
    """Encode a mask ``[H, W]`` (bool or 0/1) as Kaggle column-major ``"start length ..."``."""
    flat = np.asarray(mask, dtype=bool).T.ravel()
    padded = np.concatenate(([False], flat, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.stack([starts + base, ends - starts], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))


def decode_runs_full(starts: np.ndarray, lengths: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference decoder: the full-resolution mask uint8 ``[height, width]`` (tests, benchmarks)."""
    flat = np.zeros(height * width, dtype=np.uint8)
    for start, length in zip(starts.tolist(), lengths.tolist()):
        flat[max(start, 0):max(start + length, 0)] = 1
    return flat.reshape(width, height).T.copy()


def sample_indices(src_len: int, dst_len: int) -> np.ndarray:
    """Source index of each output pixel for nearest resizing, pixel-centre aligned.

    ``floor((i + 0.5) * src / dst)``: the same rule as torch's ``nearest-exact`` and PIL's
    ``NEAREST``, so masks stay aligned with images resized by area-based filters.
    """
    idx = np.floor((np.arange(dst_len) + 0.5) * (src_len / dst_len)).astype(np.int64)
    return np.minimum(idx, src_len - 1)


class TargetGrid:
    """Where each output pixel samples the source, in source column-major flat indices.

    Built once per image and shared by all its masks. ``positions`` int64 ``[Cu * out_h]`` is sorted
    (unique source columns ``Cu``, output rows), so a run maps to a contiguous slice of it.
    """

    def __init__(self, height: int, width: int, out_h: int, out_w: int) -> None:
        self.height, self.width, self.out_h, self.out_w = height, width, out_h, out_w
        rows = sample_indices(height, out_h)
        cols = sample_indices(width, out_w)
        # Upsampling repeats source columns; decode each once and gather (keeps positions sorted).
        self.unique_cols, self.col_index = np.unique(cols, return_inverse=True)
        self.identity = self.unique_cols.size == out_w
        self.positions = (self.unique_cols[:, None] * height + rows[None, :]).ravel()


def decode_runs_at_size(starts: np.ndarray, lengths: np.ndarray, grid: TargetGrid,
                        out: np.ndarray | None = None) -> np.ndarray:
    """Decode 0-based column-major runs straight into a mask uint8 ``[out_h, out_w]``.

    Each run ``[s, s + l)`` covers the sorted ``grid.positions`` between two ``searchsorted`` hits;
    a +1/-1 difference array and a cumulative sum over the covered span fill the mask, so unsorted
    or overlapping runs decode correctly and memory stays O(output size + runs).

    Args:
        starts, lengths: int64 ``[R]`` (0-based starts, e.g. from :func:`parse_kaggle_rle`).
        grid: the :class:`TargetGrid` of the source and output sizes.
        out: optional uint8 ``[out_h, out_w]`` to write into (every pixel is overwritten).
    """
    if out is None:
        out = np.zeros((grid.out_h, grid.out_w), dtype=np.uint8)
    positions = grid.positions
    lo = np.searchsorted(positions, starts, side="left")
    hi = np.searchsorted(positions, starts + lengths, side="left")
    keep = hi > lo
    if not keep.any():
        out[...] = 0
        return out
    lo, hi = lo[keep], hi[keep]
    first, last = int(lo.min()), int(hi.max())
    # int32 halves the memory traffic of int64; a pixel is never covered by 2**31 runs.
    delta = np.zeros(last - first + 1, dtype=np.int32)
    np.add.at(delta, lo - first, 1)
    np.add.at(delta, hi - first, -1)
    flat = np.zeros(positions.size, dtype=bool)
    np.greater(np.cumsum(delta[:-1], dtype=np.int32), 0, out=flat[first:last])
    columns = flat.reshape(grid.unique_cols.size, grid.out_h)
    out.T[...] = columns if grid.identity else columns[grid.col_index]
    return out


def counts_from_string(text: str | bytes) -> np.ndarray:
    """Decode pycocotools' compressed ``counts`` string into int64 counts (``rleFrString``).

    Each count is written in 5-bit groups (low first), a group with bit 0x20 set is followed by
    another, the last group's bit 0x10 is the sign; from the fourth count on a count is stored as
    the difference to the count two places earlier. Vectorised: no Python loop per character.
    """
    data = np.frombuffer(text.encode("ascii") if isinstance(text, str) else bytes(text), dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    chars = data.astype(np.int64) - 48
    last = np.flatnonzero((chars & 0x20) == 0)  # the last character of each count
    first = np.concatenate(([0], last[:-1] + 1))
    n_chars = last - first + 1
    position = np.arange(chars.size) - np.repeat(first, n_chars)
    values = np.add.reduceat((chars & 0x1F) << (5 * position), first)
    negative = (chars[last] & 0x10) != 0
    values[negative] |= np.left_shift(np.int64(-1), 5 * n_chars[negative])
    counts = values.copy()
    counts[1::2] = np.cumsum(values[1::2])  # count i >= 3 is stored as count i - 2 plus a delta
    counts[2::2] = np.cumsum(values[2::2])
    return counts


def counts_to_runs(counts: np.ndarray | list[int]) -> Runs:
    """COCO counts (zeros first, alternating) to 0-based ``(starts, lengths)`` of the ones."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends[0::2][: counts[1::2].size]
    return starts, counts[1::2].copy()


def runs_to_counts(starts: np.ndarray, lengths: np.ndarray, height: int, width: int) -> list[int]:
    """Sorted, non-overlapping 0-based runs to COCO uncompressed counts (zeros first)."""
    ends = starts + lengths
    gaps = starts - np.concatenate(([0], ends[:-1]))
    counts = np.stack([gaps, lengths], axis=1).ravel().tolist()
    tail = height * width - (int(ends[-1]) if ends.size else 0)
    if tail:
        counts.append(tail)
    return counts


def merge_runs(starts: np.ndarray, lengths: np.ndarray) -> Runs:
    """Sort runs and merge overlapping or touching ones (what COCO counts require)."""
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], (starts + lengths)[order]
    keep = lengths[order] > 0
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts, ends - starts
    running_end = np.maximum.accumulate(ends)
    new_group = np.concatenate(([True], starts[1:] > running_end[:-1]))
    group = np.cumsum(new_group) - 1
    merged_starts = starts[new_group]
    merged_ends = np.zeros(merged_starts.size, np.int64)
    np.maximum.at(merged_ends, group, ends)
    return merged_starts, merged_ends - merged_starts


def runs_to_coco_rle(starts: np.ndarray, lengths: np.ndarray, height: int, width: int) -> dict:
    """Runs over a ``height x width`` image to a compressed COCO RLE ``{"size", "counts": str}``.

    No mask is built: the counts go straight to pycocotools' encoder.
    """
    starts, lengths = merge_runs(starts, lengths)
    keep_end = np.minimum(starts + lengths, height * width)
    starts = np.maximum(starts, 0)
    valid = keep_end > starts
    counts = runs_to_counts(starts[valid], keep_end[valid] - starts[valid], height, width)
    rle = mask_util.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_to_coco_rle(mask: np.ndarray) -> dict:
    """A mask ``[H, W]`` to a compressed COCO RLE with a str ``counts`` (JSON-ready)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_rle_runs(rle: dict, where: str = "segmentation") -> tuple[Runs, int, int]:
    """Runs and ``(height, width)`` of a COCO RLE (counts as list or compressed string).

    Raises:
        DataError: no ``size`` [h, w] or ``counts``, counts that are not non-negative integers (a
            list, or pycocotools' compressed string of characters 48..111 ending on a complete
            count), or counts that do not cover exactly ``h * w`` pixels.
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: RLE needs 'size' [h, w] and 'counts'") from None
    values = _counts_values(counts)
    if values is None or (values < 0).any():
        raise DataError(f"{where}: RLE 'counts' must be non-negative integers (a list or a compressed string)")
    if height < 1 or width < 1 or int(values.sum()) != height * width:
        raise DataError(f"{where}: RLE counts cover {int(values.sum())} pixels; its size {height}x{width} "
                        f"has {height * width}")
    return counts_to_runs(values), height, width


def _counts_values(counts: object) -> np.ndarray | None:
    """int64 ``[K]`` counts from a list or a compressed string; None when they are not counts."""
    if isinstance(counts, (str, bytes)):
        try:
            raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
        except UnicodeEncodeError:
            return None
        chars = np.frombuffer(raw, dtype=np.uint8)
        # A count's last 5-bit group has bit 0x20 clear; more than 12 groups overflow 64 bits.
        if chars.size and ((chars < 48).any() or (chars > 111).any() or (int(chars[-1]) - 48) & 0x20):
            return None
        groups = np.diff(np.concatenate(([-1], np.flatnonzero(((chars.astype(np.int64) - 48) & 0x20) == 0))))
        return None if (groups > 12).any() else counts_from_string(raw)
    if not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        return None
    try:
        return np.asarray(counts, dtype=np.int64)
    except OverflowError:
        return None


def counts_to_coco_rle(counts: np.ndarray | list[int], height: int, width: int) -> dict:
    """Uncompressed COCO counts (zeros first) to a compressed RLE with a str ``counts``."""
    rle = mask_util.frPyObjects({"size": [height, width], "counts": [int(c) for c in counts]}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def empty_coco_rle(height: int, width: int) -> dict:
    """The compressed RLE of an all-zero ``height x width`` mask."""
    return counts_to_coco_rle([height * width], height, width)


def complement_coco_rle(rle: dict) -> dict:
    """The RLE of the pixels ``rle`` leaves out (same size); cost in proportion to its runs.

    COCO counts alternate zeros and ones starting with zeros, so the complement is the same counts
    with a zero-length run of zeros put in front (or taken away).
    """
    (starts, lengths), height, width = coco_rle_runs(rle)
    counts = np.asarray(runs_to_counts(starts, lengths, height, width), dtype=np.int64)
    flipped = counts[1:] if counts.size and counts[0] == 0 else np.concatenate(([0], counts))
    return counts_to_coco_rle(flipped, height, width)


def clip_polygon(xy: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """``xy`` float64 ``[P, 2]`` clipped to the box ``[x0, x1] x [y0, y1]`` (Sutherland-Hodgman).

    The part of the polygon inside the box is unchanged; what lies outside collapses onto the box's
    edges. May return fewer than 3 points (the polygon misses the box).
    """
    for axis, bound, keep_low in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
        if len(xy) == 0:
            break
        nxt = np.roll(xy, -1, axis=0)
        inside = xy[:, axis] <= bound if keep_low else xy[:, axis] >= bound
        inside_next = np.roll(inside, -1)
        out = []
        for p, q, p_in, q_in in zip(xy, nxt, inside, inside_next):
            if p_in:
                out.append(p)
            if p_in != q_in:
                t = (bound - p[axis]) / (q[axis] - p[axis])
                out.append(p + t * (q - p))
        xy = np.asarray(out, np.float64).reshape(-1, 2)
    return xy


def polygons_to_rle(polygons: list, height: int, width: int) -> dict:
    """One compressed COCO RLE (bytes ``counts``) of valid polygons ``[[x0, y0, ...], ...]`` on an
    ``height x width`` image.

    Polygons reaching far outside the image are clipped to a one-pixel margin around it first:
    pycocotools' rasteriser walks every edge at five times its length, so a coordinate of 1e9
    exhausts memory. The mask inside the image is the same either way.
    """
    x0, y0, x1, y1 = -1.0, -1.0, width + 1.0, height + 1.0
    ready = []
    for poly in polygons:
        xy = np.asarray(poly, np.float64).reshape(-1, 2)
        if xy[:, 0].min() < x0 or xy[:, 1].min() < y0 or xy[:, 0].max() > x1 or xy[:, 1].max() > y1:
            xy = clip_polygon(xy, x0, y0, x1, y1)
        if len(xy) >= 3:
            ready.append(xy.ravel().tolist())
    if not ready:
        return mask_util.encode(np.zeros((height, width), np.uint8, order="F"))
    return mask_util.merge(mask_util.frPyObjects(ready, height, width))
