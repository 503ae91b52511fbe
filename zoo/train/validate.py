"""Per-epoch validation: validation loss (the source study's model choice), mask AP and, for a
model with an attribute head, its decision threshold (chosen on the validation images)."""

from __future__ import annotations

from typing import Any

import torch

from zoo.adapter import Adapter
from zoo.attributes import best_threshold, matched_attributes
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


def choose_attribute_threshold(adapter: Adapter, dataset: Any, indices: list[int], batch_size: int,
                               device: torch.device) -> dict[str, float]:
    """Set the adapter's attribute threshold to the one maximising mean attribute F1 on the
    ground-truth instances of ``indices`` that its predictions match (mask IoU >= 0.5, same
    category); returns ``attr_threshold`` and that ``attr_F1`` (empty when the model has no
    attribute head, its config fixes the threshold, or nothing matched: the threshold stays)."""
    if adapter.attribute_space is None or adapter.cfg.attribute_threshold is not None or not indices:
        return {}
    preds, targets = [], []
    for start in range(0, len(indices), batch_size):
        batch = [dataset[i] for i in indices[start:start + batch_size]]
        preds += [p.to("cpu") for p in adapter.predict([to_model_input(im).to(device) for im, _ in batch])]
        targets += [t for _, t in batch]
    probs, truth, _ = matched_attributes(preds, targets, adapter.attribute_space)
    if probs.shape[0] == 0:
        return {}
    threshold, f1 = best_threshold(probs, truth)
    adapter.set_attribute_threshold(threshold)
    return {"attr_threshold": threshold, "attr_F1": f1}


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
                result.update(choose_attribute_threshold(adapter, dataset, indices, cfg.batch_size, device))
        train_mode(adapter)
    D.barrier(dist)
    return result
