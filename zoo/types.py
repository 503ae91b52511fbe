"""The shared data types every part of zoo speaks.

Conventions (used by the dataset, the adapters, the evaluator and the harness):

* An **image** given to a model is a float32 tensor ``[3, H, W]`` with values in ``[0, 1]``.
* A **target** is a dict with
    - ``boxes``  ``tv_tensors.BoundingBoxes`` float32 ``[N, 4]``, XYXY, image pixels
    - ``labels`` int64 ``[N]`` contiguous labels ``1..C`` (0 is background)
    - ``masks``  ``tv_tensors.Mask`` uint8 ``[N, H, W]`` (1 = inside)
    - ``attributes`` list of N lists of int (attribute ids as the source file writes them)
    - ``image_id`` int (index into the dataset's ``image_ids``)
* A **prediction** is an :class:`InstancePred`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Category:
    """One category: ``id`` as the source file numbers it, ``label`` the contiguous model label."""

    id: int
    label: int
    name: str
    supercategory: str = ""


@dataclass
class InstancePred:
    """What every adapter's ``predict`` returns for one image.

    Attributes:
        boxes: float32 ``[N, 4]`` XYXY in pixels of the image given to ``predict``.
        labels: int64 ``[N]`` in ``1..C``.
        scores: float32 ``[N]`` in ``[0, 1]``.
        masks: bool ``[N, H, W]`` at the size of the image given to ``predict``.
        attributes: N lists of attribute ids (as the source file numbers them) for a model that
            predicts attributes (those whose probability is above the model's threshold);
            ``None`` for one that does not.
        attribute_probs: float32 ``[N, A]`` probability of each of the model's attributes
            (column ``j`` is attribute ``adapter.attribute_space.ids[j]``); ``None`` without attributes.
    """

    boxes: Tensor
    labels: Tensor
    scores: Tensor
    masks: Tensor
    attributes: list[list[int]] | None = None
    attribute_probs: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.numel())

    @staticmethod
    def empty(height: int, width: int) -> "InstancePred":
        return InstancePred(
            boxes=torch.zeros((0, 4), dtype=torch.float32),
            labels=torch.zeros((0,), dtype=torch.int64),
            scores=torch.zeros((0,), dtype=torch.float32),
            masks=torch.zeros((0, height, width), dtype=torch.bool),
        )

    def to(self, device: torch.device | str) -> "InstancePred":
        probs = self.attribute_probs.to(device) if self.attribute_probs is not None else None
        return InstancePred(*(t.to(device) for t in (self.boxes, self.labels, self.scores, self.masks)),
                            attributes=self.attributes, attribute_probs=probs)

    def select(self, keep: Tensor | list[int]) -> "InstancePred":
        """The instances at ``keep`` (indices or a bool mask ``[N]``), attributes included."""
        index = keep if isinstance(keep, Tensor) else torch.tensor(list(keep), dtype=torch.int64)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        rows = index.tolist()
        return InstancePred(self.boxes[index], self.labels[index], self.scores[index], self.masks[index],
                            [self.attributes[k] for k in rows] if self.attributes is not None else None,
                            self.attribute_probs[index] if self.attribute_probs is not None else None)
