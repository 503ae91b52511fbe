"""The semantic family's attribute head: per-pixel attribute maps from the encoder's deep features.

An attribute describes a whole garment (its length, neckline, pattern), so the maps are read
from where the network sees whole garments: the encoder's two deepest stages (strides 16 and 32
for a resnet), merged FPN-style, not from the last decoder layer (16 channels at full
resolution, built for boundaries). The maps are upsampled to the input size; an instance's
attributes are then the mean of its component's pixels (:func:`zoo.semantic.instances.component_attributes`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from zoo.attributes import PRIOR_LOGIT


class AttributeHead(nn.Module):
    """Encoder features ``[..., [B, C_2, H/16, W/16], [B, C_1, H/32, W/32]]`` -> attribute logits
    ``[B, A, H/16, W/16]`` (the stride of the second deepest stage).

    Args:
        channels: ``(C_2, C_1)``, the widths of the two deepest stages.
        num_attributes: A.
        width: channels inside the head.
    """

    def __init__(self, channels: tuple[int, int], num_attributes: int, width: int = 128) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(channels[0], width, 1)
        self.top = nn.Conv2d(channels[1], width, 1)
        self.mix = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, num_attributes, 1)
        nn.init.constant_(self.out.bias, PRIOR_LOGIT)  # every attribute starts at the prior (small loss)

    def forward(self, features: list[Tensor]) -> Tensor:
        second, deepest = features[-2], features[-1]
        top = F.interpolate(self.top(deepest), size=second.shape[-2:], mode="nearest")
        return self.out(self.mix(self.lateral(second) + top))
