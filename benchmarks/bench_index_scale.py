"""The full iMaterialist 2019 ``train.csv`` at its real scale: opening it, workers, processes.

Writes a synthetic replica of the 2019 train.csv (``--scale 1``: 45,600 photos' rows, 333,000
masks, photo sizes from 558x677 to 10717x6824 px around a median of about 3100x3600, one run per
covered column, about 870 columns a mask: about 4 GB of CSV), then measures in one run, each in
fresh processes:

* **open**: wall time and peak RSS above the process's baseline (``VmHWM`` after
  ``clear_refs``) of ``read_source`` through the index, the first time (the index is built) and
  the second time (it is mapped);
* **workers**: private memory (USS, ``Private_Clean + Private_Dirty`` of ``smaps_rollup``) growth
  of each of 4 DataLoader workers over one epoch of reading every image's record and parsing its
  runs (what ``__getitem__`` does before the JPEG, which the replica does not have);
* **processes**: the memory 4 processes add together (sum of PSS growth) when they open it at
  once and read every image's categories, against what 1 process adds (a stand-in for 4 ranks);
  once as they start, and once ("warm") after each has opened a one-photo replica, so that the
  code an open loads on first use is in the baseline, as the imports are, and what is measured
  is what the data costs.

``--reference`` measures the same for the record reader without the index
(``zoo.data.sources.read_imaterialist``, every row a Python object); it peaks at about twice the
CSV in each process, so use it at ``--scale 0.1`` or below. The replica is deleted at the end
unless ``--keep``.

    nice -n 10 .venv/bin/python benchmarks/bench_index_scale.py --scale 0.1 --reference --out /tmp/idx
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PHOTOS, MASKS = 45_600, 333_000
MIN_HW, MAX_HW, MEDIAN_HW = (558, 677), (10717, 6824), (3100, 3600)
MEAN_COLUMNS = 870
LABELS = Path(__file__).resolve().parents[1] / "zoo" / "data" / "label_descriptions.json"


# ---------------------------------------------------------------- the replica
def _mask_text(rng: np.random.Generator, h: int, w: int) -> str:
    """A Kaggle RLE (1-based starts) of a blob covering about MEAN_COLUMNS columns, one run each."""
    cols = int(min(w, max(8, rng.normal(MEAN_COLUMNS, 150))))
    col0 = int(rng.integers(0, w - cols + 1))
    top = int(rng.integers(0, h // 2))
    length = max(1, int(rng.integers(h // 8, h // 2)))
    wobble = rng.integers(-3, 4, size=cols).cumsum().clip(-top, h // 2)
    starts = (np.arange(col0, col0 + cols) * h + top + wobble + 1).astype(np.int64)
    lengths = np.minimum(length, h - (top + wobble)).clip(1)
    values = np.stack([starts, lengths], 1).ravel().tolist()
    return ("%d " * len(values))[:-1] % tuple(values)  # printf formatting: ~2x faster than str.join


def write_replica(folder: Path, scale: float, seed: int = 0) -> dict[str, Any]:
    """``folder/train.csv`` and ``label_descriptions.json`` at ``scale`` of the full dataset."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(LABELS, folder / "label_descriptions.json")
    labels = json.loads(LABELS.read_text())
    n_photos, n_masks = max(1, round(PHOTOS * scale)), max(1, round(MASKS * scale))
    per_photo = rng.multinomial(n_masks, np.full(n_photos, 1 / n_photos))
    sigma = 0.35
    hs = np.exp(rng.normal(np.log(MEDIAN_HW[0]), sigma, n_photos)).clip(MIN_HW[0], MAX_HW[0]).astype(int)
    ws = np.exp(rng.normal(np.log(MEDIAN_HW[1]), sigma, n_photos)).clip(MIN_HW[1], MAX_HW[1]).astype(int)
    hs[0], ws[0], hs[-1], ws[-1] = *MIN_HW, *MAX_HW
    cats = [c["id"] for c in labels["categories"]]
    attrs = [a["id"] for a in labels["attributes"]]
    with open(folder / "train.csv", "w", buffering=1 << 22) as fh:
        fh.write("ImageId,EncodedPixels,Height,Width,ClassId\n")
        for i in range(n_photos):
            name, h, w = f"{i:032x}.jpg", int(hs[i]), int(ws[i])
            if per_photo[i] == 0:
                fh.write(f"{name},,{h},{w},\n")
            for _ in range(per_photo[i]):
                class_id = "_".join(map(str, [rng.choice(cats), *rng.choice(attrs, rng.integers(0, 3), replace=False)]))
                fh.write(f"{name},{_mask_text(rng, h, w)},{h},{w},{class_id}\n")
    return {"photos": n_photos, "masks": n_masks, "csv_bytes": (folder / "train.csv").stat().st_size}


