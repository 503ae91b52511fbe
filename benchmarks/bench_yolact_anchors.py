"""How well YOLACT's anchors cover the garments of a dataset at a given input size.

For each anchor setting, every ground-truth box of the first ``--images`` training images (at the
network input size) is matched with the adapter's own anchors and matching rule
(``adapters.yolact.boxes.match``: IoU >= 0.5 positive, < 0.4 background, each box forced onto its
best anchor). Printed per setting: anchors per image, the median best-anchor IoU, the share of
boxes whose best anchor has IoU < 0.5 (they get only the one forced, poorly fitting positive) and
positives per box (the training signal an object gets).

    .venv/bin/python benchmarks/bench_yolact_anchors.py --size 128 --images 100

Settings: ``paper`` (P3-P7, 24-384 px at 550 scaled by size / 550, 3 ratios, as the paper),
``p2`` (P2-P6 with Mask R-CNN's 8-128 px anchors in input pixels, 3 ratios) and ``preset``
(the CPU preset: ``p2`` with YOLACT++'s three scales per level).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zoo.adapters  # noqa: E402,F401  (registers the adapters)
from zoo.adapters.yolact.adapter import PAPER_PYRAMID  # noqa: E402
from zoo.adapters.yolact.boxes import box_iou, match, point_form  # noqa: E402
from zoo.build import build_adapter  # noqa: E402
from zoo.data.dataset import open_dataset  # noqa: E402
from zoo.data.split import split_indices  # noqa: E402
from zoo.train.api import load_train_config  # noqa: E402

SETTINGS: dict[str, dict[str, Any]] = {
    "paper": dict(PAPER_PYRAMID),
    "p2": {"min_level": 2, "anchor_scales": (8.0, 16.0, 32.0, 64.0, 128.0), "anchor_reference_size": None,
           "anchor_octaves": (1.0,)},
    "preset": {},
}


def anchors_of(overrides: dict[str, Any], size: int, num_classes: int) -> torch.Tensor:
    """``[A, 4]`` centre-form anchors of a YOLACT built with ``overrides`` at ``size``."""
    net = build_adapter("yolact", {"fpn_channels": 16, "proto_channels": 16, "num_prototypes": 4,
                                   "input_size": size, **overrides}, num_classes=num_classes).eval()
    with torch.no_grad():
        return net._network([torch.zeros(3, size, size)], with_semantic=False).anchors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128, help="network input side in pixels")
    parser.add_argument("--images", type=int, default=100, help="training images whose boxes are matched")
    parser.add_argument("--data", default=None, help="dataset (default: the embedded synthetic one)")
    args = parser.parse_args()

    extra = [f"data.source={args.data}"] if args.data else []
    cfg = load_train_config("yolact", preset="cpu", overrides=[f"data.max_size={args.size}"] + extra)
    dataset = open_dataset(cfg.data)
    train_idx, _ = split_indices(dataset.label_sets(), cfg.data.val_fraction, cfg.seed, cfg.data.split)
    boxes = []
    for i in list(train_idx)[: args.images]:
        image, target = dataset[i]
        h, w = image.shape[-2:]
        b = torch.as_tensor(target["boxes"]).as_subclass(torch.Tensor).float().reshape(-1, 4)
        labels = torch.as_tensor(target["labels"]).as_subclass(torch.Tensor)
        boxes.append((b / torch.tensor([w, h, w, h]), labels))
    sides = torch.cat([(b[:, 2:] - b[:, :2]) * args.size for b, _ in boxes])
    print(f"{sum(len(b) for b, _ in boxes)} boxes in {len(boxes)} images at {args.size} px; "
          f"box width median {sides[:, 0].median():.1f} px, height median {sides[:, 1].median():.1f} px")
    print("| setting | anchors/image | best-anchor IoU (median) | boxes with best IoU < 0.5 | positives per box (mean) |")
    print("|---|---:|---:|---:|---:|")
    for name, overrides in SETTINGS.items():
        anchors = anchors_of(overrides, args.size, dataset.num_classes)
        best, positives = [], []
        for b, labels in boxes:
            if len(b) == 0:
                continue
            best += box_iou(b, point_form(anchors)).max(dim=1).values.tolist()
            conf_t, idx_t, _ = match(b, labels, anchors)
            positives += torch.bincount(idx_t[conf_t > 0], minlength=len(b)).tolist()
        best_a = np.array(best)
        print(f"| {name} | {len(anchors)} | {np.median(best_a):.2f} | {np.mean(best_a < 0.5) * 100:.0f} % | "
              f"{np.mean(positives):.1f} |")


if __name__ == "__main__":
    main()
