"""Mask R-CNN (torchvision ``MaskRCNN``) with ResNet or timm FPN backbones.

The adapter holds torchvision's four parts under torchvision's own names (``transform``,
``backbone``, ``rpn``, ``roi_heads``), so its ``state_dict`` is a torchvision Mask R-CNN state dict:
COCO checkpoints load key for key and :func:`build_torchvision_maskrcnn` rebuilds the plain
torchvision model from the same config and weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, paste_masks_in_image
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign

from zoo.adapters.maskrcnn_attributes import AttributeRoIHeads
from zoo.adapters.maskrcnn_backbones import (
    TimmBody,
    body_groups,
    build_backbone,
    feature_levels,
    map_backbone_state,
    rename_detection_key,
)
from zoo.adapter import Adapter, register
from zoo.attributes import AttributeSpace
from zoo.config import AttributeOptions
from zoo.errors import UserError
from zoo.types import InstancePred


@dataclass(frozen=True)
class MaskRCNNConfig(AttributeOptions):
    """Mask R-CNN options. Defaults are the CPU preset (2 cores, images of about 128 px).

    torchvision's COCO values are given in brackets where the preset differs; see
    ``configs/maskrcnn-gpu.yaml`` for the full-size recipe.
    """

    backbone: str = "resnet18"  # resnet18/34/50/101 or "timm:<name>" [resnet50]
    norm: Literal["batch", "frozen"] = "batch"  # backbone norm; "frozen" for pretrained weights
    fpn_channels: int = 64  # [256]
    timm_out_indices: tuple[int, ...] = (1, 2, 3, 4)  # timm feature stages at strides 4..32
    min_size: int = 128  # GeneralizedRCNNTransform: short side target [800]
    max_size: int = 128  # ... long side cap [1333]
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)  # one per FPN level [32..512]
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_batch_size_per_image: int = 128  # [256]
    rpn_pre_nms_top_n_train: int = 500  # per level [2000]
    rpn_post_nms_top_n_train: int = 250  # [2000]
    rpn_pre_nms_top_n_test: int = 500  # [1000]
    rpn_post_nms_top_n_test: int = 250  # [1000]
    box_batch_size_per_image: int = 64  # sampled ROIs per image [512]
    box_positive_fraction: float = 0.25
    representation_size: int = 256  # box head MLP width [1024]
    mask_head_layers: tuple[int, ...] = (64, 64)  # mask head conv widths [256 x 4]
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_image: int = 100
    mask_threshold: float = 0.5  # mask probability above which a pixel is inside


def build_torchvision_maskrcnn(cfg: MaskRCNNConfig, num_classes: int) -> MaskRCNN:
    """A torchvision ``MaskRCNN`` for ``num_classes`` foreground classes (+ background), random weights."""
    if num_classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    if not cfg.mask_head_layers:
        raise UserError("model.mask_head_layers: give at least one conv width")
    backbone = build_backbone(cfg.backbone, cfg.norm, cfg.fpn_channels, cfg.timm_out_indices)
    levels = feature_levels(backbone)
    if len(cfg.anchor_sizes) != levels:
        raise UserError(f"model.anchor_sizes: {cfg.backbone} gives {levels} FPN levels, so give {levels} "
                        f"sizes (one per level), got {list(cfg.anchor_sizes)}")
    anchors = AnchorGenerator(sizes=tuple((s,) for s in cfg.anchor_sizes),
                              aspect_ratios=(tuple(cfg.aspect_ratios),) * levels)
    maps = [str(i) for i in range(levels - 1)]  # ROI pooling skips the coarse "pool" level
    channels, mask_width = backbone.out_channels, cfg.mask_head_layers[-1]
    return MaskRCNN(
        backbone,
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(channels, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        box_roi_pool=MultiScaleRoIAlign(maps, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, cfg.representation_size),
        box_predictor=FastRCNNPredictor(cfg.representation_size, num_classes + 1),
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.detections_per_image,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_positive_fraction=cfg.box_positive_fraction,
        mask_roi_pool=MultiScaleRoIAlign(maps, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(channels, list(cfg.mask_head_layers), 1),
        mask_predictor=MaskRCNNPredictor(mask_width, mask_width, num_classes + 1),
    )


def to_torchvision_target(target: dict[str, Any], space: AttributeSpace | None = None) -> dict[str, Tensor]:
    """A zoo target as torchvision detection wants it: plain tensors, no degenerate boxes.

    Returns ``boxes`` float32 ``[N, 4]``, ``labels`` int64 ``[N]``, ``masks`` uint8 ``[N, H, W]``;
    with ``space`` also ``attributes`` float32 ``[N, A]`` (multi-hot) and ``attribute_teach`` bool
    ``[N]`` (see :meth:`zoo.attributes.AttributeSpace.trains_on`).
    Boxes with no width or height (e.g. a garment cropped away by augmentation to a line) would
    give an infinite box-regression target, so they are dropped with their masks.
    """
    boxes = target["boxes"].as_subclass(Tensor).to(torch.float32).reshape(-1, 4)
    labels = target["labels"].as_subclass(Tensor).to(torch.int64)
    masks = target["masks"].as_subclass(Tensor).to(torch.uint8)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    out = {"boxes": boxes[keep], "labels": labels[keep], "masks": masks[keep]}
    if space is not None:
        attrs = [a for a, k in zip(target.get("attributes") or [[]] * len(keep), keep.tolist()) if k]
        out["attributes"] = space.multi_hot(attrs, boxes.device)
        out["attribute_teach"] = space.trains_on(out["labels"], attrs)
    return out


@dataclass
class MaskRCNNRaw:
    """``run_model`` output: the box head's outputs for every proposal, before score filtering and NMS.

    Attributes:
        features: FPN maps by level name (``"0"``.., ``"pool"``), ``[B, F, h_l, w_l]``; the mask
            head pools from them in ``postprocess``.
        proposals: per image, RPN proposals ``[P_i, 4]`` (xyxy, pixels of the resized image).
        class_logits: ``[sum P_i, C + 1]`` box classifier logits (background is column 0).
        box_regression: ``[sum P_i, 4 (C + 1)]`` per-class box deltas.
        resized: per image, the ``(H, W)`` it had inside the network.
    """

    features: dict[str, Tensor]
    proposals: list[Tensor]
    class_logits: Tensor
    box_regression: Tensor
    resized: list[tuple[int, int]]


@register("maskrcnn")
class MaskRCNNAdapter(Adapter):
    """torchvision Mask R-CNN; ``num_classes`` foreground labels ``1..C`` (+ background 0)."""

    config_cls = MaskRCNNConfig
    input_size_fields = ("min_size", "max_size")
    predicts_attributes = True

    def __init__(self, cfg: MaskRCNNConfig, num_classes: int, attributes: AttributeSpace | None = None) -> None:
        super().__init__(cfg, num_classes, attributes)
        net = build_torchvision_maskrcnn(cfg, num_classes)
        self.transform = net.transform
        self.backbone = net.backbone
        self.rpn = net.rpn
        self.roi_heads = net.roi_heads
        if self.attribute_space is not None:  # built after the rest: its draws leave the others' weights as they are
            self.roi_heads = AttributeRoIHeads(net.roi_heads, self.num_attributes, cfg.representation_size)

    def forward(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Losses ``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``,
        ``loss_mask`` (and with attributes ``loss_attributes``) (scalars) for B images ``[3, H, W]``
        in ``[0, 1]`` (train mode)."""
        space = self.attribute_space
        batch, tv_targets = self.transform(list(images), [to_torchvision_target(t, space) for t in targets])
        features = self.backbone(batch.tensors)
        proposals, rpn_losses = self.rpn(batch, features, tv_targets)
        _, roi_losses = self.roi_heads(features, proposals, batch.image_sizes, tv_targets)
        losses = {**rpn_losses, **roi_losses}
        if space is not None:
            logits, wanted = self.roi_heads.positive_attribute_logits(features, batch.image_sizes, tv_targets)
            losses["loss_attributes"] = self.attribute_loss(logits, wanted)
        return losses

    def run_model(self, images: list[Tensor]) -> MaskRCNNRaw:
        """Normalise, resize and batch B images ``[3, H, W]``; backbone, RPN (with its proposal
        NMS: the second stage runs on proposals) and the box head on every proposal.

        Score filtering, box NMS and the mask head on the kept boxes are left to ``postprocess``,
        as a one-stage model's decoding and NMS are, so the latency protocol's network phase is
        the same kind of work for every model.
        """
        batch, _ = self.transform(list(images))
        features = self.backbone(batch.tensors)
        proposals, _ = self.rpn(batch, features)
        heads = self.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, batch.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        return MaskRCNNRaw(features, proposals, class_logits, box_regression,
                           [(int(h), int(w)) for h, w in batch.image_sizes])

    def detections(self, raw: MaskRCNNRaw) -> list[dict[str, Tensor]]:
        """torchvision's ``RoIHeads`` inference after the box head, composed from its own parts:
        per-class box decoding, score threshold, NMS, top detections, then the mask head on the
        kept boxes. Per image: ``boxes`` ``[N, 4]`` (resized-image pixels), ``labels``, ``scores``
        ``[N]``, ``masks`` ``[N, 1, 28, 28]`` probabilities in box coordinates; with attributes
        also ``attribute_probs`` ``[N, A]`` (the attribute branch on the kept boxes)."""
        heads = self.roi_heads
        boxes, scores, labels = heads.postprocess_detections(raw.class_logits, raw.box_regression,
                                                             raw.proposals, raw.resized)
        mask_logits = heads.mask_predictor(heads.mask_head(heads.mask_roi_pool(raw.features, boxes, raw.resized)))
        masks = maskrcnn_inference(mask_logits, labels)
        dets = [{"boxes": b, "labels": c, "scores": s, "masks": m} for b, c, s, m in zip(boxes, labels, scores, masks)]
        if self.attribute_space is not None:
            probs = torch.sigmoid(heads.attribute_logits(raw.features, boxes, raw.resized))
            for det, p in zip(dets, probs.split([len(b) for b in boxes])):
                det["attribute_probs"] = p
        return dets

    def postprocess(self, raw: MaskRCNNRaw, sizes: list[tuple[int, int]]) -> list[InstancePred]:
        """:meth:`detections`, then boxes scaled to each ``(H, W)`` in ``sizes`` and the 28x28 masks
        pasted there and thresholded."""
        preds = []
        for det, resized, size in zip(self.detections(raw), raw.resized, sizes):
            boxes = resize_boxes(det["boxes"], list(resized), list(size))
            probs = paste_masks_in_image(det["masks"], boxes, size)  # [N, 1, H, W]
            pred = InstancePred(boxes=boxes.float(), labels=det["labels"], scores=det["scores"],
                                masks=probs[:, 0] > self.cfg.mask_threshold)
            preds.append(self.with_attributes(pred, det["attribute_probs"]) if "attribute_probs" in det else pred)
        return preds

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Backbone body by depth ("stem", "stage2".."stage5"); FPN, RPN and ROI heads are "heads"."""
        groups = body_groups(self.backbone)
        groups["heads"] = [*self.backbone.fpn.parameters(), *self.rpn.parameters(), *self.roi_heads.parameters()]
        return groups

    def adapt_pretrained(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map a torchvision Mask R-CNN checkpoint (e.g. COCO, any class count) or a plain
        torchvision/timm classification backbone state dict onto this module's keys.

        Detection checkpoints keep their keys (old names renamed); the harness then skips the
        class-count-dependent predictor layers by shape. Backbone checkpoints map to ``backbone.body.*``.
        """
        own = self.state_dict()
        if any(k.startswith(("backbone.", "rpn.", "roi_heads.")) for k in state):
            mapped = {rename_detection_key(k): v for k, v in state.items()}
        else:
            body_keys = {k for k in own if k.startswith("backbone.body.")}
            mapped = map_backbone_state(state, body_keys, isinstance(self.backbone.body, TimmBody))
        # Batch-norm step counters have no counterpart in frozen norms; they carry no weights.
        return {k: v for k, v in mapped.items() if k in own or not k.endswith("num_batches_tracked")}
