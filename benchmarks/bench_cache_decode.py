"""Masks of a `zoo data prepare` cache read at the cache's own size: pure-Python vs C RLE decoding.

A cache stores compressed COCO RLE masks already at the training size, so when training reads it
at that size (``data.max_size`` equal to the cache's) no resizing is needed. The benchmark writes
the embedded synthetic dataset, prepares a cache at its own size, and times three decoders over
every cached mask:

* **decode_masks**: what the dataset calls per image (:func:`zoo.data.decode.decode_masks`),
  whichever decoder it uses;
* **python runs**: zoo's pure-Python compressed-counts parser (``coco_rle_runs``) followed by
  ``decode_runs_at_size`` on an identity grid;
* **pycocotools**: ``pycocotools.mask.decode`` (C) of all masks of an image at once, copied to
  row-major ``[N, H, W]`` as the dataset hands masks on.

Every output is checked to be identical to the pycocotools one. Time is the best of
``--repeats`` passes over the whole cache (wall and CPU time, as the machine is shared).

    .venv/bin/python benchmarks/bench_cache_decode.py --n 40 --size 512
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


def via_decode_masks(records: list[ImageRecord]) -> list[np.ndarray]:
    return [decode_masks(r, r.height, r.width, (r.height, r.width)) for r in records]


def via_python_runs(records: list[ImageRecord]) -> list[np.ndarray]:
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
        # [H, W, N] column-major from the C decoder; the dataset hands on row-major [N, H, W]
        out.append(np.ascontiguousarray(mask_util.decode(rles).transpose(2, 0, 1)) if rles
                   else np.zeros((0, r.height, r.width), np.uint8))
    return out


def best_time(fn: Callable[[list[ImageRecord]], list[np.ndarray]], records: list[ImageRecord],
              repeats: int) -> tuple[float, float, list[np.ndarray]]:
    """Best wall and CPU seconds of ``fn(records)`` over ``repeats`` passes, and its masks."""
    best_wall = best_cpu = float("inf")
    result: list[np.ndarray] = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(records)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="synthetic images")
    parser.add_argument("--size", type=int, default=512, help="image side (the cache keeps it)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_cache_"))
    data = write_synthetic(root / "synth", n=args.n, size=args.size, seed=0)
    cache = prepare_cache(data, root / "cache", max_size=args.size, workers=1, console=Console(quiet=True))
    records = read_source(cache).records
    n_masks = sum(len(r.instances) for r in records)
    reference = via_pycocotools(records)
    print(f"{len(records)} images of {args.size} px, {n_masks} masks; best of {args.repeats}")
    print("| decoder | ms wall / CPU (whole cache) | us CPU per mask | identical to pycocotools |")
    print("|---|---|---|---|")
    for name, fn in (("decode_masks", via_decode_masks), ("python runs", via_python_runs),
                     ("pycocotools", via_pycocotools)):
        wall, cpu, masks = best_time(fn, records, args.repeats)
        same = all(np.array_equal(a, b) for a, b in zip(masks, reference))
        print(f"| {name} | {1000 * wall:.0f} / {1000 * cpu:.0f} | {1e6 * cpu / n_masks:.0f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
