"""Attribute-Mask R-CNN's attribute branch on torchvision's ``RoIHeads``, without forking it.

Jia et al., "Fashionpedia: Ontology, Segmentation, and an Attribute Localization Dataset" (ECCV
2020): an attribute predictor on the box-head features of the positive RoIs, trained with
multi-label sigmoid BCE against the attributes of each RoI's matched ground truth. Here the
subclass only remembers the RoIs torchvision samples for training; the branch pools those that
are positive again through the same box head (as torchvision's mask branch pools its positives),
and at inference the kept detections, as the mask head does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads

from zoo.attributes import PRIOR_LOGIT


class AttributePredictor(nn.Module):
    """Box-head features ``[M, R]`` -> attribute logits ``[M, A]`` (two fully connected layers)."""

    def __init__(self, in_features: int, num_attributes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, in_features)
        self.out = nn.Linear(in_features, num_attributes)
        nn.init.constant_(self.out.bias, PRIOR_LOGIT)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(F.relu(self.fc(x)))


class AttributeRoIHeads(RoIHeads):
    """torchvision's ``RoIHeads`` (same parts, same behaviour) plus ``attribute_predictor``."""

    def __init__(self, heads: RoIHeads, num_attributes: int, representation_size: int) -> None:
        super().__init__(heads.box_roi_pool, heads.box_head, heads.box_predictor,
                         heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
                         heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
                         heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
                         mask_roi_pool=heads.mask_roi_pool, mask_head=heads.mask_head,
                         mask_predictor=heads.mask_predictor)
        self.attribute_predictor = AttributePredictor(representation_size, num_attributes)
        self._sampled: tuple[list[Tensor], list[Tensor], list[Tensor]] | None = None

    def select_training_samples(self, proposals, targets):  # noqa: ANN001, ANN201 (torchvision's signature)
        """torchvision's sampling, remembered for :meth:`positive_attribute_logits`."""
        out = super().select_training_samples(proposals, targets)
        self._sampled = (out[0], out[1], out[2])  # sampled proposals, matched ground truth, labels
        return out

    def positive_attribute_logits(self, features: dict[str, Tensor], image_shapes: list[tuple[int, int]],
                                  targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """Logits ``[M, A]`` and targets ``[M, A]`` of the positive RoIs of the last training
        forward whose matched ground truth teaches attributes (``targets[i]["attribute_teach"]``
        bool ``[N_i]``, ``targets[i]["attributes"]`` float ``[N_i, A]``)."""
        if self._sampled is None:
            raise RuntimeError("positive_attribute_logits needs a training forward first")
        proposals, matched, labels = self._sampled
        self._sampled = None
        boxes, wanted = [], []
        for props, idx, lab, target in zip(proposals, matched, labels, targets):
            pos = torch.where(lab > 0)[0]
            gt = idx[pos]
            teach = target["attribute_teach"][gt]
            boxes.append(props[pos[teach]])
            wanted.append(target["attributes"][gt[teach]])
        return self.attribute_logits(features, boxes, image_shapes), torch.cat(wanted)

    def attribute_logits(self, features: dict[str, Tensor], boxes: list[Tensor],
                         image_shapes: list[tuple[int, int]]) -> Tensor:
        """Logits ``[sum N_i, A]`` of boxes ``[N_i, 4]`` (pixels of the resized images)."""
        return self.attribute_predictor(self.box_head(self.box_roi_pool(features, boxes, image_shapes)))
