"""Boxes from masks: the one helper the data core, the augmentation and the semantic models use."""

from __future__ import annotations

import numpy as np
from torch import Tensor


def mask_boxes(masks: np.ndarray | Tensor) -> np.ndarray:
    """Tight XYXY boxes float32 ``[N, 4]`` of masks ``[N, H, W]`` (bool or 0/1, on the CPU).

    Edges are pixel edges: ``x2``/``y2`` lie one past the last pixel, so a box is as wide as its
    mask. An empty mask gets ``[0, 0, 0, 0]``. The result equals ``torchvision.ops.masks_to_boxes``
    plus one on ``x2``/``y2``; that function converts the masks to a bool tensor and reduces it
    with torch, 10-15x slower on the CPU than these numpy row/column reductions on the data
    loader's uint8 masks (and it wakes torch's thread pool in the loading process).
    """
    values = masks.numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    n, h, w = values.shape
    if n == 0:
        return np.zeros((0, 4), dtype=np.float32)
    rows, cols = values.any(axis=2), values.any(axis=1)  # [N, H], [N, W]: rows/columns holding the mask
    boxes = np.stack([cols.argmax(axis=1), rows.argmax(axis=1),
                      w - cols[:, ::-1].argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)], axis=1)
    boxes[~rows.any(axis=1)] = 0
    return boxes.astype(np.float32)

