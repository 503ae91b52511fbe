"""The YOLACT network: backbone, FPN, protonet, shared prediction head, semantic head.

Layer shapes follow the reference implementation (``yolact_base_config``): an FPN with 1x1
laterals, 3x3 outputs (ReLU) and stride-2 3x3 convs for the levels above C5; a protonet of three
3x3 convs, a bilinear x2 upsample, one 3x3 conv and a 1x1 conv to ``k`` prototypes (ReLU); one
head shared by all levels with a 3x3 conv and parallel 3x3 convs for boxes, classes and tanh mask
coefficients (and, with attributes, attribute logits per anchor); a 1x1 semantic-segmentation conv used only by the training loss. The protonet and
the semantic conv read the finest level: P3 in the paper (P3-P7), P2 when the pyramid starts at
stride 4 (``min_level=2``: P2-P6, as the FPN of Mask R-CNN) for small objects at small inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from zoo.errors import UserError

# Backbone stride -> parameter group, the names zoo.adapter.GROUP_ORDER uses.
STRIDE_GROUPS: dict[int, str] = {2: "stem", 4: "stage2", 8: "stage3", 16: "stage4", 32: "stage5"}
TORCHVISION_STAGES: dict[str, tuple[str, ...]] = {
    "stem": ("conv1", "bn1"), "stage2": ("layer1",), "stage3": ("layer2",),
    "stage4": ("layer3",), "stage5": ("layer4",),
}


class TorchvisionResNet(nn.Module):
    """A torchvision ResNet/ResNeXt (random weights) returning C_min_level..C5 (strides 4 or 8 to 32)."""

    def __init__(self, name: str, min_level: int = 3) -> None:
        super().__init__()
        known = [n for n in torchvision.models.list_models(module=torchvision.models)
                 if n.startswith(("resnet", "resnext", "wide_resnet"))]
        if name not in known:
            raise UserError(f"model.backbone: unknown backbone {name!r}; choose one of "
                            f"{', '.join(sorted(known))}, or timm:<name>")
        net = torchvision.models.get_model(name, weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.first = min_level - 2  # index of the first returned stage among C2..C5
        layers = (net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = [_block_out(layer) for layer in layers[self.first:]]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> ``[C2, C3, C4, C5]`` from ``min_level`` on (``C_l`` has stride ``2**l``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            feats.append(x)
        return feats[self.first:]

    def stage_groups(self) -> dict[str, list[nn.Parameter]]:
        return {g: [p for m in mods for p in getattr(self, m).parameters()] for g, mods in TORCHVISION_STAGES.items()}


def _block_out(layer: nn.Sequential) -> int:
    """Output channels of a torchvision ResNet stage (BasicBlock: bn2, Bottleneck: bn3)."""
    last = layer[-1]
    return (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features


class TimmBackbone(nn.Module):
    """A timm model built with ``features_only`` (random weights) returning the maps of stride
    ``2**min_level`` to 32."""

    def __init__(self, name: str, min_level: int = 3) -> None:
        super().__init__()
        import timm

        try:
            self.body = timm.create_model(name, pretrained=False, features_only=True)
        except RuntimeError as err:  # timm's "Unknown model" error
            raise UserError(f"model.backbone: timm:{name}: {err}") from None
        strides = self.body.feature_info.reduction()
        wanted = [2**level for level in range(min_level, 6)]
        if not all(s in strides for s in wanted):
            raise UserError(f"model.backbone: timm:{name} has feature strides {strides}; "
                            f"need {', '.join(map(str, wanted))} (model.min_level={min_level})")
        self.picks = [strides.index(s) for s in wanted]
        self.out_channels = [self.body.feature_info.channels()[i] for i in self.picks]
        self._group_by_level = [STRIDE_GROUPS.get(s, "stage5") for s in strides]

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.body(x)
        return [feats[i] for i in self.picks]

    def stage_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters grouped by the feature level whose module they precede or belong to."""
        order = {name: i for i, (name, _) in enumerate(self.body.named_modules())}
        ends = []  # position of the last module inside each feature level's module
        for level in self.body.feature_info.module_name():
            ends.append(max(i for name, i in order.items() if name == level or name.startswith(level + ".")))
        groups: dict[str, list[nn.Parameter]] = {g: [] for g in STRIDE_GROUPS.values()}
        for mod_name, module in self.body.named_modules():
            pos = order[mod_name]
            level = next((k for k, end in enumerate(ends) if pos <= end), len(ends) - 1)
            groups[self._group_by_level[level]].extend(module.parameters(recurse=False))
        return {g: ps for g, ps in groups.items() if ps}


