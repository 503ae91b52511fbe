"""The contract every registered adapter keeps (a new adapter is tested here automatically)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision import tv_tensors

from zoo.adapter import (GROUP_ORDER, available_adapters, build_with_attributes, get_adapter, missing_capabilities,
                         set_trainable)
from zoo.attributes import AttributeSpace, space_from_state
from zoo.build import build_adapter, model_config
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


# ---------------------------------------------------------------- attributes
# Non-contiguous source ids, as Fashionpedia numbers them; categories 1 and 2 carry attributes, 3 does not.
SPACE = AttributeSpace(ids=(3, 7, 20, 61, 294), names=("mini", "knee", "symmetrical", "plain", "zebra"),
                       labels=(1, 2))
ATTRIBUTE_ADAPTERS = [name for name in available_adapters() if get_adapter(name).predicts_attributes]


def _attribute_batch() -> tuple[list[torch.Tensor], list[dict]]:
    images, targets = _batch()
    targets[0]["attributes"] = [[3, 61], [294]]
    targets[1]["attributes"] = [[]]  # category 3: carries no attributes
    return images, targets


def _build(name: str, overrides: dict | None = None, space: AttributeSpace | None = SPACE):
    torch.manual_seed(0)
    cls = get_adapter(name)
    return build_with_attributes(cls, model_config(name, overrides), NUM_CLASSES, space)


@pytest.fixture(params=ATTRIBUTE_ADAPTERS)
def attribute_adapter(request):
    return _build(request.param)


def test_the_three_families_declare_the_attribute_head():
    assert {"maskrcnn", "yolact", "unet"} <= set(ATTRIBUTE_ADAPTERS)


def test_attribute_loss_is_finite_and_teaches_the_attribute_head(attribute_adapter):
    name = attribute_adapter.name
    # The attribute head: parameters of its own, or output layers widened for the attribute maps.
    without = {n: p.shape for n, p in _build(name, space=None).named_parameters()}
    images, targets = _attribute_batch()
    attribute_adapter.train()
    losses = attribute_adapter(images, targets)
    assert "loss_attributes" in losses and all(torch.isfinite(v) for v in losses.values()), losses
    assert float(losses["loss_attributes"].detach()) > 0
    losses["loss_attributes"].backward()
    grads = {n: p.grad for n, p in attribute_adapter.named_parameters() if p.grad is not None}
    head = [n for n in grads if without.get(n) != grads[n].shape]
    assert head, "the attribute loss reaches no parameter of its own"
    assert any(grads[n].abs().sum() > 0 for n in head)
    groups = attribute_adapter.param_groups()
    assert {id(p) for ps in groups.values() for p in ps} == {id(p) for p in attribute_adapter.parameters()}
    # Only instances that teach attributes count: with none of them the loss is 0.
    for t in targets:
        t["attributes"] = [[] for _ in t["attributes"]]
    assert float(attribute_adapter(images, targets)["loss_attributes"].detach()) == 0.0


def test_attribute_loss_is_finite_for_empty_targets(attribute_adapter):
    images, targets = _attribute_batch()
    losses = attribute_adapter(images[2:], targets[2:])
    assert torch.isfinite(losses["loss_attributes"])


def test_attribute_predictions_are_probabilities_and_ids(attribute_adapter):
    images, _ = _attribute_batch()
    attribute_adapter.set_attribute_threshold(0.3)
    for pred in attribute_adapter.predict(images):
        n = len(pred)
        assert pred.attribute_probs is not None and pred.attribute_probs.dtype == torch.float32
        assert pred.attribute_probs.shape == (n, len(SPACE))
        assert ((pred.attribute_probs >= 0) & (pred.attribute_probs <= 1)).all()
        assert pred.attributes is not None and len(pred.attributes) == n
        for ids, probs, label in zip(pred.attributes, pred.attribute_probs, pred.labels.tolist()):
            expected = [a for a, p in zip(SPACE.ids, probs.tolist()) if p > 0.3] if label in SPACE.labels else []
            assert ids == expected
        moved = pred.to("cpu")
        assert moved.attribute_probs is not None and torch.equal(moved.attribute_probs, pred.attribute_probs)
    state = attribute_adapter.state_dict()
    assert float(state["attribute_threshold"]) == pytest.approx(0.3)
    assert space_from_state(state, dict(zip(SPACE.ids, SPACE.names))) == SPACE


def test_attributes_off_builds_the_model_of_before(attribute_adapter):
    """`model.attributes: off` with a dataset that has attributes: same parameters, same draws."""
    name = attribute_adapter.name
    off = _build(name, {"attributes": "off"})
    plain = _build(name, space=None)
    assert off.attribute_space is None and off.num_attributes == 0
    a, b = off.state_dict(), plain.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert len(attribute_adapter.state_dict()) > len(a)
    images, targets = _attribute_batch()
    assert "loss_attributes" not in off(images, targets)
    assert all(p.attributes is None and p.attribute_probs is None for p in off.predict(images))


def test_an_attribute_capability_needs_its_config_fields():
    cls = get_adapter(ATTRIBUTE_ADAPTERS[0])

    @dataclasses.dataclass(frozen=True)
    class Bare:
        input_size: int = 64
        backbone: str = "resnet18"
        min_size: int = 64
        max_size: int = 64

    fake = type("Fake", (cls,), {"config_cls": Bare, "input_size_fields": ("input_size",)})
    assert any("AttributeOptions" in p for p in missing_capabilities(fake))
