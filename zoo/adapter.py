"""The adapter base class and the one registry of architectures.

An adapter is an ``nn.Module`` so that the harness can wrap it in DDP, checkpoint it with
``state_dict`` and move it with ``.to`` without knowing what is inside.

* ``forward(images, targets)`` (train mode) returns a dict of named scalar losses.
* ``run_model(images)`` then ``postprocess(raw, sizes)`` is ``predict(images)``; the two halves
  are separate so the latency protocol can time the network and the mask pasting apart.
* ``param_groups()`` names the parameters for staged training (see :data:`GROUP_ORDER`).
* An adapter that declares ``predicts_attributes`` is built with an
  :class:`~zoo.attributes.AttributeSpace` (``Adapter(cfg, num_classes, attributes=space)``, see
  :func:`build_with_attributes`) and then predicts per-instance attribute probabilities.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from zoo.attributes import DEFAULT_THRESHOLD, AttributeSpace, decode
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
    # True: built with an AttributeSpace (and ``model.attributes`` not "off") it predicts attributes;
    # its config extends zoo.config.AttributeOptions and its __init__ takes ``attributes``.
    predicts_attributes: ClassVar[bool] = False

    def __init__(self, cfg: Any, num_classes: int, attributes: AttributeSpace | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        on = attributes is not None and len(attributes) > 0 and getattr(cfg, "attributes", "off") != "off"
        self.attribute_space: AttributeSpace | None = attributes if on else None
        if self.attribute_space is not None:
            # Buffers, so that a checkpoint says which attributes its head predicts and at which threshold.
            space = self.attribute_space
            carrying = torch.zeros(num_classes + 1, dtype=torch.bool)
            carrying[list(space.labels)] = True
            self.register_buffer("attribute_ids", torch.tensor(space.ids, dtype=torch.int64))
            self.register_buffer("attribute_labels", carrying)
            threshold = cfg.attribute_threshold if cfg.attribute_threshold is not None else DEFAULT_THRESHOLD
            self.register_buffer("attribute_threshold", torch.tensor(float(threshold)))

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

    # ------------------------------------------------------------------ attributes
    @property
    def num_attributes(self) -> int:
        """A: the attributes the head predicts (0: no attribute head)."""
        return len(self.attribute_space) if self.attribute_space is not None else 0

    def attribute_targets(self, labels: Tensor, attribute_lists: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Multi-hot targets float32 ``[N, A]`` and bool ``[N]``: which instances teach the head
        (their category carries attributes and they have some), on ``labels``' device."""
        space = self.attribute_space
        assert space is not None
        return space.multi_hot(attribute_lists, labels.device), space.trains_on(labels, attribute_lists)

    def attribute_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Sigmoid BCE of logits ``[M, A]`` against ``[M, A]``, averaged over all M x A entries
        (Attribute-Mask R-CNN's ``SUM_BY_NONZERO_WEIGHTS`` reduction), times ``model.attribute_weight``;
        0 (with a gradient path) when M is 0.

        The mean makes ``model.attribute_weight`` mean the same for 92 attributes (iMaterialist)
        and 294 (Fashionpedia); its default is measured in docs/benchmarks.md.
        """
        if logits.shape[0] == 0:
            return logits.sum() * 0.0
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets, reduction="mean")
        return bce * self.cfg.attribute_weight

    def with_attributes(self, pred: InstancePred, probs: Tensor) -> InstancePred:
        """``pred`` with ``attribute_probs`` float32 ``[N, A]`` and the ids above the threshold."""
        assert self.attribute_space is not None
        probs = probs.float()
        pred.attribute_probs = probs
        pred.attributes = decode(probs, pred.labels, self.attribute_space, float(self.attribute_threshold))
        return pred

    def set_attribute_threshold(self, value: float) -> None:
        """Use ``value`` as the decision threshold from now on (kept in ``state_dict``)."""
        self.attribute_threshold.fill_(float(value))

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


def build_with_attributes(cls: type[Adapter], cfg: Any, num_classes: int,
                          attributes: AttributeSpace | None) -> Adapter:
    """``cls(cfg, num_classes)``, with its attribute head when ``cls`` declares
    ``predicts_attributes``, ``attributes`` is given and ``cfg.attributes`` is not "off"."""
    if attributes is not None and cls.predicts_attributes and getattr(cfg, "attributes", "off") != "off":
        return cls(cfg, num_classes, attributes=attributes)
    return cls(cfg, num_classes)


def available_adapters() -> list[str]:
    return sorted(_REGISTRY)


def get_adapter(name: str) -> type[Adapter]:
    """The adapter class registered as ``name``; the error lists the valid names.

    The registry is filled by ``import zoo.adapters`` (done by ``cli.py`` and the tests); zoo itself
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
    if cls.predicts_attributes:
        missing = [f for f in ("attributes", "attribute_weight", "attribute_threshold") if f not in fields]
        if missing:
            problems.append(f"predicts_attributes, but {config_cls.__name__} lacks {', '.join(missing)} "
                            f"(extend zoo.config.AttributeOptions)")
        if "attributes" not in inspect.signature(cls.__init__).parameters:
            problems.append("predicts_attributes, but __init__ takes no `attributes` argument")
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
