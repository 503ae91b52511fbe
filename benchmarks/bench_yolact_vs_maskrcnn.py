"""YOLACT-style vs Mask R-CNN inference speed through the shared latency protocol.

Both models get the same backbone, the same square input size, the same device and thread count,
and the same detections-per-image cap (100). Freshly initialised models score almost every class
near 1 / (C + 1), so the usual 0.05 score threshold would let one model skip its mask stage and not
the other; both run with a score threshold of 0 instead, which makes each fill its cap of 100
detections and do its full mask work, as a trained model does on a busy photo.

Head widths are each model's reference ones (``--widths reference``: YOLACT 256-channel FPN and
protonet, the paper's P3-P7 pyramid and anchors; torchvision's Mask R-CNN 256-channel FPN, 1024-wide box head, 4 x 256 mask head,
1000 proposals) or each adapter's CPU preset (``--widths preset``).

    .venv/bin/python benchmarks/bench_yolact_vs_maskrcnn.py --sizes 550 192 --backbone resnet18 --threads 2

Prints a markdown table (images/s, ms per image by phase, detections per image, ratios) and
writes the raw protocol output of every round as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import zoo.adapters  # noqa: F401  (registers the adapters)
from zoo.adapters.yolact.adapter import PAPER_PYRAMID
from zoo.build import build_adapter
from zoo.latency import measure_latency

CAP = 100  # detections per image, both models
NUM_CLASSES = 46  # iMaterialist 2019


def model_overrides(name: str, backbone: str, size: int, widths: str) -> dict[str, Any]:
    """Config overrides that put ``name`` at ``size`` with ``backbone``, the shared cap and threshold 0."""
    if name == "yolact":
        out: dict[str, Any] = {"backbone": backbone, "input_size": size, "score_threshold": 0.0,
                               "max_detections": CAP}
        if widths == "reference":
            out.update(fpn_channels=256, proto_channels=256, num_prototypes=32, **PAPER_PYRAMID)
        return out
    out = {"backbone": backbone, "min_size": size, "max_size": size, "box_score_thresh": 0.0,
           "detections_per_image": CAP}
    if widths == "reference":  # torchvision's maskrcnn_resnet50_fpn values
        out.update(fpn_channels=256, representation_size=1024, mask_head_layers=[256, 256, 256, 256],
                   rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=1000)
    return out


def bench(size: int, backbone: str, widths: str, device: str, iters: int, warmup: int,
          threads: int | None, rounds: int) -> dict[str, Any]:
    """Latency protocol results of both models at one size, ``rounds`` times, alternating.

    On a shared machine other jobs come and go; alternating the two models round by round and
    keeping each model's fastest round compares both at the least disturbed moments seen.
    """
    models = {name: build_adapter(name, model_overrides(name, backbone, size, widths), num_classes=NUM_CLASSES)
              for name in ("yolact", "maskrcnn")}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in models}
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            runs[name].append(measure_latency(models[name], device=device, size=size, batch_size=1, iters=iters,
                                              warmup=warmup, threads=threads))
    best = {name: max(rows, key=lambda row: row["images_per_s"]) for name, rows in runs.items()}
    ratios = [y["images_per_s"] / m["images_per_s"] for y, m in zip(runs["yolact"], runs["maskrcnn"])]
    return {"best": best, "round_ratios": ratios, "runs": runs}


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| size | model | params (M) | images/s | ms median | model ms | post ms | detections/img "
             "| speed-up (best rounds) | speed-up per round |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for result in results:
        rows = result["best"]
        ratio = rows["yolact"]["images_per_s"] / rows["maskrcnn"]["images_per_s"]
        per_round = ", ".join(f"{x:.2f}x" for x in result["round_ratios"])
        for name, r in rows.items():
            lines.append(f"| {r['size']} | {name} | {r['params'] / 1e6:.1f} | {r['images_per_s']:.3f} | "
                         f"{r['ms_median']:.0f} | {r['model_ms']:.0f} | {r['postprocess_ms']:.0f} | "
                         f"{r['instances_per_image']:.0f} | {f'{ratio:.2f}x' if name == 'yolact' else ''} | "
                         f"{per_round if name == 'yolact' else ''} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[550], help="square input sides in pixels")
    parser.add_argument("--backbone", default="resnet18", help="backbone of both models")
    parser.add_argument("--widths", choices=["reference", "preset"], default="reference")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements of each model")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the raw results")
    args = parser.parse_args()
    results = [bench(s, args.backbone, args.widths, args.device, args.iters, args.warmup, args.threads, args.rounds)
               for s in args.sizes]
    first = results[0]["best"]["yolact"]
    print(f"{args.backbone} backbone, {args.widths} head widths, {first['device_name']}, "
          f"{first['threads']} threads, batch 1, {args.rounds} alternating rounds of {args.iters} timed "
          f"iterations after {args.warmup} warm-up; each model's fastest round")
    print(markdown(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
