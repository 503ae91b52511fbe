"""The adapter base class and the one registry of architectures.

An adapter is an ``nn.Module`` so that the harness can wrap it in DDP, checkpoint it with
``state_dict`` and move it with ``.to`` without knowing what is inside.

* ``forward(images, targets)`` (train mode) returns a dict of named scalar losses.
* ``run_model(images)`` then ``postprocess(raw, sizes)`` is ``predict(images)``; the two halves
  are separate so the latency protocol can time the network and the mask pasting apart.
* ``param_groups()`` names the parameters for staged training (see :data:`GROUP_ORDER`).
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from zoo.types import InstancePred

# Parameter groups in backbone depth order; "heads" is everything that is not backbone.
# An adapter returns a subset of these names (every parameter in exactly one group).
GROUP_ORDER: tuple[str, ...] = ("stem", "stage2", "stage3", "stage4", "stage5", "heads")

# Matterport-style layer choices -> the groups they make trainable.
LAYER_CHOICES: dict[str, tuple[str, ...]] = {
    "heads": ("heads",),
    "5+": ("stage5", "heads"),
    "4+": ("stage4", "stage5", "heads"),
    "3+": ("stage3", "stage4", "stage5", "heads"),
    "2+": ("stage2", "stage3", "stage4", "stage5", "heads"),
    "all": GROUP_ORDER,
}


class Adapter(nn.Module, ABC):
    """Base class of every architecture.

    Subclasses set ``name`` (via :func:`register`) and ``config_cls`` (a frozen dataclass of the
    model's options, with defaults that are the CPU-friendly choice), and are built with
    ``Adapter(cfg, num_classes)`` where ``num_classes`` counts foreground categories (labels 1..C).
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type]
    # Capabilities, read by the harness and the report (never isinstance checks).
    instance_native: ClassVar[bool] = True  # False: instances are derived from a semantic map
    backbone_option: ClassVar[str | None] = "backbone"  # the config field naming the backbone (None: none)
    # Config fields that fix the side of the network's input; ``zoo compare`` sets every one of
    # them to the shared input size so that all models see the same pixels.
    input_size_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: Any, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes

    @abstractmethod
    def forward(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Losses for a batch.

        Args:
            images: B float32 tensors ``[3, H, W]`` in ``[0, 1]`` (sizes may differ).
            targets: B target dicts (see :mod:`zoo.types`); N may be 0.
        Returns:
            Named scalar losses; the harness sums them. Finite for empty targets.
        """

    @abstractmethod
    def run_model(self, images: list[Tensor]) -> Any:
        """The network part of inference (no mask pasting). Called under ``inference_mode``."""

    @abstractmethod
    def postprocess(self, raw: Any, sizes: list[tuple[int, int]]) -> list[InstancePred]:
        """Turn ``run_model`` output into predictions with masks at each ``(H, W)`` in ``sizes``."""

    @abstractmethod
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group name (a subset of :data:`GROUP_ORDER`); each parameter once."""

    @torch.inference_mode()
    def predict(self, images: list[Tensor]) -> list[InstancePred]:
        """Predictions for B images ``[3, H, W]`` in ``[0, 1]``; masks at each image's size."""
        was_training = self.training
        self.eval()
        try:
            sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
            return self.postprocess(self.run_model(images), sizes)
        finally:
            self.train(was_training)

    def validation_losses(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Losses without learning: train-mode graph, batch-norm statistics frozen, no grad."""
        was_training = self.training
        self.train()
        norms = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.eval()
        try:
            with torch.no_grad():
                return self.forward(images, targets)
        finally:
            self.train(was_training)

    def adapt_pretrained(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Rename keys of a foreign state dict (torchvision/timm) to this module's keys.

        The default keeps keys as they are; adapters override it for their backbone's naming.
        """
        return state


_REGISTRY: dict[str, type[Adapter]] = {}


def register(name: str) -> Callable[[type[Adapter]], type[Adapter]]:
    """Class decorator: ``@register("maskrcnn")``. Duplicate names are an error."""

    def deco(cls: type[Adapter]) -> type[Adapter]:
        if name in _REGISTRY:
            raise ValueError(f"adapter {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_adapters() -> list[str]:
    return sorted(_REGISTRY)


def get_adapter(name: str) -> type[Adapter]:
    """The adapter class registered as ``name``; the error lists the valid names.

    The registry is filled by ``import adapters`` (done by ``cli.py`` and the tests); zoo itself
    never imports adapters.
    """
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(name, _REGISTRY, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise KeyError(f"unknown adapter {name!r}{extra}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def missing_capabilities(cls: type[Adapter]) -> list[str]:
    """What ``cls`` lacks to be trained, compared and reported (empty: nothing); one line each.

    Checked: the abstract methods are implemented; ``config_cls`` is a dataclass that builds with
    its defaults; ``backbone_option`` (unless None) and every ``input_size_fields`` entry are
    fields of it, and there is at least one input-size field (``zoo compare`` sets them all to
    the shared input size); ``instance_native`` is a bool.
    """
    problems = []
    if getattr(cls, "__abstractmethods__", None):
        problems.append(f"does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    config_cls = getattr(cls, "config_cls", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return problems + ["config_cls is not set to a dataclass of the model's options"]
    try:
        config_cls()
    except TypeError as err:
        problems.append(f"config_cls {config_cls.__name__} needs a default for every field ({err})")
    fields = [f.name for f in dataclasses.fields(config_cls)]
    if cls.backbone_option is not None and cls.backbone_option not in fields:
        problems.append(f"backbone_option {cls.backbone_option!r} is not a field of {config_cls.__name__} "
                        f"(set it to one of {', '.join(fields)}, or to None)")
    if not cls.input_size_fields:
        problems.append("declares no input_size_fields: zoo compare cannot give it the shared input size")
    problems += [f"input_size_fields entry {f!r} is not a field of {config_cls.__name__}"
                 for f in cls.input_size_fields if f not in fields]
    if not isinstance(cls.instance_native, bool):
        problems.append("instance_native must be True or False")
    return problems


def trainable_groups(layers: str) -> tuple[str, ...]:
    """Groups a Matterport-style layer choice ("heads", "3+", "4+", "5+", "all") trains."""
    if layers not in LAYER_CHOICES:
        raise ValueError(f"unknown layers {layers!r}; choose one of {', '.join(LAYER_CHOICES)}")
    return LAYER_CHOICES[layers]


def set_trainable(adapter: Adapter, layers: str) -> None:
    """Freeze every parameter outside the groups that ``layers`` selects."""
    keep = set(trainable_groups(layers))
    for group, params in adapter.param_groups().items():
        for p in params:
            p.requires_grad_(group in keep)
