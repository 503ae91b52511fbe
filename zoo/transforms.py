"""Training-time augmentation on image, boxes and masks together (torchvision.transforms.v2).

The list is the source study's: horizontal and vertical flips, a random crop of up to 10% per side,
Gaussian blur (sigma 0-0.5) on half the images, contrast 0.75-1.5, additive Gaussian noise,
brighten/darken, and an affine warp (scale 0.5-1.5, rotate +-45 deg, translate +-0.2, shear +-8 deg).
After the geometric warps, boxes are recomputed from the warped masks (a rotated box is no longer
tight) and instances whose masks vanished are dropped, attributes included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from zoo.boxes import mask_boxes
from zoo.config import AugmentConfig


class RandomCropFraction(v2.Transform):
    """Crop away a random share in ``[0, fraction]`` of each side (image, boxes and masks)."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        cut = torch.rand(4) * self.fraction
        top, bottom = int(cut[0] * h), int(cut[1] * h)
        left, right = int(cut[2] * w), int(cut[3] * w)
        return dict(top=top, left=left, height=max(1, h - top - bottom), width=max(1, w - left - right))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.crop, inpt, **params)


def build_augmentation(cfg: AugmentConfig) -> v2.Compose:
    """The augmentation pipeline for float images in ``[0, 1]`` with boxes and masks."""
    steps: list[v2.Transform] = []
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip(0.5))
    if cfg.vflip:
        steps.append(v2.RandomVerticalFlip(0.5))
    if cfg.crop > 0:
        steps.append(RandomCropFraction(cfg.crop))
    if cfg.blur_sigma > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(1e-3, cfg.blur_sigma))], p=0.5))
    steps.append(v2.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast))
    if cfg.noise_std > 0:
        steps.append(RandomNoise(cfg.noise_std))
    steps.append(v2.RandomAffine(degrees=cfg.rotate, translate=(cfg.translate, cfg.translate),
                                 scale=cfg.scale, shear=cfg.shear))
    return v2.Compose(steps)


class RandomNoise(v2.Transform):
    """Additive Gaussian noise with a std drawn in ``[0, max_std]``, clamped to ``[0, 1]``."""

    def __init__(self, max_std: float) -> None:
        super().__init__()
        self.max_std = max_std

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return dict(std=float(torch.rand(()) * self.max_std))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.Image,)) or (type(inpt) is Tensor and inpt.is_floating_point()):
            noisy = (inpt + torch.randn_like(inpt) * params["std"]).clamp_(0, 1)
            return tv_tensors.wrap(noisy, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else noisy
        return inpt


def tighten_and_drop(target: dict[str, Any]) -> dict[str, Any]:
    """Boxes recomputed from masks; instances whose mask is empty are dropped (attributes too).

    Args:
        target: with ``masks`` ``[N, H, W]``, ``boxes`` ``[N, 4]``, ``labels`` ``[N]``, ``attributes``.
    """
    masks = target["masks"]
    keep = masks.flatten(1).bool().any(1) if masks.numel() else torch.zeros(masks.shape[0], dtype=torch.bool)
    masks = masks[keep]
    h, w = masks.shape[-2:]
    boxes = torch.from_numpy(mask_boxes(masks))
    out = dict(target)
    out["masks"] = tv_tensors.Mask(masks)
    out["boxes"] = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w))
    out["labels"] = target["labels"][keep]
    attrs = target.get("attributes", [[] for _ in range(len(keep))])
    out["attributes"] = [a for a, k in zip(attrs, keep.tolist()) if k]
    return out


def to_model_input(image: Tensor) -> Tensor:
    """uint8 ``[3, H, W]`` -> float32 ``[3, H, W]`` in ``[0, 1]`` (plain tensor)."""
    return F.to_dtype(image, torch.float32, scale=True).as_subclass(Tensor)


def augment_sample(image: Tensor, target: dict[str, Any], pipeline: v2.Compose) -> tuple[Tensor, dict[str, Any]]:
    """Apply ``pipeline`` to a float image and its target together, then tighten boxes."""
    image = tv_tensors.Image(image)
    attrs = target.get("attributes")
    geo = {k: target[k] for k in ("boxes", "masks", "labels")}
    image, geo = pipeline(image, geo)
    merged = dict(target, **geo)
    if attrs is not None:
        merged["attributes"] = attrs
    return image.as_subclass(Tensor), tighten_and_drop(merged)


# ---------------------------------------------------------------- from the network input back to the photo
@dataclass(frozen=True)
class InputGeometry:
    """How a photo became the network input, so predictions can be mapped back exactly.

    The data core resizes the photo ``source`` ``(H, W)`` to ``scaled`` ``(h, w)`` (see
    :class:`zoo.data.decode.ResizeSpec`), then zero-pads it at the bottom/right to ``canvas``
    (square mode; otherwise ``canvas == scaled``). Evaluation never crops.
    """

    source: tuple[int, int]
    scaled: tuple[int, int]
    canvas: tuple[int, int]

    @classmethod
    def of(cls, spec: Any, height: int, width: int) -> "InputGeometry":
        """The geometry a :class:`~zoo.data.decode.ResizeSpec` gives a ``height x width`` photo."""
        return cls((int(height), int(width)), tuple(spec.scaled_size(height, width)),
                   tuple(spec.canvas_size(height, width)))

    def unpad(self, masks: Tensor) -> Tensor:
        """Masks ``[N, Hc, Wc]`` on the canvas -> ``[N, h, w]``, the region that holds the photo."""
        return masks[..., : self.scaled[0], : self.scaled[1]]

    def boxes_to(self, boxes: Tensor, out_hw: tuple[int, int] | None = None) -> Tensor:
        """XYXY boxes float ``[N, 4]`` in canvas pixels -> pixels of ``out_hw`` (default the photo),
        clipped to it. Padding is at the bottom/right, so only a scale per axis is undone."""
        out_h, out_w = out_hw or self.source
        scale = torch.tensor([out_w / self.scaled[1], out_h / self.scaled[0]] * 2, dtype=torch.float64)
        mapped = boxes.detach().cpu().to(torch.float64) * scale
        limit = torch.tensor([out_w, out_h] * 2, dtype=torch.float64)
        return torch.minimum(mapped.clamp(min=0), limit).to(torch.float32)
