"""A prepared GPU check: zoo's own commands on one GPU, one JSON and one Markdown table, in <= 8 min.

On one H100/H200 (``--device cuda``, the default) it runs:

* ``zoo bench`` of maskrcnn, yolact and unet (ResNet-50 backbones, the GPU presets' choice) at
  550 and 800 px, batch 1 and 8, fp32 and bf16;
* a short AMP bf16 ``zoo train`` of each at 1024 px on the embedded synthetic dataset generated
  at 1024 px, with DataLoader workers (training images/s of its epoch row);
* the YOLACT / Mask R-CNN speed ratio (images/s) at the paper's 550 px, per batch and precision.

Commands run in this process through the CLI (``zoo.cli.app``), one after the other, so CUDA
starts once. ``--budget-s`` (default 450) is a safety net: a command that would start after it
is recorded as not run. Random weights everywhere (no download). ``--device cpu --quick`` runs
the same steps at 64 px with ResNet-18, one iteration each, so a CPU test keeps the script working.

    .venv/bin/python benchmarks/gpu_check.py --out gpu_check          # on the GPU machine
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS = ("maskrcnn", "yolact", "unet")


@dataclass(frozen=True)
class Plan:
    """What the check runs: ``bench_sizes`` px with batch 1 and ``bench_batch``, fp32 and
    ``amp``; training at ``train_size`` px for ``train_steps`` steps of ``train_batch``."""

    device: str
    backbone: str
    bench_sizes: tuple[int, ...]
    bench_batch: int
    amp: str
    iters: int
    warmup: int
    train_size: int
    train_steps: int
    train_batch: int
    workers: int
    synth_n: int
    preset: str
    ratio_size: int


def make_plan(device: str, quick: bool) -> Plan:
    if quick:
        return Plan(device, "resnet18", (64,), 2, "bf16" if device == "cuda" else "none", 1, 0, 64, 2, 2, 1, 12,
                    "cpu", 64)
    workers = min(8, max(1, (os.cpu_count() or 2) // 2))
    return Plan(device, "resnet50", (550, 800), 8, "bf16", 10, 3, 1024, 30, 8, workers, 64, "gpu", 550)


def zoo(args: list[str]) -> int:
    """Run one zoo command in this process; its exit status (0: done)."""
    import click

    from zoo.cli import app

    print("$ zoo " + " ".join(args), flush=True)
    try:
        result = app(args, standalone_mode=False, prog_name="zoo")
    except click.exceptions.Exit as err:
        return int(err.exit_code)
    except click.ClickException as err:
        err.show()
        return int(err.exit_code)
    return int(result or 0)


def bench_args(plan: Plan, adapter: str, size: int, out: Path) -> list[str]:
    return ["bench", adapter, "--device", plan.device, "--size", str(size), "--batch-size", str(plan.bench_batch),
            "--amp", plan.amp, "--iters", str(plan.iters), "--warmup", str(plan.warmup), "--backbone",
            plan.backbone, "--out", str(out)]


def train_args(plan: Plan, adapter: str, out: Path) -> list[str]:
    """A short run at ``plan.train_size`` px: one stage of ``plan.train_steps`` steps, AMP,
    workers, a 4-image validation (the epoch's images/s is what is read)."""
    from zoo.adapter import get_adapter

    size = plan.train_size
    fields = get_adapter(adapter).input_size_fields
    sets = [f"model.{f}={size}" for f in fields] + [
        f"data.max_size={size}", f"data.synth_size={size}", f"data.synth_n={plan.synth_n}",
        f"data.workers={plan.workers}", f"amp={plan.amp}", "backbone_weights=null", "eval_limit=4",
        "data.val_fraction=0.1", f"stages=[{{name: all, epochs: 1, steps: {plan.train_steps}, lr: 0.0001, layers: all}}]"]
    sets.append(f"model.{get_adapter(adapter).backbone_option or 'backbone'}={plan.backbone}")
    args = ["train", adapter, "--preset", plan.preset, "--device", plan.device, "--batch-size", str(plan.train_batch),
            "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    return args


def train_speed(run: Path) -> dict[str, Any]:
    """Images/s of the run's epoch row (and its last step row) in ``metrics.csv``."""
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    epochs = [float(r["images_per_s"]) for r in rows if r["kind"] == "epoch" and r.get("images_per_s")]
    steps = [float(r["images_per_s"]) for r in rows if r["kind"] == "step" and r.get("images_per_s")]
    return {"images_per_s": epochs[-1] if epochs else None, "last_step_images_per_s": steps[-1] if steps else None}


def speed_ratios(bench: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """YOLACT images/s over Mask R-CNN's at ``size``, per (batch, amp) both were timed at."""
    def rows(adapter: str) -> dict[tuple[int, str], float]:
        return {(r["batch_size"], r["amp"]): r["images_per_s"] for r in bench
                if r["adapter"] == adapter and r["size"] == size}

    yolact, maskrcnn = rows("yolact"), rows("maskrcnn")
    return [{"size": size, "batch_size": b, "amp": a, "yolact_images_per_s": yolact[(b, a)],
             "maskrcnn_images_per_s": maskrcnn[(b, a)], "ratio": yolact[(b, a)] / maskrcnn[(b, a)]}
            for (b, a) in sorted(yolact) if (b, a) in maskrcnn]


def run_check(plan: Plan, out: Path, budget_s: float) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ZOO_HOME", str(out / "zoo_home"))  # the 1024 px synthetic set is generated there
    t0 = time.perf_counter()
    result: dict[str, Any] = {"plan": plan.__dict__, "bench": [], "train": [], "not_run": [], "failed": []}

    def step(name: str, args: list[str]) -> bool:
        if time.perf_counter() - t0 > budget_s:
            result["not_run"].append(name)
            return False
        started = time.perf_counter()
        rc = zoo(args)
        result.setdefault("seconds", {})[name] = time.perf_counter() - started
        if rc != 0:
            result["failed"].append(f"{name} (exit {rc})")
        return rc == 0

    for size in plan.bench_sizes:
        for adapter in MODELS:
            path = out / f"bench-{adapter}-{size}.json"
            if step(f"bench {adapter} {size}", bench_args(plan, adapter, size, path)):
                result["bench"] += json.loads(path.read_text())["settings"]
    for adapter in MODELS:
        run = out / f"train-{adapter}"
        if step(f"train {adapter}", train_args(plan, adapter, run)):
            result["train"].append({"adapter": adapter, "size": plan.train_size, "batch_size": plan.train_batch,
                                    "workers": plan.workers, "amp": plan.amp, **train_speed(run)})
    result["ratio"] = speed_ratios(result["bench"], plan.ratio_size)
    result["device_name"] = result["bench"][0]["device_name"] if result["bench"] else plan.device
    result["total_s"] = time.perf_counter() - t0
    return result


def markdown(result: dict[str, Any]) -> str:
    lines = [f"GPU check on {result['device_name']} ({result['total_s']:.0f} s)", "",
             "| model | backbone | px | batch | amp | img/s | ms median | ms p90 | peak MB |", "|---" * 9 + "|"]
    for r in result["bench"]:
        lines.append(f"| {r['adapter']} | {r['backbone']} | {r['size']} | {r['batch_size']} | {r['amp']} | "
                     f"{r['images_per_s']:.1f} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} | {r['peak_mem_mb']:.0f} |")
    lines += ["", "| training | px | batch | workers | amp | img/s (epoch) | img/s (last step) |", "|---" * 7 + "|"]
    for r in result["train"]:
        speeds = [f"{v:.1f}" if v is not None else "-" for v in (r["images_per_s"], r["last_step_images_per_s"])]
        lines.append(f"| {r['adapter']} | {r['size']} | {r['batch_size']} | {r['workers']} | {r['amp']} | "
                     f"{speeds[0]} | {speeds[1]} |")
    lines += ["", "| YOLACT / Mask R-CNN | px | batch | amp | ratio |", "|---" * 5 + "|"]
    for r in result["ratio"]:
        lines.append(f"| images/s | {r['size']} | {r['batch_size']} | {r['amp']} | {r['ratio']:.2f} |")
    for key in ("not_run", "failed"):
        if result[key]:
            lines += ["", f"{key.replace('_', ' ')}: {', '.join(result[key])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="64 px, ResNet-18, one iteration: the CI mode")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start no command after this many seconds")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda, but torch sees no CUDA device (use --device cpu --quick)")
    result = run_check(make_plan(args.device, args.quick), args.out, args.budget_s)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))
    (args.out / "gpu_check.md").write_text(markdown(result))
    print(markdown(result))
    if result["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