# ---------------------------------------------------------------- memory of a process
def smaps(pid: int | str = "self") -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in bytes (Rss, Pss, Private_Clean, Private_Dirty, ...)."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0]) * 1024
    return out


def uss(pid: int | str = "self") -> int:
    m = smaps(pid)
    return m["Private_Clean"] + m["Private_Dirty"]


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _open(folder: str, reference: bool) -> Any:
    if reference:
        from zoo.data.sources import read_imaterialist

        return read_imaterialist(Path(folder))
    from zoo.data.sources import read_source

    return read_source(folder)


def _timed_open(folder: str, reference: bool, queue: Any) -> None:
    """In a fresh process: wall time and peak RSS above baseline of one open."""
    import zoo.data.dataset  # noqa: F401  (imports done before the baseline)
    import zoo.data.index_build  # noqa: F401

    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    base = _status("VmRSS")
    t0 = time.perf_counter()
    source = _open(folder, reference)
    wall = time.perf_counter() - t0
    queue.put({"wall_s": wall, "baseline_rss": base, "peak_rss_above_baseline": _status("VmHWM") - base,
               "rss_after_above_baseline": _status("VmRSS") - base, "images": len(source.records),
               "maxrss_lifetime": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})


def _in_process(target: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


# ---------------------------------------------------------------- workers
class RecordReads:
    """``dataset[i]``: image i's record read and every run parsed; returns ``(pid, runs)``."""

    def __init__(self, records: Any) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[int, int]:
        from zoo.data.rle import parse_kaggle_rle

        record = self.records[index]
        return os.getpid(), sum(len(parse_kaggle_rle(inst.segmentation)[0]) for inst in record.instances)


def _note_start(folder: str, worker_id: int) -> None:
    """A worker's USS when it starts (right after the fork, before its first item)."""
    Path(folder, str(os.getpid())).write_text(str(uss()))


def _worker_epoch(folder: str, reference: bool, workers: int, queue: Any) -> None:
    import functools

    import torch
    from torch.utils.data import DataLoader

    source = _open(folder, reference)
    data = RecordReads(source.records)
    notes = tempfile.mkdtemp(prefix="zoo-bench-uss-")
    # fork, as training's DataLoader on Linux (this process was spawned, so spawn is its default)
    loader = DataLoader(data, batch_size=None, shuffle=True, num_workers=workers, persistent_workers=True,
                        worker_init_fn=functools.partial(_note_start, notes), multiprocessing_context="fork",
                        generator=torch.Generator().manual_seed(0))
    t0, runs, pids, it = time.perf_counter(), 0, set(), iter(loader)
    for pid, n in it:
        runs += int(n)
        pids.add(int(pid))
    wall = time.perf_counter() - t0
    growth = {pid: uss(pid) - int(Path(notes, str(pid)).read_text()) for pid in pids}
    shutil.rmtree(notes, ignore_errors=True)
    queue.put({"workers": workers, "images": len(data), "runs": runs, "epoch_s": wall,
               "uss_growth_per_worker": sorted(growth.values()), "parent_uss": uss()})
    del it


# ---------------------------------------------------------------- processes together
def _together_one(folder: str, reference: bool, warm: str | None, barrier: Any, queue: Any) -> None:
    import zoo.data.dataset  # noqa: F401  (imports done before the baseline)
    import zoo.data.index_build  # noqa: F401

    if warm is not None:  # the code an open loads on first use, in the baseline like the imports
        _open(warm, reference)
    barrier.wait()
    before = smaps()["Pss"]
    source = _open(folder, reference)
    records = source.records
    if hasattr(records, "category_ids"):
        labels = sum(len(records.category_ids(i)) for i in range(len(records)))
    else:
        labels = sum(len(r.instances) for r in records)
    barrier.wait()  # every process holds its copy now
    queue.put({"pss_growth": smaps()["Pss"] - before, "labels": labels})
    barrier.wait()


def together(folder: str, reference: bool, n: int, warm: str | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_together_one, args=(folder, reference, warm, barrier, queue)) for _ in range(n)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return {"processes": n, "wall_s": time.perf_counter() - t0,
            "pss_growth_total": sum(r["pss_growth"] for r in results)}


# ---------------------------------------------------------------- the run
def measure(folder: Path, reference: bool, workers: int) -> dict[str, Any]:
    from zoo.data.index import index_location

    label = "reference" if reference else "index"
    shutil.rmtree(index_location(folder / "train.csv"), ignore_errors=True)
    out: dict[str, Any] = {"reader": label}
    out["open_first"] = _in_process(_timed_open, str(folder), reference)
    out["open_second"] = _in_process(_timed_open, str(folder), reference)
    out["workers"] = _in_process(_worker_epoch, str(folder), reference, workers)
    one, four = together(str(folder), reference, 1), together(str(folder), reference, 4)
    out["together"] = {"one": one, "four": four, "ratio": four["pss_growth_total"] / max(1, one["pss_growth_total"])}
    # The same after each process has opened a one-photo replica: what the data itself costs.
    warm = folder.parent / "warm-up"
    write_replica(warm, 1 / PHOTOS, seed=1)
    one, four = together(str(folder), reference, 1, str(warm)), together(str(folder), reference, 4, str(warm))
    out["together_warm"] = {"one": one, "four": four, "ratio": four["pss_growth_total"] / max(1, one["pss_growth_total"])}
    return out


def markdown(result: dict[str, Any]) -> str:
    mb, csv = 1 << 20, result["replica"]["csv_bytes"]
    lines = [f"Replica: {result['replica']['photos']} photos, {result['replica']['masks']} masks, "
             f"{csv / 1e9:.2f} GB CSV (scale {result['scale']}).", "",
             "| reader | open 1st s | peak RSS 1st (x CSV) | open 2nd s | peak RSS 2nd MB | worker USS growth MB "
             "(4 workers) | epoch s | 1 process MB | 4 processes MB | ratio | warm: 1 process MB | "
             "warm: 4 processes MB | warm ratio |", "|---" * 13 + "|"]
    for r in result["runs"]:
        first, second, w, t, tw = r["open_first"], r["open_second"], r["workers"], r["together"], r["together_warm"]
        growth = ", ".join(f"{g / mb:.1f}" for g in w["uss_growth_per_worker"])
        lines.append(f"| {r['reader']} | {first['wall_s']:.1f} | {first['peak_rss_above_baseline'] / mb:.0f} MB "
                     f"({first['peak_rss_above_baseline'] / csv:.2f}x) | {second['wall_s']:.2f} | "
                     f"{second['peak_rss_above_baseline'] / mb:.0f} | {growth} | {w['epoch_s']:.1f} | "
                     f"{t['one']['pss_growth_total'] / mb:.1f} | {t['four']['pss_growth_total'] / mb:.1f} | "
                     f"{t['ratio']:.2f} | {tw['one']['pss_growth_total'] / mb:.1f} | "
                     f"{tw['four']['pss_growth_total'] / mb:.1f} | {tw['ratio']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full dataset (1: 45,600 photos)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--reference", action="store_true", help="also measure the reader without the index")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the replica (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the replica and its index")
    parser.add_argument("--reuse", action="store_true", help="measure a replica kept in --dir by an earlier --keep run")
    parser.add_argument("--out", type=Path, default=Path("bench_index_scale"))
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="zoo-replica-"))
    folder = root / "imat2019-replica"
    try:
        t0 = time.perf_counter()
        if args.reuse and (folder / "replica.json").exists():
            replica = json.loads((folder / "replica.json").read_text())
        else:
            replica = write_replica(folder, args.scale)
            replica["write_s"] = time.perf_counter() - t0
            (folder / "replica.json").write_text(json.dumps(replica))
        print(f"replica: {replica}", flush=True)
        runs = [measure(folder, False, args.workers)]
        if args.reference:
            runs.append(measure(folder, True, args.workers))
        result = {"scale": args.scale, "replica": replica, "runs": runs, "cpus": os.cpu_count()}
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
            if args.dir is None:
                shutil.rmtree(root, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_index_scale.json").write_text(json.dumps(result, indent=2))
    (args.out / "bench_index_scale.md").write_text(markdown(result) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
