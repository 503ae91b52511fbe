"""The ``yolact`` adapter: a YOLACT-style one-stage instance segmenter written from the paper.

Bolya, Zhou, Xiao, Lee, "YOLACT: Real-time Instance Segmentation", ICCV 2019. Masks are linear
combinations of ``k`` image-wide prototypes with per-detection coefficients, so inference has no
per-region feature pooling: one matrix product for all masks, Fast NMS for all classes at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.adapters.yolact.boxes import crop, decode, fast_nms, make_anchors
from zoo.adapters.yolact.loss import LossSettings, prepare_target, yolact_losses
from zoo.adapters.yolact.network import FPN, PredictionHead, ProtoNet, RawOutput, build_backbone, init_xavier
from zoo.adapter import Adapter, register
from zoo.attributes import PRIOR_LOGIT, AttributeSpace
from zoo.config import AttributeOptions
from zoo.errors import UserError
from zoo.types import InstancePred

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The paper's pyramid and anchors (configs/yolact-gpu.yaml); the CPU preset differs in these.
PAPER_PYRAMID: dict[str, Any] = {"min_level": 3, "anchor_scales": (24.0, 48.0, 96.0, 192.0, 384.0),
                                 "anchor_reference_size": 550.0, "anchor_octaves": (1.0,)}


@dataclass(frozen=True)
class YolactConfig(LossSettings, AttributeOptions):
    """Model options. Defaults are the CPU preset; the paper's values are noted where they differ
    (``configs/yolact-gpu.yaml`` sets them all). The loss options come from :class:`LossSettings`,
    the attribute head's from :class:`~zoo.config.AttributeOptions`."""

    backbone: str = "resnet18"  # torchvision ResNet name, or "timm:<name>" [resnet101]
    input_size: int = 128  # square network input [550]
    # Finest pyramid level: 2 gives P2-P6 (strides 4-64, as Mask R-CNN's FPN) and prototypes at
    # stride 2, for the small garments of a small input; 3 is the paper's P3-P7, prototypes at stride 4.
    min_level: int = 2  # [3]
    fpn_channels: int = 64  # FPN, prediction head and semantic head width [256]
    proto_channels: int = 64  # protonet width [256]
    num_prototypes: int = 32  # k
    # Anchor side per level (as many as pyramid levels), in pixels at an input of
    # ``anchor_reference_size``; None: pixels of the network input (Mask R-CNN's convention).
    anchor_scales: tuple[float, ...] = (8.0, 16.0, 32.0, 64.0, 128.0)  # [24, 48, 96, 192, 384]
    anchor_reference_size: float | None = None  # [550: the paper scales anchors by input / 550]
    anchor_octaves: tuple[float, ...] = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))  # YOLACT++'s three scales per level [1]
    aspect_ratios: tuple[float, ...] = (1.0, 0.5, 2.0)  # width / height
    score_threshold: float = 0.05
    nms_top_k: int = 200  # candidates per class before Fast NMS
    nms_iou: float = 0.5
    max_detections: int = 100
    mask_threshold: float = 0.5


