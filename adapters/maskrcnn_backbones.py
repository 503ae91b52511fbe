"""Feature-pyramid backbones for the Mask R-CNN adapter, their parameter groups and key mapping.

Two families, both returning a module with ``body`` (the CNN), ``fpn`` (torchvision
``FeaturePyramidNetwork``) and ``out_channels``, whose forward maps a batch ``[B, 3, H, W]`` to an
``OrderedDict`` of FPN maps ``{"0": [B, C, H/4, W/4], ..., "3": [B, C, H/32, W/32], "pool": ...}``:

* torchvision ResNets (``resnet18`` .. ``resnet101``) through ``BackboneWithFPN``, the same module
  torchvision's ``maskrcnn_resnet50_fpn`` uses, so COCO checkpoints load key for key;
* timm models (``timm:<name>``) through ``timm.create_model(features_only=True)``.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Callable

from torch import Tensor, nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from zoo.errors import UserError

RESNETS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101")
NORMS: dict[str, Callable[..., nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "frozen": misc_nn_ops.FrozenBatchNorm2d,
}
TIMM_PREFIX = "timm:"


class TimmBody(nn.Module):
    """A timm ``features_only`` network whose outputs are named ``"0".."k"`` for the FPN."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return OrderedDict((str(i), f) for i, f in enumerate(self.features(x)))


class TimmBackboneWithFPN(nn.Module):
    """timm feature extractor + torchvision FPN; same interface as ``BackboneWithFPN``."""

    def __init__(self, body: TimmBody, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return self.fpn(self.body(x))


def build_backbone(name: str, norm: str, fpn_channels: int,
                   timm_out_indices: tuple[int, ...]) -> nn.Module:
    """A randomly initialised backbone + FPN with ``len(levels) + 1`` output maps ("pool" last).

    Every layer is trainable; staged training freezes groups through ``param_groups``.
    """
    if norm not in NORMS:
        raise UserError(f"model.norm: unknown {norm!r}; choose one of {', '.join(NORMS)}")
    if name.startswith(TIMM_PREFIX):
        return _timm_backbone(name[len(TIMM_PREFIX):], norm, fpn_channels, timm_out_indices)
    if name not in RESNETS:
        raise UserError(f"model.backbone: unknown {name!r}; choose one of {', '.join(RESNETS)} "
                        f"or '{TIMM_PREFIX}<timm model name>'")
    body = resnet.__dict__[name](weights=None, norm_layer=NORMS[norm])
    # Same wiring as torchvision's _resnet_fpn_extractor (layer1..layer4 -> "0".."3"), with the
    # FPN width a parameter: 256 channels make the CPU box head and roi_align several times dearer.
    return_layers = {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)}
    stage2_channels = body.inplanes // 8
    in_channels = [stage2_channels * 2 ** (k - 1) for k in (1, 2, 3, 4)]
    return BackboneWithFPN(body, return_layers, in_channels, fpn_channels, extra_blocks=LastLevelMaxPool())


def _timm_backbone(model_name: str, norm: str, fpn_channels: int,
                   out_indices: tuple[int, ...]) -> TimmBackboneWithFPN:
    import timm

    if model_name not in timm.list_models():
        raise UserError(f"model.backbone: timm has no model {model_name!r} "
                        f"(see timm.list_models(); e.g. 'timm:resnet18')")
    try:
        features = timm.create_model(model_name, pretrained=False, features_only=True, out_indices=out_indices)
    except (IndexError, ValueError, AssertionError) as err:
        raise UserError(f"model.timm_out_indices: {list(out_indices)} does not fit {model_name!r} ({err})") from None
    if norm == "frozen":
        features = timm.layers.freeze_batch_norm_2d(features)
    return TimmBackboneWithFPN(TimmBody(features), list(features.feature_info.channels()), fpn_channels)


