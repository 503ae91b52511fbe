"""The attribute loss weight against what it buys and costs, on Mask R-CNN's two learning recipes.

For each weight, in fresh pytest processes (the tests' own recipes, with ``--recipe-set``):

* **learns**: ``tests/test_attributes_learn.py``'s Mask R-CNN run (70 steps, 8 training images):
  attribute F1 on the training images, and the test's threshold (most-frequent baseline + 0.05);
* **costs**: ``tests/test_maskrcnn_learns.py`` (250 steps) with the attribute head on: mask AP50
  on the training images; and once with the head off.

Each process runs on one thread unless ``--threads`` says otherwise, two at a time.

    .venv/bin/python benchmarks/attribute_weight_probe.py --weights 1 10 20 30 92
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learning_isa import finish_level, start_level  # noqa: E402  (one pytest process, its figures)

LEARNS = ["tests/test_attributes_learn.py", "-k", "beats and maskrcnn"]
COSTS = ["tests/test_maskrcnn_learns.py"]


def start(test: list[str], sets: list[str], threads: int) -> subprocess.Popen:
    """``test`` with ``--recipe-set`` ``sets``, native kernels, on ``threads`` threads."""
    return start_level("native", [*test, *(arg for item in sets for arg in ("--recipe-set", item))], threads)


def figure(proc: subprocess.Popen) -> str:
    """``value (threshold)`` from the process's learning-figure line, or what went wrong."""
    figures, _, last = finish_level(proc, time.perf_counter())
    if not figures:
        return f"no figure: {last}"
    _, _, value, threshold = figures[-1]
    return f"{value:.3f} ({threshold:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[1, 10, 20, 30, 92])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    jobs = [("heads off", None, COSTS, ["model.attributes=off"])]
    for w in args.weights:
        jobs.append((f"weight {w:g}", "learns", LEARNS, [f"model.attribute_weight={w}"]))
        jobs.append((f"weight {w:g}", "costs", COSTS, ["model.attributes=auto", f"model.attribute_weight={w}"]))
    results: dict[str, dict[str, str]] = {}
    for k in range(0, len(jobs), 2):  # two at a time: one per core
        running = [(label, kind, start(test, sets, args.threads)) for label, kind, test, sets in jobs[k:k + 2]]
        for label, kind, proc in running:
            results.setdefault(label, {})[kind or "costs"] = figure(proc)
            print(f"{label} {kind or 'costs'}: {results[label][kind or 'costs']}", flush=True)
    print("\n| attribute loss (mean BCE) | attribute F1 (threshold) | mask AP50 with the head (threshold) |")
    print("|---|---|---|")
    for label, row in results.items():
        print(f"| {label} | {row.get('learns', '')} | {row.get('costs', '')} |")


if __name__ == "__main__":
    main()
