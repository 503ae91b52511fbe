"""Probability maps -> instances: how a semantic model is scored with the instance models' mask AP.

Per category: threshold, optional morphological opening, connected components (components under
``min_area`` pixels dropped), score = mean probability ``m`` inside the component times its
margin ``(m - threshold) / (1 - threshold)``, box = its extent. The mean probability alone is
always above the threshold (> 0.5 by default), so it could not say "unsure"; the product keeps
the order of ``m`` (so COCO AP, which only ranks, is the same) and spreads scores over ``(0, 1]``:
a component barely above the threshold scores near 0, so score thresholds (the confusion matrix,
the gallery) treat a semantic model's unsure instances as they treat an instance model's.
Probabilities are resized to the output size *before* thresholding (bilinear), rather than
upsampling thresholded masks: edges stay smooth and ``min_area`` counts output pixels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from zoo.boxes import mask_boxes
from zoo.types import InstancePred


def components(prob: np.ndarray, *, threshold: float, min_area: int, opening: int) -> list[tuple[float, np.ndarray]]:
    """``(score, bool mask [H, W])`` per connected component of ``prob > threshold`` (``prob`` ``[H, W]``);
    score = mean probability ``m`` times ``(m - threshold) / (1 - threshold)``, in ``(0, 1]``.

    ``opening`` is the radius of a disk-shaped opening before labelling (0: none); 4-connectivity,
    so parts that touch only diagonally stay apart.
    """
    binary = prob > threshold
    if opening > 0:
        r = opening
        disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
        binary = ndimage.binary_opening(binary, structure=disk)
    comp, n = ndimage.label(binary)
    if n == 0:
        return []
    ids = np.arange(1, n + 1)
    areas = ndimage.sum_labels(binary, comp, ids)
    means = ndimage.mean(prob, comp, ids)
    scores = means * (means - threshold) / max(1.0 - threshold, 1e-6)
    return [(float(scores[k]), comp == ids[k]) for k in range(n) if areas[k] >= min_area]


def component_attributes(masks: Tensor, attribute_probs: Tensor) -> Tensor:
    """Mean attribute probabilities ``[N, A]`` over each instance's pixels.

    Args:
        masks: bool ``[N, H, W]`` at the output size.
        attribute_probs: float32 ``[A, h, w]`` at the network's resolution.
    The masks are area-resampled to ``(h, w)`` (the share of each network pixel a component
    covers), so the mean is over the same pixels at either size without resizing the A maps.
    """
    a, h, w = attribute_probs.shape
    if masks.shape[0] == 0:
        return attribute_probs.new_zeros((0, a))
    weights = F.interpolate(masks[None].float().to(attribute_probs.device), size=(h, w), mode="area")[0]
    weights = weights.flatten(1)  # [N, h*w]
    return (weights @ attribute_probs.reshape(a, -1).t()) / weights.sum(1, keepdim=True).clamp(min=1e-6)


def probs_to_instances(probs: Tensor, size: tuple[int, int], *, threshold: float = 0.5, min_area: int = 16,
                       opening: int = 0, max_instances: int = 100) -> InstancePred:
    """Instances of one image's sigmoid probabilities ``probs`` float32 ``[C, h, w]``, at ``size`` ``(H, W)``.

    Returns masks bool ``[N, H, W]``, labels ``1..C``, scores in ``[0, 1]`` (the ``max_instances``
    highest), boxes XYXY float32 ``[N, 4]``.
    """
    # Only categories that reach the threshold somewhere are resized and labelled (saves C-1
    # full-size resizes on a typical image).
    cats = torch.nonzero(probs.flatten(1).amax(dim=1) > threshold).flatten().tolist()
    if not cats:
        return InstancePred.empty(*size)
    full = F.interpolate(probs[cats][None], size=size, mode="bilinear", align_corners=False)[0]
    full = full.cpu().numpy()
    found: list[tuple[float, int, np.ndarray]] = []
    for cat, p in zip(cats, full):
        found.extend((score, cat + 1, mask) for score, mask in
                     components(p, threshold=threshold, min_area=min_area, opening=opening))
    if not found:
        return InstancePred.empty(*size)
    found.sort(key=lambda f: -f[0])
    found = found[:max_instances]
    masks = np.stack([f[2] for f in found])
    return InstancePred(boxes=torch.from_numpy(mask_boxes(masks)),
                        labels=torch.tensor([f[1] for f in found], dtype=torch.int64),
                        scores=torch.tensor([f[0] for f in found], dtype=torch.float32).clamp(0, 1),
                        masks=torch.from_numpy(masks))
