"""The base class of the semantic family: a network that predicts one map per category.

A subclass supplies its network (:meth:`SemanticAdapter.build_network`) and its parameter groups
(:meth:`~zoo.adapter.Adapter.param_groups`, usually :func:`zoo.semantic.stages.backbone_groups`);
everything else is shared here: input sizing, multi-label targets, the BCE + Dice loss, and
``postprocess`` turning the maps into instances so that the shared evaluator scores a semantic
model with the same mask AP as the instance models.

Attributes: for a subclass that declares ``predicts_attributes``, an
:class:`~zoo.semantic.attribute_head.AttributeHead` reads the encoder's two deepest stages and
predicts one map per attribute. The maps learn, by sigmoid BCE, the attributes of the garment
under each pixel, on the pixels of garments that teach attributes; an instance's attribute
probabilities are the mean of those maps over its connected component.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.adapter import Adapter
from zoo.attributes import AttributeSpace
from zoo.config import AttributeOptions
from zoo.errors import UserError
from zoo.semantic.attribute_head import AttributeHead
from zoo.semantic.batching import network_batch
from zoo.semantic.instances import component_attributes, probs_to_instances
from zoo.semantic.targets import BceDiceLoss, attribute_maps, multilabel_targets
from zoo.types import InstancePred

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SemanticConfig(AttributeOptions):
    """Options every semantic model shares; a model's own config dataclass extends this one."""

    input_size: int | None = None  # longest side fed to the network (None: the size given)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    bce_weight: float = 1.0  # 0 leaves the BCE term out
    dice_weight: float = 1.0  # 0 leaves the Dice term out
    mask_threshold: float = 0.5  # probability above which a pixel belongs to a category
    min_area: int = 16  # components smaller than this (pixels at the output size) are dropped
    opening: int = 0  # radius of a morphological opening before labelling (0: none)
    max_instances: int = 100  # per image, highest scores kept (COCO scores at most 100)


@dataclass
class SemanticRaw:
    """What ``run_model`` hands to ``postprocess``.

    Attributes:
        probs: float32 ``[B, C, Hp, Wp]`` sigmoid probabilities of the padded batch.
        valid: per image, the ``(h, w)`` of its resized, unpadded region inside ``probs``.
        attributes: float32 ``[B, A, Hp, Wp]`` attribute probabilities (None without attributes).
    """

    probs: Tensor
    valid: list[tuple[int, int]]
    attributes: Tensor | None = None


