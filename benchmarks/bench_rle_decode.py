"""Masks of a large photo read at training size: zoo's decode-at-size vs full decode + resize.

Twenty garment-like masks (unions of ellipses, several runs per column) of a W x H photo are
encoded as iMaterialist column-major RLE, then decoded to a ``--target`` longest side:

* **zoo**: ``parse_kaggle_rle`` + ``decode_runs_at_size`` with one shared ``TargetGrid``;
* **full**: the usual notebook way: a full-resolution ``uint8`` mask per row, reshaped
  column-major, then ``PIL.Image.resize(NEAREST)`` to the target.

Both outputs are compared (they must agree to within a few boundary pixels). Time is the best of
``--repeats`` runs; peak memory is ``tracemalloc``'s (numpy reports its buffers to it). The
masks are generated analytically (column intervals) so that even 12000x8000 sources are cheap
to set up.

    .venv/bin/python benchmarks/bench_rle_decode.py            # 6000x4000, 20 masks, 1024 target
    .venv/bin/python benchmarks/bench_rle_decode.py --sizes 1500x1000 3000x2000 6000x4000 12000x8000
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from PIL import Image

from zoo.data.decode import ResizeSpec
from zoo.data.rle import TargetGrid, decode_runs_at_size, merge_runs, parse_kaggle_rle


def ellipse_runs(height: int, width: int, cx: float, cy: float, rx: float, ry: float) -> tuple[np.ndarray, ...]:
    """0-based column-major runs of a filled ellipse (one run per column it crosses)."""
    xs = np.arange(max(0, int(cx - rx)), min(width, int(cx + rx) + 1))
    t = 1 - ((xs + 0.5 - cx) / rx) ** 2
    xs, t = xs[t > 0], t[t > 0]
    dy = ry * np.sqrt(t)
    y0 = np.clip(np.ceil(cy - dy - 0.5), 0, height).astype(np.int64)
    y1 = np.clip(np.floor(cy + dy - 0.5) + 1, 0, height).astype(np.int64)
    keep = y1 > y0
    return xs[keep] * height + y0[keep], (y1 - y0)[keep]


def make_rles(height: int, width: int, n: int, seed: int = 0) -> list[str]:
    """``n`` masks, each the union of 1-4 ellipses (relative geometry is the same at every size)."""
    rng = np.random.default_rng(seed)
    rles = []
    for _ in range(n):
        parts = [ellipse_runs(height, width, *(rng.uniform(0.15, 0.85, 2) * (width, height)),
                              *(rng.uniform(0.03, 0.25, 2) * (width, height))) for _ in range(rng.integers(1, 5))]
        starts, lengths = merge_runs(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        rles.append(" ".join(map(str, np.stack([starts, lengths], 1).ravel().tolist())))
    return rles


def decode_zoo(rles: list[str], height: int, width: int, out_h: int, out_w: int) -> np.ndarray:
    grid = TargetGrid(height, width, out_h, out_w)
    out = np.zeros((len(rles), out_h, out_w), np.uint8)
    for i, rle in enumerate(rles):
        decode_runs_at_size(*parse_kaggle_rle(rle), grid, out=out[i])
    return out


def decode_full(rles: list[str], height: int, width: int, out_h: int, out_w: int) -> np.ndarray:
    out = np.zeros((len(rles), out_h, out_w), np.uint8)
    for i, rle in enumerate(rles):
        starts, lengths = parse_kaggle_rle(rle)
        flat = np.zeros(height * width, np.uint8)
        for s, n in zip(starts.tolist(), lengths.tolist()):
            flat[s:s + n] = 1
        full = np.ascontiguousarray(flat.reshape(width, height).T)
        out[i] = np.asarray(Image.fromarray(full).resize((out_w, out_h), Image.NEAREST))
    return out


def measure(fn, *args, repeats: int) -> tuple[float, float, float, np.ndarray]:
    """Best wall time (s), best CPU time (s), peak traced memory (MiB) and the result of ``fn(*args)``.

    CPU time is reported too because wall time swings on a shared machine.
    """
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn(*args)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return best_wall, best_cpu, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["6000x4000"], help="WxH source sizes")
    parser.add_argument("--masks", type=int, default=20)
    parser.add_argument("--target", type=int, default=1024, help="longest side after resizing")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("| source (WxH) | runs | target | zoo ms wall / CPU | full ms wall / CPU | speed-up wall / CPU "
          "| zoo peak MiB | full peak MiB | differing px |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        out_h, out_w = ResizeSpec(args.target).scaled_size(height, width)
        rles = make_rles(height, width, args.masks)
        runs = sum(len(r.split()) // 2 for r in rles)
        w_zoo, c_zoo, m_zoo, a = measure(decode_zoo, rles, height, width, out_h, out_w, repeats=args.repeats)
        w_full, c_full, m_full, b = measure(decode_full, rles, height, width, out_h, out_w, repeats=args.repeats)
        print(f"| {width}x{height} | {runs} | {out_w}x{out_h} | {1000 * w_zoo:.0f} / {1000 * c_zoo:.0f} "
              f"| {1000 * w_full:.0f} / {1000 * c_full:.0f} | {w_full / w_zoo:.1f}x / {c_full / c_zoo:.1f}x "
              f"| {m_zoo:.1f} | {m_full:.1f} | {int((a != b).sum())} of {a.size} |", flush=True)


if __name__ == "__main__":
    main()
