"""Learning tests on every CPU kernel path: each test run with the instruction set held down in the
three places kernels are chosen (ATen's own kernels, oneDNN's convolutions, MKL's matmuls).

Each learning test prints one line ``learning-figure: <name> <metric>=<value> threshold=<t>``;
this script runs the tests once per level in a fresh process and tabulates those lines, with the
margin of the lowest value over the threshold. Levels the CPU lacks are skipped and said so.

    .venv/bin/python benchmarks/bench_learning_isa.py [--levels native avx512 avx2 sse4] [-k unet yolact]
        [--threads 1 --parallel]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_maskrcnn_learns.py", "tests/test_yolact_learns.py", "tests/test_unet_learns.py",
         "tests/test_attributes_learn.py"]
# The same level in each library's own spelling; "native" leaves all three to choose.
LEVELS: dict[str, dict[str, str]] = {
    "native": {},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}
CPU_FLAG = {"avx512": "avx512f", "avx2": "avx2", "sse4": "sse4_2"}
FIGURE = re.compile(r"learning-figure: (\S+) (\S+)=([0-9.]+) threshold=([0-9.]+)")


def cpu_flags() -> set[str]:
    """The flags /proc/cpuinfo lists for the first CPU (empty where the file is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def start_level(level: str, tests: list[str], threads: int | None) -> subprocess.Popen:
    """Start ``tests`` in one pytest process at ``level`` (``threads``: OMP_NUM_THREADS, None: torch's default)."""
    env = {k: v for k, v in os.environ.items() if k not in LEVELS["avx2"]}
    env.update(LEVELS[level])
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *tests],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish_level(proc: subprocess.Popen, started: float) -> tuple[list[tuple[str, str, float, float]], float, str]:
    """(figures, seconds, pytest's last line) of a process from :func:`start_level`."""
    out, _ = proc.communicate()
    figures = [(m[1], m[2], float(m[3]), float(m[4])) for m in FIGURE.finditer(out)]
    last = (out.strip().splitlines() or ["(no output)"])[-1]
    return figures, time.perf_counter() - started, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument("-k", dest="only", nargs="+", default=[""],
                        help="run only the test files whose name holds one of these")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each run (default: torch's)")
    parser.add_argument("--parallel", action="store_true", help="run the levels at the same time (with --threads 1)")
    args = parser.parse_args()
    tests = [t for t in TESTS if any(k in t for k in args.only)]
    flags = cpu_flags()
    rows: dict[tuple[str, str], dict[str, float]] = {}
    thresholds: dict[tuple[str, str], float] = {}
    levels = []
    for level in args.levels:
        if level in CPU_FLAG and flags and CPU_FLAG[level] not in flags:
            print(f"{level}: this CPU lacks {CPU_FLAG[level]}, skipped", flush=True)
        else:
            levels.append(level)
    started = {lv: time.perf_counter() for lv in levels}
    running = {lv: start_level(lv, tests, args.threads) for lv in levels} if args.parallel else {}
    for level in levels:
        if not args.parallel:
            started[level] = time.perf_counter()
            running[level] = start_level(level, tests, args.threads)
        figures, seconds, last = finish_level(running[level], started[level])
        print(f"{level}: {seconds:.0f} s, pytest: {last}", flush=True)
        for name, metric, value, threshold in figures:
            rows.setdefault((name, metric), {})[level] = value
            thresholds[(name, metric)] = threshold
            print(f"  {name} {metric} = {value:.3f} (threshold {threshold})", flush=True)
    print()
    print("| test | metric | " + " | ".join(levels) + " | threshold | lowest / threshold |")
    print("|---|---|" + "---|" * len(levels) + "---|---|")
    for (name, metric), values in rows.items():
        lowest = min(values.values())
        cells = " | ".join(f"{values[lv]:.3f}" if lv in values else "-" for lv in levels)
        print(f"| {name} | {metric} | {cells} | {thresholds[(name, metric)]} | "
              f"{lowest / thresholds[(name, metric)]:.2f}x |")


if __name__ == "__main__":
    main()