def _group_for_reduction(reduction: int) -> str:
    """Stride 2 or less is the stem; 4 -> stage2, 8 -> stage3, 16 -> stage4, 32+ -> stage5."""
    if reduction <= 2:
        return "stem"
    return f"stage{min(5, int(round(math.log2(reduction))))}"


def body_groups(backbone: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The backbone body's parameters by group ("stem", "stage2".."stage5")."""
    body = backbone.body
    if isinstance(body, TimmBody):
        # Every stage timm reports (not only the FPN's), so the stem is told apart from stage2.
        info = body.features.feature_info
        stages = [(info.get("module", i), _group_for_reduction(info.get("reduction", i)))
                  for i in range(len(info.info))]
        body = body.features
    else:
        stages = [("bn1", "stem"), ("layer1", "stage2"), ("layer2", "stage3"),
                  ("layer3", "stage4"), ("layer4", "stage5")]
    # Position of every module in forward (registration) order; a stage spans its module and all
    # of its descendants. A parameter belongs to the first stage that ends at or after it, so
    # layers between two reported stages (efficientnet blocks.3) join the stage they feed.
    order = {name: i for i, (name, _) in enumerate(body.named_modules())}
    ends = [(_stage_end(order, module), group) for module, group in stages]
    groups: dict[str, list[nn.Parameter]] = {}
    for name, param in body.named_parameters():
        pos = order[name.rpartition(".")[0]]
        group = next((g for end, g in ends if end >= pos), ends[-1][1])
        groups.setdefault(group, []).append(param)
    return groups


def _stage_end(order: dict[str, int], module: str) -> int:
    """Index of the last module inside ``module`` ("stages.0" may be flattened to "stages_0")."""
    for name in (module, module.replace(".", "_")):
        inside = [i for m, i in order.items() if m == name or m.startswith(name + ".")]
        if inside:
            return max(inside)
    raise ValueError(f"feature module {module!r} not found in the backbone")


# Old torchvision detection checkpoints (the published COCO Mask R-CNN) use pre-v2 names that
# torchvision renames in _load_from_state_dict; the harness filters keys before loading, so rename here.
_OLD_RPN_CONV = re.compile(r"^rpn\.head\.conv\.(weight|bias)$")
_OLD_MASK_CONV = re.compile(r"^roi_heads\.mask_head\.mask_fcn(\d+)\.(weight|bias)$")


def rename_detection_key(key: str) -> str:
    """A torchvision detection checkpoint key in today's naming (``mask_fcn1`` -> ``0.0``)."""
    if match := _OLD_RPN_CONV.match(key):
        return f"rpn.head.conv.0.0.{match.group(1)}"
    if match := _OLD_MASK_CONV.match(key):
        return f"roi_heads.mask_head.{int(match.group(1)) - 1}.0.{match.group(2)}"
    return key


def map_backbone_state(state: dict[str, Tensor], body_keys: set[str], timm_body: bool) -> dict[str, Tensor]:
    """Keys of a classification network's state dict -> ``backbone.body.*`` keys of this model.

    Keys with no counterpart (the classifier ``fc.*``/``head.*``) are kept unchanged so that the
    loader reports them as unexpected rather than dropping them silently.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        target = _body_key(key, body_keys, timm_body)
        out[target or key] = value
    return out


def _body_key(key: str, body_keys: set[str], timm_body: bool) -> str | None:
    prefix = "backbone.body.features." if timm_body else "backbone.body."
    candidates = [key]
    if timm_body:
        # timm's features_only wrapper flattens "stages.0.x" into "stages_0.x".
        head, _, rest = key.partition(".")
        if rest:
            first, _, tail = rest.partition(".")
            candidates.append(f"{head}_{first}.{tail}" if tail else key)
    for cand in candidates:
        if prefix + cand in body_keys:
            return prefix + cand
    return None


def feature_levels(backbone: nn.Module) -> int:
    """Number of FPN output maps (the body's levels plus the extra "pool" level)."""
    return len(backbone.fpn.inner_blocks) + 1
