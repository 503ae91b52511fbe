"""A `zoo data prepare` cache read at its own size: zoo's vs pycocotools' RLE decoding.

A cache stores compressed COCO RLE masks already at the training size, so when training reads it
at that size (``data.max_size`` equal to the cache's) no resizing is needed. For each ``--sizes``
side the benchmark writes the embedded synthetic dataset at that side, prepares a cache of it,
and times three ways of turning every cached mask into the row-major uint8 ``[N, H, W]`` the
dataset hands on:

* **runs**: zoo's compressed-counts parser (``coco_rle_runs``) and numpy
  ``decode_runs_at_size`` on an identity grid;
* **pycocotools**: ``pycocotools.mask.decode`` (C) of an image's masks at once, then the copy
  from its column-major ``[H, W, N]`` to row-major ``[N, H, W]``;
* **decode_masks**: what the dataset calls per image (:func:`zoo.data.decode.decode_masks`).

Every output is checked to be identical to the pycocotools one. Time is process CPU time, the
best of ``--repeats`` passes over the whole cache (the machine is shared; wall time swings).

    .venv/bin/python benchmarks/bench_cache_decode.py --sizes 256 512 1024 --images 20 10 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from pycocotools import mask as mask_util
from rich.console import Console

from zoo.data.decode import decode_masks
from zoo.data.prepare import prepare_cache
from zoo.data.rle import TargetGrid, coco_rle_runs, decode_runs_at_size
from zoo.data.sources import ImageRecord, read_source
from zoo.data.synth import write_synthetic

Decoder = Callable[[list[ImageRecord]], list[np.ndarray]]


def via_decode_masks(records: list[ImageRecord]) -> list[np.ndarray]:
    return [decode_masks(r, r.height, r.width, (r.height, r.width)) for r in records]


def via_runs(records: list[ImageRecord]) -> list[np.ndarray]:
    out = []
    for r in records:
        grid = TargetGrid(r.height, r.width, r.height, r.width)
        masks = np.zeros((len(r.instances), r.height, r.width), np.uint8)
        for i, inst in enumerate(r.instances):
            (starts, lengths), _, _ = coco_rle_runs(inst.segmentation)
            decode_runs_at_size(starts, lengths, grid, out=masks[i])
        out.append(masks)
    return out


def via_pycocotools(records: list[ImageRecord]) -> list[np.ndarray]:
    out = []
    for r in records:
        rles = [{"size": i.segmentation["size"], "counts": i.segmentation["counts"].encode("ascii")}
                for i in r.instances]
        out.append(np.ascontiguousarray(mask_util.decode(rles).transpose(2, 0, 1)) if rles
                   else np.zeros((0, r.height, r.width), np.uint8))
    return out


def best_cpu(fn: Decoder, records: list[ImageRecord], repeats: int) -> tuple[float, list[np.ndarray]]:
    """Best CPU seconds of ``fn(records)`` over ``repeats`` passes, and its masks."""
    best, result = float("inf"), []
    for _ in range(repeats):
        start = time.process_time()
        result = fn(records)
        best = min(best, time.process_time() - start)
    return best, result


def cached_records(root: Path, size: int, n: int) -> list[ImageRecord]:
    """The records of a cache prepared at ``size`` from ``n`` synthetic images of that side."""
    data = write_synthetic(root / f"synth{size}", n=n, size=size, seed=0)
    cache = prepare_cache(data, root / f"cache{size}", max_size=size, workers=1, console=Console(quiet=True))
    return read_source(cache).records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="image sides")
    parser.add_argument("--images", type=int, nargs="+", default=[20, 10, 4], help="images per side")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    print("| side | masks | runs us/mask | pycocotools us/mask | decode_masks us/mask | identical |")
    print("|---|---|---|---|---|---|")
    for size, n in zip(args.sizes, args.images):
        records = cached_records(root, size, n)
        n_masks = sum(len(r.instances) for r in records)
        reference = via_pycocotools(records)
        cells, same = [], True
        for fn in (via_runs, via_pycocotools, via_decode_masks):
            cpu, masks = best_cpu(fn, records, args.repeats)
            cells.append(f"{1e6 * cpu / n_masks:.0f}")
            same &= all(np.array_equal(a, b) for a, b in zip(masks, reference))
        print(f"| {size} | {n_masks} | {' | '.join(cells)} | {same} |", flush=True)


if __name__ == "__main__":
    main()
