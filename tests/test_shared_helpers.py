"""Small shared helpers of zoo: boxes from masks and device names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

from zoo.boxes import mask_boxes
from zoo.device import resolve_device
from zoo.errors import UserError


def test_mask_boxes_are_torchvisions_with_exclusive_right_and_bottom_edges() -> None:
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 17, 23, generator=g) > 0.9
    masks[0] = False
    masks[0, 4, 7] = True  # a single pixel: a 1x1 box
    expected = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    for given in (masks, masks.to(torch.uint8), masks.numpy()):
        boxes = mask_boxes(given)
        assert boxes.dtype == np.float32 and boxes.shape == (6, 4)
        assert torch.equal(torch.from_numpy(boxes), expected)
    assert mask_boxes(masks)[0].tolist() == [7, 4, 8, 5]


def test_mask_boxes_of_no_masks_and_of_an_empty_mask() -> None:
    assert mask_boxes(np.zeros((0, 5, 5), np.uint8)).shape == (0, 4)
    masks = np.zeros((2, 5, 5), np.uint8)
    masks[1, 1:3, 2:4] = 1
    assert mask_boxes(masks).tolist() == [[0, 0, 0, 0], [2, 1, 4, 3]]


def test_resolve_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    with pytest.raises(UserError, match="unsupported device 'meta'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda:1")
