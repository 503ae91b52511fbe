"""The contract every registered adapter keeps (a new adapter is tested here automatically)."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from zoo.adapter import GROUP_ORDER, available_adapters, get_adapter, missing_capabilities, set_trainable
from zoo.build import build_adapter
from zoo.types import InstancePred

NUM_CLASSES = 3
# Every registered adapter with its defaults, and other smp architectures through the same
# semantic path (the unet adapter's model.arch).
VARIANTS = [(name, {}) for name in available_adapters()] + [
    ("unet", {"arch": arch}) for arch in ("fpn", "deeplabv3plus", "pspnet")]


def _target(h: int, w: int, boxes: list[tuple[int, int, int, int]], labels: list[int]) -> dict:
    masks = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = 1
    return {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                          format="XYXY", canvas_size=(h, w)),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": tv_tensors.Mask(masks),
        "attributes": [[] for _ in boxes],
        "image_id": 0,
    }


def _batch() -> tuple[list[torch.Tensor], list[dict]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 96, generator=g), torch.rand(3, 64, 80, generator=g), torch.rand(3, 64, 64, generator=g)]
    targets = [
        _target(96, 96, [(10, 12, 50, 70), (40, 30, 90, 60)], [1, 2]),
        _target(64, 80, [(5, 5, 40, 40)], [3]),
        _target(64, 64, [], []),  # an image with no instances
    ]
    return images, targets


@pytest.fixture(params=VARIANTS, ids=lambda v: "-".join([v[0], *v[1].values()]))
def adapter(request):
    torch.manual_seed(0)
    name, overrides = request.param
    return build_adapter(name, overrides, num_classes=NUM_CLASSES)


@pytest.mark.parametrize("name", available_adapters())
def test_adapter_declares_what_the_harness_and_report_read(name):
    problems = missing_capabilities(get_adapter(name))
    assert not problems, f"adapter {name!r}: " + "; ".join(problems)


def test_losses_are_finite_and_backpropagate(adapter):
    images, targets = _batch()
    adapter.train()
    losses = adapter(images, targets)
    assert losses and all(v.ndim == 0 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    grads = [p.grad for p in adapter.parameters() if p.requires_grad and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_empty_targets_give_finite_losses(adapter):
    images, targets = _batch()
    losses = adapter(images[2:], targets[2:])
    assert all(torch.isfinite(v) for v in losses.values())


def test_predict_shapes_and_ranges(adapter):
    images, _ = _batch()
    preds = adapter.predict(images)
    assert len(preds) == len(images)
    for image, pred in zip(images, preds):
        assert isinstance(pred, InstancePred)
        n = len(pred)
        h, w = image.shape[-2:]
        assert pred.boxes.shape == (n, 4) and pred.boxes.dtype == torch.float32
        assert pred.labels.shape == (n,) and pred.labels.dtype == torch.int64
        assert pred.scores.shape == (n,) and pred.scores.dtype == torch.float32
        assert pred.masks.shape == (n, h, w) and pred.masks.dtype == torch.bool
        if n:
            assert ((pred.labels >= 1) & (pred.labels <= NUM_CLASSES)).all()
            assert ((pred.scores >= 0) & (pred.scores <= 1)).all()


def test_param_groups_cover_every_parameter_once(adapter):
    groups = adapter.param_groups()
    assert set(groups) <= set(GROUP_ORDER) and "heads" in groups
    seen = [id(p) for params in groups.values() for p in params]
    assert len(seen) == len(set(seen)), "a parameter is in two groups"
    assert set(seen) == {id(p) for p in adapter.parameters()}, "a parameter is in no group"


def test_heads_stage_freezes_the_backbone(adapter):
    set_trainable(adapter, "heads")
    groups = adapter.param_groups()
    assert all(p.requires_grad for p in groups["heads"])
    assert all(not p.requires_grad for g, ps in groups.items() if g != "heads" for p in ps)
    set_trainable(adapter, "all")
    assert all(p.requires_grad for p in adapter.parameters())
