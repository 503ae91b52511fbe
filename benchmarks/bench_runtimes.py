"""PyTorch eager vs onnxruntime vs TorchScript through the one latency protocol.

Two settings, in one run: the three CPU presets at their input size (128 px, resnet18), and the
same three at 550 px with resnet50 (backbone/encoder resnet50, every input-size field 550). In
each setting every model runs on every runtime, all pairs interleaved in one
:func:`zoo.latency.time_interleaved` schedule on the same photos (JPEGs of the embedded
synthetic dataset), so load drift on a shared machine falls on all of them alike. The network
phase (``run_model``) runs on the runtime; pre- and post-processing are zoo's PyTorch code on
every runtime. Weights are fresh (seed 0, 46 categories as iMaterialist 2019).

    .venv/bin/python benchmarks/bench_runtimes.py --iters 20 --warmup 3 --out runtimes.json

Prints one markdown table per setting (median and p90 ms per image with the median's 95%
interval, the network phase, post-processing, peak memory) and writes every record with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import zoo.adapters  # noqa: F401  (registers the adapters)
from zoo.build import build_adapter
from zoo.data.synth import write_synthetic
from zoo.runtimes import RUNTIMES, time_runtimes

MODELS = ("maskrcnn", "unet", "yolact")
NUM_CLASSES = 46


def overrides(name: str, size: int | None, backbone: str | None) -> dict[str, Any]:
    """Config overrides of ``name``'s CPU preset: every input-size field ``size``, the backbone."""
    from zoo.adapter import get_adapter

    cls = get_adapter(name)
    out: dict[str, Any] = {f: size for f in cls.input_size_fields} if size else {}
    if backbone:
        out[cls.backbone_option] = backbone
    return out


def photos(n: int, side: int) -> list[np.ndarray]:
    """``n`` JPEGs of the embedded synthetic dataset, decoded (uint8 ``[side, side, 3]``)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic(Path(tmp) / "synth", n=n, size=side, seed=0)
        return [np.array(Image.open(p).convert("RGB")) for p in sorted((root / "train").glob("*.jpg"))]


def setting(size: int, backbone: str | None, args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    models = {}
    for name in MODELS:
        torch.manual_seed(0)
        models[name] = build_adapter(name, overrides(name, size, backbone), num_classes=NUM_CLASSES).eval()
    return time_runtimes(models, photos(args.photos, max(size, 256)), args.runtimes, size=size,
                         iters=args.iters, warmup=args.warmup, threads=args.threads)


def table(title: str, timed: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = [f"**{title}**", "",
            "| model | runtime | ms median [95% CI] | ms p90 | network ms | post ms | instances | peak MB |",
            "|---|---|---|---|---|---|---|---|"]
    for name, by_runtime in timed.items():
        base = by_runtime.get("torch", {}).get("ms_median")
        for runtime, r in by_runtime.items():
            lo, hi = r["ms_median_ci"]
            ratio = f" ({base / r['ms_median']:.2f}x)" if base and runtime != "torch" else ""
            rows.append(f"| {name} | {runtime} | {r['ms_median']:.1f} [{lo:.1f}, {hi:.1f}]{ratio} | {r['ms_p90']:.1f} "
                        f"| {r['model_ms']:.1f} | {r['postprocess_ms']:.1f} | {r['instances_per_image']:.0f} "
                        f"| {r['peak_mem_mb']:.0f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES))
    parser.add_argument("--large", type=int, default=550, help="side of the resnet50 setting (0: skip it)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, Any] = {"cpu_presets": setting(128, None, args)}
    print(table("CPU presets at their input size (128 px, resnet18)", results["cpu_presets"]))
    if args.large:
        results["resnet50"] = setting(args.large, "resnet50", args)
        print(table(f"{args.large} px, resnet50", results["resnet50"]))
    print(f"load average after: {os.getloadavg()}")
    first = next(iter(results["cpu_presets"].values()))["torch"]
    import onnxruntime

    print(f"device: {first['device_name']}, {first['threads']} threads, torch {first['torch']}, "
          f"onnxruntime {onnxruntime.__version__}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
