"""YOLACT training losses, as the reference ``MultiBoxLoss``.

* classes: softmax cross-entropy over positives and OHEM-mined negatives (3 per positive);
* boxes: smooth-L1 on SSD-encoded deltas of positives, x 1.5;
* masks: BCE of ``sigmoid(P C^T)`` against the matched ground truth at prototype resolution,
  both cropped to the ground-truth box, each instance divided by its box area, x 6.125, at most
  100 positives per image (a random subset, rescaled to count as all of them);
* semantic: per-class sigmoid BCE of a 1x1 conv on the finest level, summed over classes, averaged over pixels;
* attributes (with an attribute head): sigmoid BCE of the positive anchors' attribute logits against
  their matched ground truth's attributes, for ground truth that teaches attributes
  (:meth:`zoo.adapter.Adapter.attribute_loss`).

Class, box and mask losses are divided by the number of positives in the batch, the semantic loss
by the batch size, as the reference does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.adapters.yolact.boxes import center_size, crop, match
from zoo.adapters.yolact.network import RawOutput
from zoo.attributes import AttributeSpace


@dataclass(frozen=True)
class LossSettings:
    """Weights and sampling of the four losses (reference values as defaults)."""

    pos_iou: float = 0.5
    neg_iou: float = 0.4
    negpos_ratio: int = 3
    box_weight: float = 1.5
    mask_weight: float = 6.125
    semantic_weight: float = 1.0
    masks_to_train: int = 100  # positives per image that get a mask loss


@dataclass
class ImageTarget:
    """One image's ground truth at network resolution.

    Attributes:
        boxes: float ``[N, 4]`` point form, relative to the image size.
        labels: int64 ``[N]`` in ``1..C``.
        proto_masks: float ``[N, hp, wp]`` in {0, 1}, at prototype resolution.
        semantic: float ``[C, hf, wf]`` in {0, 1}, union of each class's masks at the finest level's
            resolution.
        attributes: float ``[N, A]`` multi-hot attributes (None without an attribute head).
        attribute_teach: bool ``[N]``: the instances that teach attributes (None without a head).
    """

    boxes: Tensor
    labels: Tensor
    proto_masks: Tensor
    semantic: Tensor
    attributes: Tensor | None = None
    attribute_teach: Tensor | None = None


def prepare_target(target: dict[str, Any], size: tuple[int, int], proto_hw: tuple[int, int],
                   semantic_hw: tuple[int, int], num_classes: int, device: torch.device,
                   space: AttributeSpace | None = None) -> ImageTarget:
    """Relative boxes and downsampled masks of one image of ``size = (H, W)``, letterboxed as the
    network sees it: the top left of a square of side ``max(H, W)``.

    Instances whose box has no area inside the image are dropped: they cannot be encoded.
    """
    h, w = size
    side = max(h, w)
    boxes = torch.as_tensor(target["boxes"]).as_subclass(Tensor).to(device, torch.float32).reshape(-1, 4)
    boxes = boxes.minimum(boxes.new_tensor([w, h, w, h])).clamp(min=0.0) / side
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    labels = torch.as_tensor(target["labels"]).as_subclass(Tensor).to(device, torch.int64)[keep]
    masks = torch.as_tensor(target["masks"]).as_subclass(Tensor).to(device)[keep].float()
    if (h, w) != (side, side):
        masks = F.pad(masks, (0, side - w, 0, side - h))
    if masks.shape[0]:
        proto = F.interpolate(masks[None], size=proto_hw, mode="bilinear", align_corners=False)[0].gt(0.5).float()
        small = F.interpolate(masks[None], size=semantic_hw, mode="bilinear", align_corners=False)[0].gt(0.5).float()
    else:
        proto = masks.new_zeros((0, *proto_hw))
        small = masks.new_zeros((0, *semantic_hw))
    # Union of each class's masks: a one-hot sum over instances, capped at 1.
    one_hot = F.one_hot(labels - 1, num_classes).t().to(small.dtype)  # [C, N]
    semantic = (one_hot @ small.flatten(1)).clamp(max=1.0).view(num_classes, *semantic_hw)
    out = ImageTarget(boxes=boxes[keep], labels=labels, proto_masks=proto, semantic=semantic)
    if space is not None:
        attrs = [a for a, k in zip(target.get("attributes") or [[]] * len(keep), keep.tolist()) if k]
        out.attributes, out.attribute_teach = space.multi_hot(attrs, device), space.trains_on(labels, attrs)
    return out


def ohem_negatives(background_loss: Tensor, conf_t: Tensor, negpos_ratio: int = 3) -> Tensor:
    """Hard-negative mining: per image, the ``negpos_ratio * num_pos`` background anchors with the
    highest background loss.

    Args:
        background_loss: ``[B, A]`` ``-log p(background)`` per anchor.
        conf_t: ``[B, A]`` matched labels (>0 positive, 0 background, -1 neutral).
    Returns:
        bool ``[B, A]``: the selected negatives (never positives or neutrals).
    """
    loss = background_loss.detach().clone()
    loss[conf_t != 0] = 0.0  # only true background competes (positives and neutrals excluded)
    _, order = loss.sort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    num_pos = (conf_t > 0).sum(dim=1, keepdim=True)
    num_neg = torch.clamp(negpos_ratio * num_pos, max=conf_t.shape[1] - 1)
    return (rank < num_neg) & (conf_t == 0)


def yolact_losses(raw: RawOutput, targets: list[ImageTarget], settings: LossSettings,
                  attribute_loss: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, Tensor]:
    """The four named losses of a batch (see the module docstring), and ``loss_attributes`` when
    ``raw.attributes`` is set (``attribute_loss(logits [M, A], targets [M, A])`` scores it).
    Finite for empty targets."""
    matched = [match(t.boxes, t.labels, raw.anchors, settings.pos_iou, settings.neg_iou) for t in targets]
    conf_t = torch.stack([m[0] for m in matched])  # [B, A]
    idx_t = torch.stack([m[1] for m in matched])
    loc_t = torch.stack([m[2] for m in matched])
    pos = conf_t > 0
    num_pos = pos.sum().clamp(min=1).float()

    # Losses in float32 whatever precision the network ran in (autocast on GPU).
    loss_box = F.smooth_l1_loss(raw.deltas[pos].float(), loc_t[pos], reduction="sum") * settings.box_weight

    log_probs = F.log_softmax(raw.logits.float(), dim=-1)
    neg = ohem_negatives(-log_probs[..., 0], conf_t, settings.negpos_ratio)
    chosen = pos | neg
    loss_cls = F.nll_loss(log_probs[chosen], conf_t[chosen], reduction="sum")

    loss_mask = sum((instance_mask_loss(raw.protos[b], raw.coefs[b], pos[b], idx_t[b], targets[b], settings)
                     for b in range(len(targets))), raw.protos.new_zeros(()))
    loss_mask = loss_mask * settings.mask_weight

    sem = raw.semantic.float()
    sem_t = torch.stack([t.semantic for t in targets])
    loss_sem = F.binary_cross_entropy_with_logits(sem, sem_t, reduction="sum") / (sem.shape[-1] * sem.shape[-2])
    loss_sem = loss_sem * settings.semantic_weight / len(targets)
    losses = {"loss_cls": loss_cls / num_pos, "loss_box": loss_box / num_pos,
              "loss_mask": loss_mask / num_pos, "loss_semantic": loss_sem}
    if raw.attributes is not None and attribute_loss is not None:
        losses["loss_attributes"] = attribute_loss(*positive_attributes(raw.attributes, pos, idx_t, targets))
    return losses


def positive_attributes(logits: Tensor, pos: Tensor, idx_t: Tensor, targets: list[ImageTarget]) -> tuple[Tensor, Tensor]:
    """Attribute logits ``[M, A]`` of the positive anchors whose matched ground truth teaches
    attributes, and those attributes ``[M, A]``.

    Args:
        logits: ``[B, anchors, A]``; pos: bool ``[B, anchors]``; idx_t: matched ground truth ``[B, anchors]``.
    """
    chosen, wanted = [], []
    for b, target in enumerate(targets):
        anchors = pos[b].nonzero().squeeze(1)
        gt = idx_t[b][anchors]
        teach = target.attribute_teach[gt]
        chosen.append(logits[b][anchors[teach]])
        wanted.append(target.attributes[gt[teach]])
    return torch.cat(chosen), torch.cat(wanted)


def instance_mask_loss(protos: Tensor, coefs: Tensor, pos: Tensor, idx_t: Tensor, target: ImageTarget,
                       settings: LossSettings) -> Tensor:
    """Summed box-normalised mask BCE of one image's positives.

    Args:
        protos: ``[hp, wp, k]``; coefs: ``[A, k]``; pos: bool ``[A]``; idx_t: int64 ``[A]``.
    """
    pos_idx = pos.nonzero().squeeze(1)
    num_pos = pos_idx.numel()
    if num_pos == 0:
        return protos.sum() * 0.0 + coefs.sum() * 0.0
    if num_pos > settings.masks_to_train:
        pos_idx = pos_idx[torch.randperm(num_pos, device=pos_idx.device)[: settings.masks_to_train]]
    gt = idx_t[pos_idx]
    boxes = target.boxes[gt]  # [n, 4] relative
    hp, wp, _ = protos.shape
    logits = (protos @ coefs[pos_idx].t()).float()  # [hp, wp, n]
    mask_t = target.proto_masks[gt].permute(1, 2, 0)  # [hp, wp, n]
    # BCE on logits equals the reference's BCE of the clamped sigmoid, without saturating at 0/1.
    bce = F.binary_cross_entropy_with_logits(logits, mask_t, reduction="none")
    bce = crop(bce, boxes)
    size = center_size(boxes)[:, 2:] * boxes.new_tensor([wp, hp])
    per_instance = bce.sum(dim=(0, 1)) / size.prod(dim=1).clamp(min=1.0)
    return per_instance.sum() * (num_pos / pos_idx.numel())
