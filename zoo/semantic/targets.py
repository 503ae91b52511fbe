"""Training targets and losses of the semantic family: one sigmoid channel per category.

The maps are multi-label: a sleeve pixel is also a shirt pixel, so categories are independent
sigmoid channels (BCE + Dice), not one softmax over categories.
"""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def multilabel_targets(targets: list[dict[str, Any]], num_classes: int, valid: list[tuple[int, int]],
                       padded: tuple[int, int], device: torch.device) -> Tensor:
    """C-channel multi-label maps float32 ``[B, C, Hp, Wp]``: 1 where any instance of the category lies.

    Args:
        targets: B target dicts (``masks`` uint8 ``[N, H, W]``, ``labels`` int64 ``[N]`` in ``1..C``).
        num_classes: C.
        valid: per image, the ``(h, w)`` its masks are resized to (nearest) inside the padded map.
        padded: ``(Hp, Wp)`` of the network input; outside each ``valid`` region the maps are 0.
        device: where the maps are built.
    """
    out = torch.zeros((len(targets), num_classes, *padded), device=device)
    for i, (t, (h, w)) in enumerate(zip(targets, valid)):
        masks = torch.as_tensor(t["masks"]).to(out.device)
        if masks.shape[0] == 0:
            continue
        labels = torch.as_tensor(t["labels"]).to(out.device).long() - 1
        m = F.interpolate(masks[None].float(), size=(h, w), mode="nearest")[0]
        # one-hot [C, N] @ masks [N, h*w] counts instances per category; clamp to a 0/1 union
        onehot = F.one_hot(labels, num_classes).T.float()
        out[i, :, :h, :w] = (onehot @ m.flatten(1)).clamp(max=1).view(-1, h, w)
    return out


def attribute_maps(targets: list[dict[str, Any]], space: Any, valid: list[tuple[int, int]],
                   padded: tuple[int, int], device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-pixel attribute targets float32 ``[B, A, Hp, Wp]`` (the attributes of the garments under
    each pixel) and bool ``[B, Hp, Wp]``: the pixels of garments that teach attributes
    (:meth:`zoo.attributes.AttributeSpace.trains_on`); masks resized as in :func:`multilabel_targets`."""
    maps = torch.zeros((len(targets), len(space), *padded), device=device)
    teach = torch.zeros((len(targets), *padded), dtype=torch.bool, device=device)
    for i, (t, (h, w)) in enumerate(zip(targets, valid)):
        masks = torch.as_tensor(t["masks"]).to(device)
        labels = torch.as_tensor(t["labels"]).to(device).long()
        attrs = t.get("attributes") or [[] for _ in range(masks.shape[0])]
        chosen = space.trains_on(labels, attrs)
        if not bool(chosen.any()):
            continue
        m = F.interpolate(masks[chosen][None].float(), size=(h, w), mode="nearest")[0].flatten(1)  # [n, h*w]
        hot = space.multi_hot([a for a, c in zip(attrs, chosen.tolist()) if c], device)  # [n, A]
        maps[i, :, :h, :w] = (hot.T @ m).clamp(max=1).view(-1, h, w)
        teach[i, :h, :w] = (m.sum(0) > 0).view(h, w)
    return maps, teach


class BceDiceLoss(nn.Module):
    """Weighted BCE and Dice (``smp.losses``) of multi-label logits; a weight of 0 leaves a term out.

    smp averages Dice over all C channels, absent categories counting 0; the Dice term is rescaled
    to the mean over the categories present in the batch, so it does not shrink as C grows. An
    image without instances gives a Dice term of 0 and a finite BCE term.
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.bce = smp.losses.SoftBCEWithLogitsLoss()
        self.dice = smp.losses.DiceLoss(smp.losses.MULTILABEL_MODE, from_logits=True)

    def forward(self, logits: Tensor, target: Tensor) -> dict[str, Tensor]:
        """``{"loss_bce", "loss_dice"}`` (the terms with a weight > 0) of float32 ``[B, C, H, W]`` logits
        against 0/1 maps of the same shape."""
        losses = {}
        if self.bce_weight > 0:
            losses["loss_bce"] = self.bce_weight * self.bce(logits, target)
        if self.dice_weight > 0:
            present = (target.sum(dim=(0, 2, 3)) > 0).sum().clamp(min=1)
            losses["loss_dice"] = self.dice_weight * self.dice(logits, target) * (logits.shape[1] / present)
        return losses
