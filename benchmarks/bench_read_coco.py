"""Reading a large COCO file: zoo's validated reader, with and without the garbage collector paused.

A synthetic Fashionpedia-sized slice (N annotations, one 40-point polygon each, 10 per image, a
bbox and an area) is written once; each variant is read 3 times in this process, best time kept.

    .venv/bin/python benchmarks/bench_read_coco.py [N]      (default 50000)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zoo.data.sources import _read_coco, read_coco, read_json


def write_file(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    images = [{"id": i + 1, "file_name": f"{i}.jpg", "height": 1024, "width": 768} for i in range(n // 10)]
    annotations = [{"id": k + 1, "image_id": k // 10 + 1, "category_id": 1, "iscrowd": 0, "area": 100.0,
                    "bbox": [1.0, 2.0, 30.0, 40.0], "segmentation": [np.round(rng.uniform(0, 700, 80), 2).tolist()]}
                   for k in range(n)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}))


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances.json"
        write_file(path, n)
        rows = {
            "json.loads only": best_of(lambda: read_json(path)),
            "read_coco (validated, collector paused)": best_of(lambda: read_coco(path)),
            "read_coco with the collector running": best_of(lambda: _read_coco(path, None, "coco", None)),
        }
    print(f"{n} annotations ({path.name}, {n // 10} images), best of 3:")
    for name, seconds in rows.items():
        print(f"  {name:42s} {seconds:6.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50000)