@register("yolact")
class YolactAdapter(Adapter):
    """YOLACT: backbone, FPN (P2-P6 or the paper's P3-P7), protonet on the finest level, one
    prediction head shared by all levels."""

    config_cls = YolactConfig
    input_size_fields = ("input_size",)
    predicts_attributes = True

    def __init__(self, cfg: YolactConfig, num_classes: int, attributes: AttributeSpace | None = None) -> None:
        super().__init__(cfg, num_classes, attributes)
        if cfg.input_size < 64:
            raise UserError(f"model.input_size: {cfg.input_size} is too small; give at least 64")
        if cfg.min_level not in (2, 3):
            raise UserError(f"model.min_level: {cfg.min_level}; give 2 (P2-P6) or 3 (P3-P7)")
        backbone_levels = 6 - cfg.min_level  # C_min_level .. C5
        if len(cfg.anchor_scales) < backbone_levels:
            raise UserError(f"model.anchor_scales: {len(cfg.anchor_scales)} scales for a pyramid from "
                            f"P{cfg.min_level}; give one per level, at least {backbone_levels}")
        self.backbone = build_backbone(cfg.backbone, cfg.min_level)
        self.fpn = FPN(self.backbone.out_channels, cfg.fpn_channels, len(cfg.anchor_scales) - backbone_levels)
        self.protonet = ProtoNet(cfg.fpn_channels, cfg.proto_channels, cfg.num_prototypes)
        anchors_per_cell = len(cfg.aspect_ratios) * len(cfg.anchor_octaves)
        self.head = PredictionHead(cfg.fpn_channels, num_classes + 1, anchors_per_cell, cfg.num_prototypes,
                                   self.num_attributes)
        self.semantic = nn.Conv2d(cfg.fpn_channels, num_classes, 1)
        for part in (self.fpn, self.protonet, self.head, self.semantic):
            init_xavier(part)
        if self.num_attributes:
            nn.init.constant_(self.head.attr.bias, PRIOR_LOGIT)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._anchor_cache: dict[tuple, Tensor] = {}

    # ------------------------------------------------------------------ network
    def _batch(self, images: list[Tensor]) -> Tensor:
        """B images ``[3, H, W]`` in [0, 1] -> normalised ``[B, 3, S, S]``, each letterboxed: put at
        the top left of a square of side ``max(H, W)`` filled with the mean colour, then resized to
        ``S``, so the aspect ratio is kept as the other families keep it (the paper squashes)."""
        s = self.cfg.input_size
        dev = self.mean.device
        batch = []
        for im in images:
            im = im.to(dev, torch.float32)
            h, w = int(im.shape[-2]), int(im.shape[-1])
            if h != w:
                side = max(h, w)
                canvas = self.mean[0].expand(3, side, side).clone()
                canvas[:, :h, :w] = im
                im = canvas
            if im.shape[-2:] != (s, s):
                im = F.interpolate(im[None], size=(s, s), mode="bilinear", align_corners=False)[0]
            batch.append(im)
        return (torch.stack(batch) - self.mean) / self.std

    def _anchors(self, levels: list[Tensor]) -> Tensor:
        sizes = tuple((int(p.shape[-2]), int(p.shape[-1])) for p in levels)
        key = (sizes, str(levels[0].device))
        if key not in self._anchor_cache:
            cfg = self.cfg
            reference = cfg.anchor_reference_size or float(cfg.input_size)  # None: input pixels
            self._anchor_cache[key] = make_anchors(sizes, cfg.anchor_scales, cfg.aspect_ratios, reference,
                                                   device=levels[0].device, octaves=cfg.anchor_octaves)
        return self._anchor_cache[key]

    def _network(self, images: list[Tensor], with_semantic: bool) -> RawOutput:
        levels = self.fpn(self.backbone(self._batch(images)))
        outs = [self.head(p) for p in levels]
        return RawOutput(
            deltas=torch.cat([o[0] for o in outs], dim=1),
            logits=torch.cat([o[1] for o in outs], dim=1),
            coefs=torch.cat([o[2] for o in outs], dim=1),
            protos=self.protonet(levels[0]),
            anchors=self._anchors(levels),
            semantic=self.semantic(levels[0]) if with_semantic else None,
            attributes=torch.cat([o[3] for o in outs], dim=1) if self.num_attributes else None,
        )

    def forward(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Named losses ``loss_cls``, ``loss_box``, ``loss_mask``, ``loss_semantic`` (and with
        attributes ``loss_attributes``) for a batch.

        Args:
            images: B float ``[3, H, W]`` in [0, 1]; targets: B target dicts (boxes in pixels of
                their image, masks ``[N, H, W]``), N may be 0.
        """
        raw = self._network(images, with_semantic=True)
        proto_hw = tuple(raw.protos.shape[1:3])
        sem_hw = tuple(raw.semantic.shape[-2:])
        prepared = [prepare_target(t, (int(im.shape[-2]), int(im.shape[-1])), proto_hw, sem_hw,
                                   self.num_classes, raw.protos.device, self.attribute_space)
                    for im, t in zip(images, targets)]
        scorer = self.attribute_loss if self.num_attributes else None
        return yolact_losses(raw, prepared, self.cfg, scorer)  # the config is a LossSettings

    def run_model(self, images: list[Tensor]) -> RawOutput:
        """Network outputs with class probabilities (softmax) in ``logits``' place; see :class:`RawOutput`."""
        raw = self._network(images, with_semantic=False)
        raw.logits = raw.logits.softmax(dim=-1)
        if raw.attributes is not None:
            raw.attributes = torch.sigmoid(raw.attributes)
        return raw

    # ------------------------------------------------------------------ inference
    def postprocess(self, raw: RawOutput, sizes: list[tuple[int, int]]) -> list[InstancePred]:
        """Decode, Fast NMS, assemble masks, paste at each ``(H, W)`` in ``sizes``."""
        boxes = decode(raw.deltas, raw.anchors)  # [B, A, 4] relative
        preds = [self._detect_one(boxes[b], raw.logits[b], raw.coefs[b], raw.protos[b], sizes[b])
                 for b in range(len(sizes))]
        if raw.attributes is None:
            return [pred for pred, _ in preds]
        return [self.with_attributes(pred, raw.attributes[b][anchors]) for b, (pred, anchors) in enumerate(preds)]

    def _detect_one(self, boxes: Tensor, probs: Tensor, coefs: Tensor, protos: Tensor,
                    size: tuple[int, int]) -> tuple[InstancePred, Tensor]:
        """One image: boxes ``[A, 4]``, probs ``[A, C+1]``, coefs ``[A, k]``, protos ``[hp, wp, k]``.
        Returns the prediction and the anchor index ``[N]`` of each detection."""
        cfg = self.cfg
        h, w = size
        fg = probs[:, 1:]
        cand = (fg.max(dim=1).values > cfg.score_threshold).nonzero().squeeze(1)
        none = cand.new_zeros((0,))
        if cand.numel() == 0:
            return InstancePred.empty(h, w).to(boxes.device), none
        keep, classes, scores = fast_nms(boxes[cand], fg[cand].t(), cfg.nms_iou, cfg.nms_top_k,
                                         cfg.score_threshold, cfg.max_detections)
        if keep.numel() == 0:
            return InstancePred.empty(h, w).to(boxes.device), none
        det_boxes = boxes[cand[keep]]
        masks = torch.sigmoid(protos @ coefs[cand[keep]].t())  # [hp, wp, D]
        masks = crop(masks, det_boxes).permute(2, 0, 1).contiguous()  # [D, hp, wp]; contiguous for a fast upsample
        side = max(h, w)  # the letterbox square (see _batch): the image is its top-left h x w
        masks = F.interpolate(masks[None], size=(side, side), mode="bilinear", align_corners=False)[0, :, :h, :w]
        limit = det_boxes.new_tensor([w, h, w, h])
        return InstancePred(
            boxes=(det_boxes * side).clamp(min=0).minimum(limit).float(),
            labels=classes + 1,
            scores=scores.float(),
            masks=masks.gt(cfg.mask_threshold),
        ), cand[keep]

    # ------------------------------------------------------------------ training support
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Backbone stages by stride (stem, stage2..stage5) and ``heads`` (FPN, protonet, head, semantic)."""
        groups = self.backbone.stage_groups()
        groups["heads"] = [p for part in (self.fpn, self.protonet, self.head, self.semantic) for p in part.parameters()]
        return groups

    def adapt_pretrained(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map a torchvision ResNet or timm state dict onto ``backbone.*``; own keys pass unchanged.

        torchvision keys (``layer1.0.conv1.weight``) live under ``backbone.``; a timm model's under
        ``backbone.body.``. Keys with no counterpart (the classifier) are dropped.
        """
        own = set(self.state_dict())
        prefix = "backbone.body." if self.cfg.backbone.startswith("timm:") else "backbone."
        out = {}
        for key, value in state.items():
            if key in own:
                out[key] = value
            elif prefix + key in own:
                out[prefix + key] = value
        return out
