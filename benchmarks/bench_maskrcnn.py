"""Mask R-CNN inference: the adapter's ``predict`` against plain torchvision, and CPU images/s.

1. Overhead: ``adapter.predict(images)`` vs torchvision ``MaskRCNN(images)`` in eval mode, the
   same weights (the adapter's state dict loaded into the torchvision model) and the same input.
   Repetitions alternate which one runs first, so load from other processes hits both alike; the
   ratio of the medians is the overhead. Both paste masks at the input size; the adapter also
   thresholds them into booleans.
2. Throughput: :func:`zoo.latency.measure_latency` (the protocol every model is timed with) at
   ``--size`` px, for the CPU preset and for the preset network run at ``--size`` inside
   (``min_size = max_size = size``, no downscaling).

3. ``--profile-steps N``: profiles N training steps of the CPU preset (batch 2 of synthetic
   128 px images, forward + backward + AdamW) with ``torch.profiler`` and prints the operators
   with the largest share of CPU time; the figures the preset's sampling sizes were chosen from.

Weights are random and the score threshold 0, so every image yields ``detections_per_image``
instances: the upper bound of the postprocessing work.

    .venv/bin/python benchmarks/bench_maskrcnn.py --size 512 --reps 15 --iters 10 --threads 2
    .venv/bin/python benchmarks/bench_maskrcnn.py --profile-steps 10 --threads 2
    .venv/bin/python benchmarks/bench_maskrcnn.py --profile-steps 10 --threads 2 --profile-heads torchvision
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

import zoo.adapters  # noqa: F401  (registers "maskrcnn")
from zoo.adapters.maskrcnn import MaskRCNNAdapter, MaskRCNNConfig, build_torchvision_maskrcnn
from zoo.build import DEFAULT_NUM_CLASSES
from zoo.latency import device_name, make_photos, measure_latency, preprocess


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def overhead(cfg: MaskRCNNConfig, size: int, batch: int, reps: int) -> dict[str, Any]:
    """Median seconds per call of the adapter and of torchvision, interleaved, on one input."""
    torch.manual_seed(0)
    adapter = MaskRCNNAdapter(cfg, DEFAULT_NUM_CLASSES).eval()
    reference = build_torchvision_maskrcnn(cfg, DEFAULT_NUM_CLASSES).eval()
    reference.load_state_dict(adapter.state_dict())
    images = preprocess(make_photos(batch, size), torch.device("cpu"))

    def run_reference() -> Any:
        with torch.inference_mode():
            return reference(images)

    def run_adapter() -> Any:
        return adapter.predict(images)

    ours, theirs = run_adapter(), run_reference()  # warm-up, and the two must agree
    same = all(torch.equal(p.labels, r["labels"]) and torch.allclose(p.boxes, r["boxes"])
               for p, r in zip(ours, theirs))
    adapter_s, reference_s = [], []
    for rep in range(reps):
        pair = [(adapter_s, run_adapter), (reference_s, run_reference)]
        for times, fn in pair if rep % 2 == 0 else pair[::-1]:
            times.append(_timed(fn))
    a, r = statistics.median(adapter_s), statistics.median(reference_s)
    return {"size": size, "batch": batch, "reps": reps, "adapter_ms": 1000 * a, "torchvision_ms": 1000 * r,
            "overhead_pct": 100 * (a / r - 1), "same_detections": same,
            "instances_per_image": sum(len(p) for p in ours) / batch}


def profile_training(cfg: MaskRCNNConfig, steps: int, top: int = 12) -> None:
    """Profile ``steps`` training steps (after 3 warm-up steps) and print the top operators."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    from zoo.data.dataset import open_dataset
    from zoo.config import DataConfig
    from zoo.data.synth import write_synthetic
    from zoo.train.loader import collate
    from zoo.transforms import to_model_input

    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(Path(tmp) / "synth", n=8, size=cfg.max_size, seed=0)
        dataset = open_dataset(DataConfig(source=str(data), max_size=cfg.max_size))
        batches = [collate([(to_model_input(im), t) for im, t in (dataset[i], dataset[i + 1])])
                   for i in range(0, 8, 2)]
    torch.manual_seed(0)
    model = MaskRCNNAdapter(cfg, DEFAULT_NUM_CLASSES).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(i: int) -> None:
        images, targets = batches[i % len(batches)]
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(3):
        step(i)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(i)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"[profile] {steps} training steps of 2 images at {cfg.max_size} px: {1000 * wall / steps:.0f} ms "
          f"per step (profiled)")
    print("| operator | share of CPU time | calls per step |\n|---|---:|---:|")
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]:
        print(f"| `{e.key}` | {100 * e.self_cpu_time_total / total:.1f} % | {e.count / steps:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square input side in pixels")
    parser.add_argument("--batch", type=int, default=1, help="images per call in the overhead test")
    parser.add_argument("--reps", type=int, default=15, help="interleaved repetitions (overhead)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations (throughput)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="profile this many training steps of the CPU preset instead")
    parser.add_argument("--profile-heads", choices=["preset", "torchvision"], default="preset",
                        help="profile the preset's heads or torchvision's defaults (256-channel FPN, "
                             "512 sampled ROIs, 1024-wide box head, 4 x 256 mask head) at the preset's size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile_steps:
        cfg = MaskRCNNConfig()
        if args.profile_heads == "torchvision":
            cfg = dataclasses.replace(cfg, fpn_channels=256, rpn_batch_size_per_image=256,
                                      rpn_pre_nms_top_n_train=2000, rpn_post_nms_top_n_train=2000,
                                      box_batch_size_per_image=512, representation_size=1024,
                                      mask_head_layers=(256, 256, 256, 256))
        profile_training(cfg, args.profile_steps)
        return

    # Random weights give no detection above the usual 0.05 score for 46 classes; a 0 threshold keeps
    # detections_per_image (100) per image, the most mask pasting either model ever does.
    preset = MaskRCNNConfig(box_score_thresh=0.0)
    full = dataclasses.replace(preset, min_size=args.size, max_size=args.size)
    result: dict[str, Any] = {"machine": f"{device_name(torch.device('cpu'))} ({platform.machine()})",
                              "threads": args.threads, "torch": torch.__version__}
    for name, cfg in (("preset", preset), (f"network_at_{args.size}", full)):
        over = overhead(cfg, args.size, args.batch, args.reps)
        print(f"[{name}] adapter {over['adapter_ms']:.1f} ms vs torchvision {over['torchvision_ms']:.1f} ms "
              f"per call: overhead {over['overhead_pct']:+.1f}% (same detections: {over['same_detections']}, "
              f"{over['instances_per_image']:.0f} per image)", flush=True)
        torch.manual_seed(0)
        latency = measure_latency(MaskRCNNAdapter(cfg, DEFAULT_NUM_CLASSES), device="cpu", size=args.size,
                                  iters=args.iters, warmup=2, threads=args.threads)
        print(f"[{name}] measure_latency at {args.size} px: {latency['images_per_s']:.2f} images/s, "
              f"median {latency['ms_median']:.0f} ms (model {latency['model_ms']:.0f}, "
              f"postprocess {latency['postprocess_ms']:.0f}), peak {latency['peak_mem_mb']:.0f} MB", flush=True)
        result[name] = {"network_input": cfg.max_size, "overhead": over, "latency": latency}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
