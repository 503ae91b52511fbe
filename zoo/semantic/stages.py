"""Parameter groups of any backbone, found from the stride of each module's output.

Staged training names backbone depth as stem/stage2..stage5 (:data:`zoo.adapter.GROUP_ORDER`).
Rather than a table of module names per backbone family, one dummy forward measures the stride
of every module's output: stride 1-2 is the stem, 4 stage2, 8 stage3, 16 stage4, 32 (and more)
stage5, the C2..C5 convention; for a ResNet that is conv1/bn1, layer1, layer2, layer3, layer4. A
dilated stage keeps the stride of the one before it and joins its group.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from zoo.adapter import GROUP_ORDER

STRIDE_GROUPS: dict[int, str] = {1: "stem", 2: "stem", 4: "stage2", 8: "stage3", 16: "stage4"}


def _stride_hook(name: str, stride_of: dict[str, int], last: list[int], side: int) -> Callable[..., None]:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (list, tuple)) else output
        if isinstance(out, Tensor) and out.dim() == 4:
            last[0] = max(1, side // max(1, out.shape[-1]))
        stride_of[name] = last[0]

    return hook


def stage_of_parameters(backbone: nn.Module, side: int = 64) -> dict[str, str]:
    """Parameter name (as ``backbone.named_parameters`` gives it) -> group, from one forward.

    The backbone is run once on zeros ``[1, 3, side, side]`` in eval mode (batch-norm statistics
    untouched); a module that returns no 4-D tensor (tokens, lists) takes the stride of the last
    one that did, and a module that never runs the group of the one before it.
    """
    stride_of: dict[str, int] = {}
    last = [1]  # stride of the latest 4-D output, shared so token-shaped outputs inherit it
    hooks = [m.register_forward_hook(_stride_hook(name, stride_of, last, side))
             for name, m in backbone.named_modules() if any(True for _ in m.parameters(recurse=False))]
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(torch.zeros(1, 3, side, side, device=next(backbone.parameters()).device))
    finally:
        backbone.train(was_training)
        for h in hooks:
            h.remove()
    groups, current = {}, "stem"
    for mod_name, m in backbone.named_modules():
        if mod_name in stride_of:
            current = STRIDE_GROUPS.get(stride_of[mod_name], "stage5")
        for p_name, _ in m.named_parameters(recurse=False):
            groups[f"{mod_name}.{p_name}" if mod_name else p_name] = current
    return groups


def backbone_groups(model: nn.Module, backbone: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Every parameter of ``model`` by group: ``backbone``'s by stride, all others ``"heads"``.

    Groups come in :data:`GROUP_ORDER`, parameters in ``model.parameters()`` order; the result is
    what :meth:`zoo.adapter.Adapter.param_groups` returns.
    """
    by_name = stage_of_parameters(backbone)
    stage_of = {id(p): by_name[name] for name, p in backbone.named_parameters()}
    groups: dict[str, list[nn.Parameter]] = {}
    for p in model.parameters():
        groups.setdefault(stage_of.get(id(p), "heads"), []).append(p)
    return {g: groups[g] for g in GROUP_ORDER if g in groups}
