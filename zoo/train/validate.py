"""Per-epoch validation: validation loss (the source study's model choice) and mask AP."""

from __future__ import annotations

from typing import Any

import torch

from zoo.adapter import Adapter
from zoo.config import TrainConfig
from zoo.train import distributed as D
from zoo.train.frozen import train_mode
from zoo.train.loader import collate, move_batch
from zoo.transforms import to_model_input


def validation_loss(adapter: Adapter, dataset: Any, indices: list[int], batch_size: int,
                    device: torch.device) -> float | None:
    """Mean summed loss over ``indices`` (batch-norm statistics frozen, no gradient)."""
    if not indices:
        return None
    total, batches = 0.0, 0
    for start in range(0, len(indices), batch_size):
        batch = [dataset[i] for i in indices[start:start + batch_size]]
        images, targets = collate([(to_model_input(im), t) for im, t in batch])
        images, targets = move_batch(images, targets, device)
        losses = adapter.validation_losses(images, targets)
        total += float(sum(losses.values()))
        batches += 1
    return total / batches


def validate(adapter: Adapter, dataset: Any, val_indices: list[int], cfg: TrainConfig,
             device: torch.device, dist: D.DistInfo) -> dict[str, Any]:
    """Rank 0 scores the first ``cfg.eval_limit`` validation images; other ranks wait.

    Runs inside a forked RNG so that validation never changes what training draws next.
    """
    result: dict[str, Any] = {}
    if dist.is_main:
        indices = list(val_indices if cfg.eval_limit is None else val_indices[: cfg.eval_limit])
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result["val_loss"] = validation_loss(adapter, dataset, indices, cfg.batch_size, device)
            if indices:
                from zoo.metrics.evaluate import evaluate_adapter

                metrics = evaluate_adapter(adapter, dataset, indices, device=str(device),
                                           batch_size=cfg.batch_size, out_dir=None, plots=False)
                result["segm_AP"] = metrics["segm"]["AP"]
                result["segm_AP50"] = metrics["segm"]["AP50"]
                result["bbox_AP"] = metrics["bbox"]["AP"]
        train_mode(adapter)
    D.barrier(dist)
    return result
