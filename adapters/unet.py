"""UNet (segmentation-models-pytorch) as an instance-segmentation adapter.

The network predicts one sigmoid channel per category (multi-label: a sleeve pixel is also a
shirt pixel), trained with BCE + Dice from ``smp.losses``. ``postprocess`` turns the probability
maps into instances so that the shared evaluator scores UNet with the same mask AP as the
instance models: per category, threshold, optional morphological opening, connected components
(components under ``min_area`` pixels dropped), score = mean probability inside the component,
box = the component's extent.

Probabilities are resized to each image's size *before* thresholding (bilinear), rather than
upsampling thresholded component masks: edges stay smooth and ``min_area`` is counted in pixels
of the image given to ``predict``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from zoo.adapter import GROUP_ORDER, Adapter, register
from zoo.errors import UserError
from zoo.types import InstancePred

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class UnetConfig:
    """UNet options; the defaults are the CPU preset."""

    encoder: str = "resnet18"  # any smp encoder name, or "tu-<timm name>"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    encoder_weights_path: str | None = None  # local torchvision/timm/smp state dict for the encoder
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
class UnetRaw:
    """What ``run_model`` hands to ``postprocess``.

    Attributes:
        probs: float32 ``[B, C, Hp, Wp]`` sigmoid probabilities of the padded batch.
        valid: per image, the ``(h, w)`` of its resized, unpadded region inside ``probs``.
    """

    probs: Tensor
    valid: list[tuple[int, int]]


@register("unet")
class UnetAdapter(Adapter):
    """smp ``Unet`` with C sigmoid channels; instances come from connected components."""

    config_cls = UnetConfig
    instance_native = False
    backbone_option = "encoder"
    input_size_fields = ("input_size",)

    def __init__(self, cfg: UnetConfig, num_classes: int) -> None:
        super().__init__(cfg, num_classes)
        if cfg.bce_weight < 0 or cfg.dice_weight < 0 or cfg.bce_weight + cfg.dice_weight == 0:
            raise UserError("model.bce_weight/model.dice_weight: need non-negative weights, at least one > 0")
        if len(cfg.decoder_channels) != cfg.encoder_depth:
            raise UserError(f"model.decoder_channels: needs {cfg.encoder_depth} values (encoder_depth), "
                            f"got {len(cfg.decoder_channels)}")
        _check_encoder_name(cfg.encoder)
        self.net = smp.Unet(encoder_name=cfg.encoder, encoder_depth=cfg.encoder_depth, encoder_weights=None,
                            decoder_channels=cfg.decoder_channels, classes=num_classes)
        self.bce = smp.losses.SoftBCEWithLogitsLoss()
        self.dice = smp.losses.DiceLoss(smp.losses.MULTILABEL_MODE, from_logits=True)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(3, 1, 1), persistent=False)
        self.stride = 2 ** cfg.encoder_depth  # smp Unet needs sides divisible by this
        self._groups = _encoder_stage_names(self.net.encoder)
        if cfg.encoder_weights_path:
            load_encoder_weights(self, cfg.encoder_weights_path)

    # ------------------------------------------------------------ batching
    def _batch(self, images: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """Normalise, resize (longest side = ``input_size``) and zero-pad to a multiple of the stride.

        Returns the batch ``[B, 3, Hp, Wp]`` and each image's resized ``(h, w)``.
        """
        device = self.mean.device
        resized, valid = [], []
        for im in images:
            h, w = _scaled_size(im.shape[-2:], self.cfg.input_size)
            x = (im.to(device, torch.float32) - self.mean) / self.std
            if (h, w) != tuple(im.shape[-2:]):
                x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            resized.append(x)
            valid.append((h, w))
        hp = _round_up(max(h for h, _ in valid), self.stride)
        wp = _round_up(max(w for _, w in valid), self.stride)
        batch = torch.zeros((len(images), 3, hp, wp), device=device)
        for i, x in enumerate(resized):
            batch[i, :, : x.shape[1], : x.shape[2]] = x
        return batch, valid

    def _target_maps(self, targets: list[dict[str, Any]], valid: list[tuple[int, int]],
                     padded: tuple[int, int]) -> Tensor:
        """C-channel multi-label maps ``[B, C, Hp, Wp]`` (1 where any instance of that category lies)."""
        out = torch.zeros((len(targets), self.num_classes, *padded), device=self.mean.device)
        for i, (t, (h, w)) in enumerate(zip(targets, valid)):
            masks = torch.as_tensor(t["masks"]).to(out.device)
            if masks.shape[0] == 0:
                continue
            labels = torch.as_tensor(t["labels"]).to(out.device).long() - 1
            m = F.interpolate(masks[None].float(), size=(h, w), mode="nearest")[0]
            # one-hot [C, N] @ masks [N, h*w] counts instances per category; clamp to a 0/1 union
            onehot = F.one_hot(labels, self.num_classes).T.float()
            out[i, :, :h, :w] = (onehot @ m.flatten(1)).clamp(max=1).view(-1, h, w)
        return out

    # ------------------------------------------------------------ training
    def forward(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """Losses ``{"loss_bce", "loss_dice"}`` (weighted) for B images and their targets."""
        batch, valid = self._batch(images)
        logits = self.net(batch).float()
        target = self._target_maps(targets, valid, tuple(batch.shape[-2:]))
        losses = {}
        if self.cfg.bce_weight > 0:
            losses["loss_bce"] = self.cfg.bce_weight * self.bce(logits, target)
        if self.cfg.dice_weight > 0:
            # smp averages Dice over all C channels, absent ones counting 0; rescale to the mean over
            # present categories so the term does not shrink as C grows. Empty batch: 0 (finite).
            present = (target.sum(dim=(0, 2, 3)) > 0).sum().clamp(min=1)
            losses["loss_dice"] = self.cfg.dice_weight * self.dice(logits, target) * (self.num_classes / present)
        return losses

    # ------------------------------------------------------------ inference
    def run_model(self, images: list[Tensor]) -> UnetRaw:
        """Sigmoid probabilities of the padded batch (see :class:`UnetRaw`)."""
        batch, valid = self._batch(images)
        return UnetRaw(probs=torch.sigmoid(self.net(batch).float()), valid=valid)

    def postprocess(self, raw: UnetRaw, sizes: list[tuple[int, int]]) -> list[InstancePred]:
        """Instances per image: masks bool ``[N, H, W]`` at each ``(H, W)`` in ``sizes``."""
        preds = []
        for probs, (h, w), size in zip(raw.probs, raw.valid, sizes):
            preds.append(self._instances(probs[:, :h, :w], size))
        return preds

    def _instances(self, probs: Tensor, size: tuple[int, int]) -> InstancePred:
        """Connected components of one image's ``probs`` ``[C, h, w]``, pasted at ``size``."""
        thr = self.cfg.mask_threshold
        # Only categories that reach the threshold somewhere are resized and labelled (saves C-1
        # full-size resizes on a typical image).
        cats = torch.nonzero(probs.flatten(1).amax(dim=1) > thr).flatten().tolist()
        if not cats:
            return InstancePred.empty(*size)
        full = F.interpolate(probs[cats][None], size=size, mode="bilinear", align_corners=False)[0]
        full = full.cpu().numpy()
        found: list[tuple[float, int, np.ndarray]] = []
        for cat, p in zip(cats, full):
            found.extend((score, cat + 1, mask) for score, mask in self._components(p))
        if not found:
            return InstancePred.empty(*size)
        found.sort(key=lambda f: -f[0])
        found = found[: self.cfg.max_instances]
        masks = torch.from_numpy(np.stack([f[2] for f in found]))
        return InstancePred(boxes=_mask_boxes(masks),
                            labels=torch.tensor([f[1] for f in found], dtype=torch.int64),
                            scores=torch.tensor([f[0] for f in found], dtype=torch.float32).clamp(0, 1),
                            masks=masks)

    def _components(self, prob: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """``(score, bool mask [H, W])`` per connected component of ``prob > mask_threshold``."""
        binary = prob > self.cfg.mask_threshold
        if self.cfg.opening > 0:
            r = self.cfg.opening
            disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
            binary = ndimage.binary_opening(binary, structure=disk)
        comp, n = ndimage.label(binary)  # 4-connectivity: diagonal touches do not merge parts
        if n == 0:
            return []
        ids = np.arange(1, n + 1)
        areas = ndimage.sum_labels(binary, comp, ids)
        means = ndimage.mean(prob, comp, ids)
        return [(float(means[k]), comp == ids[k]) for k in range(n) if areas[k] >= self.cfg.min_area]

    # ------------------------------------------------------------ staged training
    def train(self, mode: bool = True) -> "UnetAdapter":
        """Train mode, except batch norms whose weights are frozen keep their running statistics.

        A frozen (e.g. pretrained) encoder stage would otherwise drift towards the statistics of
        a few small batches while its weights stay fixed.
        """
        super().train(mode)
        if mode:
            for m in self.net.encoder.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None \
                        and not m.weight.requires_grad:
                    m.eval()
        return self

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Encoder stages as stem/stage2..stage5 (by feature stride), decoder + head as "heads"."""
        groups: dict[str, list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            key = name.removeprefix("net.encoder.")
            group = self._groups.get(key, "heads") if name.startswith("net.encoder.") else "heads"
            groups.setdefault(group, []).append(p)
        return {g: groups[g] for g in GROUP_ORDER if g in groups}

    def adapt_pretrained(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map torchvision/timm backbone keys (``layer1.0.conv1.weight``) and smp keys to ``net.encoder.*``.

        Keys of this adapter (``net.*``) pass unchanged; keys with no match (``fc.*``) are dropped.
        """
        own = set(self.net.encoder.state_dict())
        out = {}
        for key, value in state.items():
            key = key.removeprefix("module.")
            if key.startswith("net."):
                out[key] = value
                continue
            key = key.removeprefix("encoder.")
            parts = key.split(".")
            flat = "_".join(parts[:2]) + "." + ".".join(parts[2:]) if len(parts) > 2 else key
            for cand in (key, f"model.{key}", f"model.{flat}"):
                if cand in own:
                    out[f"net.encoder.{cand}"] = value
                    break
        return out


def load_encoder_weights(adapter: UnetAdapter, path: str | Path) -> int:
    """Load a local state dict into ``adapter``'s encoder; returns the number of tensors loaded.

    Shape-mismatched keys are skipped (e.g. a stem for another channel count); a file that
    matches no encoder key is an error, as it almost certainly belongs to another backbone.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model.encoder_weights_path: {p}: file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: report it on one line
        raise UserError(f"model.encoder_weights_path: {p}: not a torch state dict ({err.__class__.__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    mapped = adapter.adapt_pretrained(state)
    own = adapter.state_dict()
    usable = {k: v for k, v in mapped.items()
              if k.startswith("net.encoder.") and k in own and own[k].shape == v.shape}
    if not usable:
        raise UserError(f"model.encoder_weights_path: {p}: no tensor matches encoder {adapter.cfg.encoder!r}")
    adapter.load_state_dict(usable, strict=False)
    return len(usable)


def _check_encoder_name(name: str) -> None:
    """A one-line error with a close match for an unknown smp or ``tu-`` (timm) encoder name."""
    if name.startswith("tu-"):
        known, bare = timm.list_models(), name[3:]
        if timm.is_model(bare):
            return
        close = difflib.get_close_matches(bare, known, n=1)
        hint = f" (did you mean 'tu-{close[0]}'?)" if close else ""
    else:
        known = smp.encoders.get_encoder_names()
        if name in known:
            return
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(f"model.encoder: unknown encoder {name!r}{hint}; use an smp encoder name "
                    f"(resnet18, resnet50, efficientnet-b0, ...) or 'tu-<timm model>'")


def _encoder_stage_names(encoder: nn.Module) -> dict[str, str]:
    """Parameter name -> group, from the stride of each module's output on a dummy input.

    Stride 1-2 is the stem, 4 stage2, 8 stage3, 16 stage4, 32 stage5: the C2..C5 convention,
    which for a ResNet is conv1/bn1, layer1, layer2, layer3, layer4. Works for any encoder that
    returns feature maps; a module that never runs inherits the group of the one before it.
    """
    side = 64
    stride_of: dict[str, int] = {}
    last = [1]  # stride of the latest 4-D output, shared so token-shaped outputs inherit it
    hooks = [m.register_forward_hook(_stride_hook(name, stride_of, last, side))
             for name, m in encoder.named_modules() if any(True for _ in m.parameters(recurse=False))]
    was_training = encoder.training
    encoder.eval()  # do not touch batch-norm running statistics
    try:
        with torch.no_grad():
            encoder(torch.zeros(1, 3, side, side, device=next(encoder.parameters()).device))
    finally:
        encoder.train(was_training)
        for h in hooks:
            h.remove()
    names = {1: "stem", 2: "stem", 4: "stage2", 8: "stage3", 16: "stage4"}
    groups, current = {}, "stem"
    for mod_name, m in encoder.named_modules():
        if mod_name in stride_of:
            current = names.get(stride_of[mod_name], "stage5")
        for p_name, _ in m.named_parameters(recurse=False):
            groups[f"{mod_name}.{p_name}" if mod_name else p_name] = current
    return groups


def _stride_hook(name: str, stride_of: dict[str, int], last: list[int], side: int):
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (list, tuple)) else output
        if isinstance(out, Tensor) and out.dim() == 4:
            last[0] = max(1, side // max(1, out.shape[-1]))
        stride_of[name] = last[0]

    return hook


def _scaled_size(hw: torch.Size | tuple[int, int], longest: int | None) -> tuple[int, int]:
    h, w = int(hw[0]), int(hw[1])
    if longest is None or max(h, w) == longest:
        return h, w
    scale = longest / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _round_up(x: int, multiple: int) -> int:
    return -(-x // multiple) * multiple


def _mask_boxes(masks: Tensor) -> Tensor:
    """XYXY float32 ``[N, 4]`` covering each bool mask ``[N, H, W]`` (x2/y2 one past the last pixel)."""
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    h, w = masks.shape[-2:]
    y1 = rows.float().argmax(dim=1)
    y2 = h - rows.flip(1).float().argmax(dim=1)
    x1 = cols.float().argmax(dim=1)
    x2 = w - cols.flip(1).float().argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).float()
