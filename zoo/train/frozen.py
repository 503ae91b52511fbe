"""Frozen means frozen: normalisation layers of frozen parameter groups stay in eval mode.

``requires_grad_(False)`` stops gradients, but a batch-norm layer in train mode still replaces
its running mean and variance with each batch's. The harness calls :func:`train_mode` instead
of ``adapter.train()``, for every adapter, so a ``heads`` stage leaves the backbone bit-identical.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _NormBase


def frozen_norms(model: nn.Module) -> list[nn.Module]:
    """Normalisation layers with running statistics (BatchNorm, InstanceNorm with
    ``track_running_stats``, SyncBatchNorm) whose parameters are all frozen (or that have none)."""
    return [m for m in model.modules() if isinstance(m, _NormBase) and m.track_running_stats
            and not any(p.requires_grad for p in m.parameters(recurse=False))
            and _inside_frozen(model, m)]


def _inside_frozen(model: nn.Module, norm: nn.Module) -> bool:
    # A norm without affine parameters belongs to the group of the layers around it: it counts as
    # frozen only when nothing it feeds next to is trained, i.e. its parent has no trainable parameter.
    if any(True for _ in norm.parameters(recurse=False)):
        return True
    for parent in model.modules():
        if any(child is norm for child in parent.children()):
            return not any(p.requires_grad for p in parent.parameters())
    return True


def train_mode(model: nn.Module) -> list[nn.Module]:
    """``model.train()``, then every frozen normalisation layer back to ``eval()``; returns those layers."""
    model.train()
    norms = frozen_norms(model)
    for m in norms:
        m.eval()
    return norms