class SemanticAdapter(Adapter):
    """A network with C sigmoid channels (multi-label); instances come from connected components.

    Batch norms whose weights are frozen (a frozen backbone stage) keep their running statistics
    in train mode, and a batch norm that sees one value per channel (one image pooled to 1x1, as
    in DeepLabV3's image pooling) normalises with its running statistics instead of failing.
    """

    config_cls: ClassVar[type] = SemanticConfig
    instance_native = False
    backbone_option = None  # a subclass whose config names its backbone declares that field
    input_size_fields = ("input_size",)

    def __init__(self, cfg: SemanticConfig, num_classes: int, attributes: AttributeSpace | None = None) -> None:
        super().__init__(cfg, num_classes, attributes if self.predicts_attributes else None)
        if cfg.bce_weight < 0 or cfg.dice_weight < 0 or cfg.bce_weight + cfg.dice_weight == 0:
            raise UserError("model.bce_weight/model.dice_weight: need non-negative weights, at least one > 0")
        self.net = self.build_network()
        self.attribute_head = AttributeHead(self.attribute_channels(), self.num_attributes) \
            if self.num_attributes else None
        self.loss = BceDiceLoss(cfg.bce_weight, cfg.dice_weight)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(3, 1, 1), persistent=False)
        self.multiple = self.input_multiple()
        for m in self.net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.register_forward_pre_hook(_single_value_norm_to_eval)
                m.register_forward_hook(_single_value_norm_back)

    @abstractmethod
    def build_network(self) -> nn.Module:
        """The network (stored as ``self.net``): normalised float32 ``[B, 3, H, W]`` -> logits
        ``[B, C, H', W']`` with ``C = self.num_classes``; logits at another size than the input
        are resized to it (bilinear). ``self.cfg``, ``self.num_classes`` and
        ``self.attribute_space`` are set."""

    def attribute_channels(self) -> tuple[int, int]:
        """Widths of the two deepest encoder stages, which the attribute head reads (an smp
        model's ``encoder.out_channels``); a subclass with another network overrides this and
        :meth:`encode`."""
        encoder = getattr(self.net, "encoder", None)
        if encoder is None or len(getattr(encoder, "out_channels", ())) < 2:
            raise UserError(f"{type(self).__name__}: the attribute head needs an smp-style encoder "
                            "(model.attributes: off builds the model without it)")
        return tuple(int(c) for c in encoder.out_channels[-2:])  # type: ignore[return-value]

    def encode(self, batch: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Category logits ``[B, C, H', W']`` and the encoder's features (deepest last) of a
        normalised batch: an smp model's forward, keeping the features for the attribute head."""
        features = self.net.encoder(batch)
        return self.net.segmentation_head(self.net.decoder(features)), features

    def input_multiple(self) -> int:
        """Input sides are zero-padded to a multiple of this (the network's total stride); 1: any size."""
        return 1

    def logits(self, batch: Tensor) -> Tensor:
        """float32 logits ``[B, C (+ A), Hp, Wp]`` of a padded batch ``[B, 3, Hp, Wp]``: the C
        category maps, then (with attributes) the A attribute maps."""
        if self.attribute_head is None:
            return _at_size(self.net(batch).float(), batch)
        out, features = self.encode(batch)
        return torch.cat([_at_size(out.float(), batch), _at_size(self.attribute_head(features).float(), batch)], dim=1)

    def target_maps(self, targets: list[dict[str, Any]], valid: list[tuple[int, int]],
                    padded: tuple[int, int]) -> Tensor:
        """Multi-label maps ``[B, C, Hp, Wp]`` (see :func:`zoo.semantic.targets.multilabel_targets`)."""
        return multilabel_targets(targets, self.num_classes, valid, padded, self.mean.device)

    def forward(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Losses ``{"loss_bce", "loss_dice"}`` (weighted; with attributes also ``loss_attributes``)
        for B images and their targets."""
        batch, valid = network_batch(images, self.mean, self.std, self.cfg.input_size, self.multiple)
        logits = self.logits(batch)
        padded = tuple(batch.shape[-2:])
        c = self.num_classes
        losses = self.loss(logits[:, :c], self.target_maps(targets, valid, padded))
        if self.attribute_space is not None:
            wanted, teach = attribute_maps(targets, self.attribute_space, valid, padded, self.mean.device)
            pixels = logits[:, c:].permute(0, 2, 3, 1)[teach]  # [M, A]: the pixels of teaching garments
            losses["loss_attributes"] = self.attribute_loss(pixels, wanted.permute(0, 2, 3, 1)[teach])
        return losses

    def run_model(self, images: list[Tensor]) -> SemanticRaw:
        """Sigmoid probabilities of the padded batch (see :class:`SemanticRaw`)."""
        batch, valid = network_batch(images, self.mean, self.std, self.cfg.input_size, self.multiple)
        probs = torch.sigmoid(self.logits(batch))
        c = self.num_classes
        if self.attribute_space is None:
            return SemanticRaw(probs=probs, valid=valid)
        return SemanticRaw(probs=probs[:, :c], valid=valid, attributes=probs[:, c:])

    def postprocess(self, raw: SemanticRaw, sizes: list[tuple[int, int]]) -> list[InstancePred]:
        """Instances per image: masks bool ``[N, H, W]`` at each ``(H, W)`` in ``sizes``; with
        attributes, each instance's mean attribute probabilities over its component."""
        cfg = self.cfg
        preds = [probs_to_instances(probs[:, :h, :w], size, threshold=cfg.mask_threshold, min_area=cfg.min_area,
                                    opening=cfg.opening, max_instances=cfg.max_instances)
                 for probs, (h, w), size in zip(raw.probs, raw.valid, sizes)]
        if raw.attributes is None:
            return preds
        return [self.with_attributes(pred, component_attributes(pred.masks, maps[:, :h, :w]))
                for pred, maps, (h, w) in zip(preds, raw.attributes, raw.valid)]

    def train(self, mode: bool = True) -> "SemanticAdapter":
        """Train mode, except batch norms whose weights are frozen keep their running statistics.

        A frozen (e.g. pretrained) backbone stage would otherwise drift towards the statistics of
        a few small batches while its weights stay fixed.
        """
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None \
                        and not m.weight.requires_grad:
                    m.eval()
        return self


def _at_size(maps: Tensor, batch: Tensor) -> Tensor:
    """``maps`` ``[B, K, h, w]`` resized (bilinear) to the batch's ``[Hp, Wp]`` when it differs."""
    if maps.shape[-2:] == batch.shape[-2:]:
        return maps
    return F.interpolate(maps, size=batch.shape[-2:], mode="bilinear", align_corners=False)


def _single_value_norm_to_eval(module: nn.Module, args: tuple[Tensor, ...]) -> None:
    """Forward pre-hook: a batch norm given ``[1, C, 1, 1]`` has no batch statistics to compute."""
    x = args[0]
    if module.training and x.numel() == x.shape[1]:
        module.training = False
        module.single_value_eval = True


def _single_value_norm_back(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
    if getattr(module, "single_value_eval", False):
        module.training = True
        module.single_value_eval = False