def build_backbone(name: str, min_level: int = 3) -> TorchvisionResNet | TimmBackbone:
    """``resnet18`` etc. from torchvision, or ``timm:<name>`` from timm; always random weights.
    Returns the maps ``C_min_level`` to ``C5``."""
    if name.startswith("timm:"):
        return TimmBackbone(name[len("timm:"):], min_level)
    return TorchvisionResNet(name, min_level)


class FPN(nn.Module):
    """C_l..C5 -> P_l..P5 plus ``extra_levels`` above (stride-2 3x3 convs from P5, no ReLU), ``channels`` each.

    The paper: C3-C5 -> P3-P7 (two extra levels); from C2 with one extra level, P2-P6."""

    def __init__(self, in_channels: list[int], channels: int = 256, extra_levels: int = 2) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.downsample = nn.ModuleList(nn.Conv2d(channels, channels, 3, stride=2, padding=1)
                                        for _ in range(extra_levels))

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        """``[C3, C4, C5]`` -> ``[P3, P4, P5, P6, P7]`` (or from C2: ``[P2, ..., P6]``), finest first."""
        x = self.lateral[-1](feats[-1])
        merged = [x]
        for lateral, c in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            x = F.interpolate(x, size=c.shape[-2:], mode="bilinear", align_corners=False) + lateral(c)
            merged.insert(0, x)
        outs = [F.relu(conv(m)) for conv, m in zip(self.output, merged)]
        for down in self.downsample:
            outs.append(down(outs[-1]))
        return outs


class ProtoNet(nn.Module):
    """Finest level ``[B, c, h, w]`` -> prototypes ``[B, 2h, 2w, k]`` (ReLU), channels last for the mask product."""

    def __init__(self, in_channels: int, channels: int = 256, num_prototypes: int = 32) -> None:
        super().__init__()
        self.pre = nn.Sequential(*(m for i in range(3) for m in (
            nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1), nn.ReLU(inplace=True))))
        self.post = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, num_prototypes, 1), nn.ReLU(inplace=True))

    def forward(self, p3: Tensor) -> Tensor:
        x = F.interpolate(self.pre(p3), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.post(x).permute(0, 2, 3, 1).contiguous()


class PredictionHead(nn.Module):
    """One head for every level: per location and anchor, box deltas, class logits, mask coefficients,
    and with ``num_attributes`` > 0 attribute logits."""

    def __init__(self, channels: int, num_classes: int, num_anchors: int, num_prototypes: int,
                 num_attributes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes  # including background
        self.num_prototypes = num_prototypes
        self.num_attributes = num_attributes
        self.upfeature = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.box = nn.Conv2d(channels, 4 * num_anchors, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_classes * num_anchors, 3, padding=1)
        self.coef = nn.Conv2d(channels, num_prototypes * num_anchors, 3, padding=1)
        if num_attributes:  # created only with attributes, so a model without them draws as before
            self.attr = nn.Conv2d(channels, num_attributes * num_anchors, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """``[B, c, h, w]`` -> deltas ``[B, h*w*a, 4]``, logits ``[B, h*w*a, C+1]``, coefficients
        ``[B, h*w*a, k]`` (and with attributes their logits ``[B, h*w*a, A]``)."""
        x = self.upfeature(x)
        b = x.shape[0]
        deltas = self.box(x).permute(0, 2, 3, 1).reshape(b, -1, 4)
        logits = self.cls(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
        coefs = torch.tanh(self.coef(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_prototypes))
        if not self.num_attributes:
            return deltas, logits, coefs
        return deltas, logits, coefs, self.attr(x).permute(0, 2, 3, 1).reshape(b, -1, self.num_attributes)


@dataclass
class RawOutput:
    """What the network returns for a batch of B inputs (A anchors, k prototypes).

    Attributes:
        deltas: ``[B, A, 4]`` SSD-encoded box regressions.
        logits: ``[B, A, C+1]`` class logits (index 0 = background).
        coefs: ``[B, A, k]`` mask coefficients in ``[-1, 1]``.
        protos: ``[B, hp, wp, k]`` prototypes (``hp = 2 *`` the finest level's height).
        anchors: ``[A, 4]`` centre form, relative.
        semantic: ``[B, C, hf, wf]`` semantic logits on the finest level (training only, else None).
        attributes: ``[B, A, n_attr]`` attribute logits per anchor (``run_model``: probabilities);
            None without attributes.
    """

    deltas: Tensor
    logits: Tensor
    coefs: Tensor
    protos: Tensor
    anchors: Tensor
    semantic: Tensor | None = None
    attributes: Tensor | None = None


def init_xavier(module: nn.Module) -> None:
    """The reference initialises every non-backbone conv with Xavier-uniform weights, zero bias."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
