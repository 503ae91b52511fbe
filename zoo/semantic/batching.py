"""Input sizing of the semantic family: normalise, resize to the network's side, pad to its stride."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def scaled_size(hw: torch.Size | tuple[int, int], longest: int | None) -> tuple[int, int]:
    """``(h, w)`` with the longest side ``longest`` (aspect ratio kept); ``None`` keeps ``hw``."""
    h, w = int(hw[0]), int(hw[1])
    if longest is None or max(h, w) == longest:
        return h, w
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def network_batch(images: list[Tensor], mean: Tensor, std: Tensor, longest: int | None,
                  multiple: int) -> tuple[Tensor, list[tuple[int, int]]]:
    """One padded, normalised batch from B images of any size.

    Args:
        images: B float32 ``[3, H, W]`` in ``[0, 1]``.
        mean, std: ``[3, 1, 1]`` on the network's device (the batch is built there).
        longest: longest side fed to the network (bilinear resize; ``None``: as given).
        multiple: the padded sides are multiples of this (the network's total stride).
    Returns:
        The batch float32 ``[B, 3, Hp, Wp]`` (zero-padded at the bottom/right) and each image's
        resized ``(h, w)`` inside it.
    """
    device = mean.device
    resized, valid = [], []
    for im in images:
        h, w = scaled_size(im.shape[-2:], longest)
        x = (im.to(device, torch.float32) - mean) / std
        if (h, w) != tuple(im.shape[-2:]):
            x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        resized.append(x)
        valid.append((h, w))
    hp = round_up(max(h for h, _ in valid), multiple)
    wp = round_up(max(w for _, w in valid), multiple)
    batch = torch.zeros((len(images), 3, hp, wp), device=device)
    for i, x in enumerate(resized):
        batch[i, :, : x.shape[1], : x.shape[2]] = x
    return batch, valid
